"""The parent's heap and forked workers: ``gc.freeze()`` while the workers fork.

A forked worker shares the parent's memory pages until one of them writes to a page. The
cyclic collector writes into the header of every tracked object (list, dict, instance) that a
collection traverses, so one full collection in a worker (a ``gc.collect()`` in the dataset, a
library, a ``worker_init_fn``) copies every page holding the parent's containers: 124 MiB per
worker for 2,000,000 small lists. ``gc.freeze()`` moves every tracked object to the permanent
generation, which no collection traverses. The workers keep them there: a worker never collects
its parent's objects, so it never writes to their pages for the collector's sake (nor runs
their finalizers, which belong to the parent). The parent takes them back with ``gc.unfreeze()``
once its workers are started, so that its own garbage is still collected. Both calls splice a
list (O(1)); the one lasting effect on the parent is that the objects of the young generations
come back in the oldest, so cyclic garbage made just before a pass starts waits for the next
full collection.

What freezing does not stop is reference counting: a worker that reads an object
(``dataset[i]`` returns ``items[i]``) writes its reference count and copies its page. A
dataset of millions of Python objects that the workers read is copied into each of them page by
page whatever the collector does; ``ladle.StringArray`` and ``ladle.RecordArray`` keep such
data in a few NumPy arrays, whose pages reading never writes.

``LADLE_GC_FREEZE=0`` leaves the collector alone. A process that froze objects itself (as
CPython's documentation suggests for fork servers) keeps its own arrangement: ladle neither
adds to it nor unfreezes it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

__all__ = ["ENVIRONMENT", "frozen_while_forking"]

ENVIRONMENT = "LADLE_GC_FREEZE"

_lock = threading.Lock()
_starting = 0  # pool starts inside this module's freeze now, in any thread


def _reset_in_child() -> None:
    # A fork from another thread while _lock was held would leave the child's lock held forever.
    global _lock, _starting
    _lock, _starting = threading.Lock(), 0


os.register_at_fork(after_in_child=_reset_in_child)


def _enabled() -> bool:
    value = os.environ.get(ENVIRONMENT, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(
            f"{ENVIRONMENT}={value!r} is neither 0 nor 1; set {ENVIRONMENT}=0 to start forked "
            f"workers without gc.freeze(), or unset it (the default, 1, freezes)"
        )
    return value == "1"


def _freeze() -> bool:
    """Freeze for one pool start; False when this start must leave the collector alone."""
    global _starting
    with _lock:
        if _starting == 0 and gc.get_freeze_count():  # O(frozen objects): zero when unused
            return False  # the process froze its heap itself
        gc.freeze()  # again in a concurrent start too: it adds what was made since
        _starting += 1
        return True


def _unfreeze() -> None:
    global _starting
    with _lock:
        _starting -= 1
        if _starting == 0:
            gc.unfreeze()


@contextlib.contextmanager
def frozen_while_forking(forking: bool) -> Iterator[None]:
    """Inside: the heap is frozen when ``forking`` (the workers start by fork) and allowed."""
    if not (forking and _enabled() and _freeze()):
        yield
        return
    try:
        yield
    finally:
        _unfreeze()
