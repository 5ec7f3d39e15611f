"""Exact resume: where a loader stands in its stream, as a small JSON-serialisable dict.

A loader's stream is a sequence of passes (epochs). Pass ``p`` is fixed by what stood at its
start (:class:`~ladle.passplan.PassStart`): the sampler's state (an epoch and an offset for
ladle's samplers), the generator's state if there is one, and the loader's seed; the pass seed
of workers and ``sample_rng()`` is a pure function of ``(seed, p)``. So a position is "pass p,
these batches of it consumed": a few integers, whatever ``num_workers`` was. Resuming starts the
pass from the saved start and skips the consumed batches without fetching them (for ladle's
samplers, by offset arithmetic).

An iterable dataset decides its own order, so its position is per stream: how many samples each
worker's stream delivered in consumed batches. It resumes through its ``iter_from(position)``
method (the resume protocol, see ``IterableDataset``), with as many streams as were saved.
"""

from __future__ import annotations

import copy
from typing import Any

from ladle.config import Sampling
from ladle.distributed import DistributedBatchSampler
from ladle.passplan import PassStart, Renumbered, epoch_sampler, index_sampler
from ladle.sampler import BatchSampler
from ladle.seeding import check_seed, is_global_generator

__all__ = ["FORMAT", "Progress", "check_state", "state_of"]

FORMAT = "ladle.DataLoader/1"
KEYS = ("epoch", "batches", "beyond", "sampler", "generator", "streams", "next_stream", "check")


class Progress:
    """Where one pass stands: its start, and which of its batches are consumed (yielded, or
    raised to the caller)."""

    def __init__(self, start: PassStart, renumbered: Renumbered | None, iterable: bool) -> None:
        self.start = start
        self.consumed = start.skip  # batches 0 .. consumed-1 of the pass are consumed
        self.beyond = set(start.beyond)  # consumed out of order (in_order=False)
        self.positions = list(start.streams) if iterable else None  # samples per stream
        self.next_stream = start.next_stream  # iterable: the stream whose batch comes next
        self.finished = False
        self._renumbered = renumbered

    def consume(self, dispatched: int) -> None:
        """The batch dispatched ``dispatched``-th (0-based) by this pass is consumed."""
        if self._renumbered is not None:
            number = self._renumbered.number(dispatched)
        else:
            number = self.start.skip + dispatched
        if number != self.consumed:
            self.beyond.add(number)
            return
        self.consumed += 1
        while self.consumed in self.beyond:
            self.beyond.discard(self.consumed)
            self.consumed += 1

    def stream_done(self, stream: int, position: int | None, streams: int) -> None:
        """A batch of ``stream`` was consumed; ``position``: that stream's count after it."""
        if self.positions is not None and position is not None:
            self.positions[stream] = position
        self.next_stream = (stream + 1) % streams

    def saved(self) -> dict[str, Any]:
        """The state fields of this position (without format, seed and checks)."""
        start = self.start
        return {
            "epoch": start.epoch,
            "batches": self.consumed,
            "beyond": sorted(self.beyond),
            "sampler": copy.deepcopy(start.sampler),
            "generator": copy.deepcopy(start.generator),
            "streams": list(self.positions) if self.positions is not None else None,
            "next_stream": self.next_stream,
        }


def _describe(sampler: Any) -> str:
    if isinstance(sampler, BatchSampler | DistributedBatchSampler):
        return f"{type(sampler).__name__}({type(sampler.sampler).__name__})"
    return type(sampler).__name__


def check_values(sampling: Sampling, streams: int) -> dict[str, Any]:
    """What must agree between the saved loader and the resuming one. Across ranks that is
    the global batch, not the rank's: a state saved on one world size resumes on another."""
    dataset = sampling.dataset
    length = len(dataset) if hasattr(dataset, "__len__") else None
    sampler = None if sampling.is_iterable else index_sampler(sampling)
    sampler_length = None
    if sampler is not None and hasattr(sampler, "__len__"):
        sampler_length = len(sampler)
    global_batch = None
    if isinstance(sampler, DistributedBatchSampler):
        global_batch = sampler.global_batch_size
    return {
        "dataset_length": length,
        "batch_size": sampling.batch_size if global_batch is None else None,
        "global_batch_size": global_batch,
        "drop_last": sampling.drop_last,
        "sampler": None if sampler is None else _describe(sampler),
        "sampler_length": sampler_length,
        "streams": streams if sampling.is_iterable else None,
    }


def state_of(
    sampling: Sampling, streams: int, seed: int | None, fields: dict[str, Any]
) -> dict[str, Any]:
    """A whole state: format, seed, the position's ``fields`` and the checks."""
    if fields["streams"] is not None and any(fields["streams"]):
        require_iter_from(sampling.dataset)
    return {"format": FORMAT, "seed": seed, **fields, "check": check_values(sampling, streams)}


def require_iter_from(dataset: Any) -> None:
    if not callable(getattr(dataset, "iter_from", None)):
        raise TypeError(
            f"{type(dataset).__name__} is an IterableDataset without the resume protocol, so "
            f"the loader cannot save a position inside its stream: give it "
            f"iter_from(position), which yields the stream from sample `position` on (see "
            f"ladle.IterableDataset), or save only between epochs"
        )


def _refuse(field: str, value: Any, why: str) -> ValueError:
    return ValueError(
        f"the saved loader state has {field}={value!r}, {why}; pass a state_dict() of this "
        f"loader, unchanged"
    )


