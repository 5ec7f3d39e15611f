"""A pass over two process workers, broken off and resumed from its saved state: the recipe
tests' check that a sampler's state survives the trip through workers and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from script_support import run_json

import ladle


def taken_and_resumed(make: Callable[[], ladle.DataLoader], cut: int) -> list[Any]:
    """The first ``cut`` batches of a pass of ``make()``, then the rest of that pass from a
    fresh ``make()`` given its ``state_dict()`` (through JSON)."""
    saved = make()
    iterator = iter(saved)
    taken = [next(iterator) for _ in range(cut)]
    state = json.loads(json.dumps(saved.state_dict()))
    del iterator
    saved.close()
    resumed = make()
    resumed.load_state_dict(state)
    try:
        return taken + list(resumed)
    finally:
        resumed.close()


_IN_A_CHILD = """
import json
from resume_support import taken_and_resumed
{setup}
def plain(batches):
    return [[part.tolist() for part in batch] for batch in batches]
whole = make()
reference = plain(whole)
whole.close()
resumed = plain(taken_and_resumed(make, {cut}))
print(json.dumps({{"reference": reference, "resumed": resumed}}))
"""


def resumed_in_a_child(setup: str, cut: int, timeout: float = 90) -> Any:
    """:func:`taken_and_resumed` in a fresh process with a hard time limit, for the loader
    ``make()`` that ``setup`` (code) defines; returns the whole pass and the resumed one, as
    lists (``{"reference": ..., "resumed": ...}``)."""
    return run_json(_IN_A_CHILD.format(setup=setup, cut=cut), timeout=timeout)