def _check_ranges(sampling: Sampling, state: dict[str, Any], streams: int) -> None:
    """Every position in ``state`` lies inside the epoch it names."""
    batches = check_seed(state["batches"], "state['batches']")
    sampler = None if sampling.is_iterable else index_sampler(sampling)
    total = len(sampler) if sampler is not None and hasattr(sampler, "__len__") else None
    if total is not None and batches > total:
        raise _refuse("batches", batches, f"but an epoch of this loader has {total} batches")
    for number in state["beyond"]:
        check_seed(number, "state['beyond'][i]")
        if number <= batches or (total is not None and number >= total):
            raise _refuse(
                "beyond", state["beyond"], f"whose batch {number} is not past batches={batches}"
            )
    fast = epoch_sampler(sampling)
    if fast is not None:
        saved = state["sampler"]
        for key in ("epoch", "offset"):
            if key not in saved:
                raise _refuse("sampler", saved, f"which lacks {key!r}")
        check_seed(saved["epoch"], "state['sampler']['epoch']")
        offset = check_seed(saved["offset"], "state['sampler']['offset']")
        step = fast[1] or 1
        length = len(fast[0])
        if offset > length or offset + batches * step > length + step - 1:
            raise _refuse(
                "sampler", saved, f"whose offset lies past the end of an epoch of {length}"
            )
    if sampling.is_iterable:
        positions = state["streams"]
        if not isinstance(positions, list) or len(positions) != streams:
            raise ValueError(
                f"the saved loader state has stream positions {positions!r}, but this loader "
                f"reads {streams} streams; pass the state_dict() of the same loader"
            )
        for position in positions:
            check_seed(position, "state['streams'][i]")
        if not 0 <= check_seed(state["next_stream"], "state['next_stream']") < streams:
            raise ValueError(
                f"state['next_stream']={state['next_stream']} names no stream of "
                f"{streams}; pass the state_dict() of the same loader"
            )
        if any(positions):
            require_iter_from(sampling.dataset)


def _check_generator(saved: Any, generator: Any) -> None:
    """The saved randomness is of this loader's kind: none (a seed), a generator's state, or
    the seed drawn from torch's default generator."""
    drawn = isinstance(saved, dict) and set(saved) == {"drawn"}
    if is_global_generator(generator):
        if saved is None or drawn:
            if drawn:
                check_seed(saved["drawn"], "state['generator']['drawn']")
            return
        kind = "a generator of its own"
    elif generator is not None:
        if saved is not None and not drawn:
            return
        kind = "torch's default generator" if drawn else "no generator"
    else:
        if saved is None:
            return
        kind = "torch's default generator" if drawn else "a generator of its own"
    raise ValueError(
        f"the saved loader state comes from a DataLoader drawing from {kind}, and this one "
        f"differs; resume with the same kind of randomness (seed= or generator=)"
    )


def check_state(
    sampling: Sampling, streams: int, generator: Any, loader_seed: int | None, state: Any
) -> tuple[dict[str, Any], int | None]:
    """Check ``state`` against the loader: returns a private copy of it, and the seed the
    loader adopts from it (None when both draw from a generator)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"load_state_dict expects a dict from DataLoader.state_dict() with "
            f"format={FORMAT!r}, but got {found!r}"
        )
    missing = [key for key in (*KEYS, "seed") if key not in state]
    if missing:
        raise ValueError(f"the saved loader state lacks {missing}; pass a whole state_dict()")
    saved, here = state["check"], check_values(sampling, streams)
    if sampling.is_iterable:
        sampler_ok = state["sampler"] is None
    else:
        sampler_ok = isinstance(state["sampler"], dict)
    if not (sampler_ok and isinstance(saved, dict) and isinstance(state["beyond"], list)):
        raise ValueError("the saved loader state is malformed; pass a whole state_dict()")
    if (saved.get("global_batch_size") is None) != (here["global_batch_size"] is None):
        made, this = (
            ("with", "without") if here["global_batch_size"] is None else ("without", "with")
        )
        raise ValueError(
            f"the saved loader state was made by a DataLoader {made} distributed=, and this one "
            f"is {this} it: the batches are cut differently; resume {made} distributed= (a "
            f"state of one rank's loader resumes on any number of ranks)"
        )
    for key, fix in _FIXES.items():
        if saved.get(key) != here[key]:
            raise ValueError(
                f"the saved loader state does not fit this DataLoader: it was saved with "
                f"{key}={saved.get(key)!r}, but this loader has {key}={here[key]!r}; {fix}"
            )
    _check_generator(state["generator"], generator)
    check_seed(state["epoch"], "state['epoch']")
    _check_ranges(sampling, state, streams)
    adopts = sampling.ranks is None  # across ranks seed=None means 0, as for every rank
    return copy.deepcopy({key: state[key] for key in ("format", "seed", *KEYS)}), _saved_seed(
        loader_seed, state["seed"], adopts
    )


def _saved_seed(loader_seed: int | None, seed: Any, adopts: bool) -> int | None:
    if seed is None:
        return None
    seed = check_seed(seed, "state['seed']")
    if loader_seed is not None and seed != loader_seed:
        other = " (or seed=None, which adopts the saved seed)" if adopts else ""
        raise ValueError(
            f"the saved loader state was made with seed={seed}, but this DataLoader has "
            f"seed={loader_seed}, so it would load another stream; build it with "
            f"seed={seed}{other}"
        )
    return seed  # type: ignore[no-any-return]


_FIXES = {
    "dataset_length": "resume over the same dataset",
    "global_batch_size": (
        "resume with the same global batch: batch_size x world size, or global_batch_size="
    ),
    "batch_size": "resume with the batch_size the state was saved with",
    "drop_last": "resume with the drop_last the state was saved with",
    "sampler": "resume with the same sampler, batch_sampler and shuffle arguments",
    "sampler_length": "resume with the same sampler arguments",
    "streams": (
        "an IterableDataset's stream is split across the workers, so resume it with the same "
        "number of workers (0 and 1 both mean one stream)"
    ),
}
