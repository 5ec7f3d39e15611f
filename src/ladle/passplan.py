"""What one pass (epoch) loads: its start, decided without changing anything, and the batches
of indices that follow from it.

A pass of a map-style dataset over one of ladle's epoch samplers reads the sampler's epoch
order through pure functions (``EpochSampler.batches_from``), so two passes at once, or a pass
abandoned half-way, leave the sampler as it was. Another sampler is iterated as torch would.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ladle.config import Sampling
from ladle.distributed import DistributedBatchSampler
from ladle.sampler import BatchSampler, EpochSampler, load_sampler_state, sampler_state
from ladle.seeding import generator_state, restore_generator, sample_key

__all__ = [
    "PassStart",
    "Renumbered",
    "epoch_sampler",
    "index_batches",
    "index_sampler",
    "pass_keys",
    "plan_start",
]

SampleKey = tuple[int, int, int, int]


@dataclass(frozen=True)
class PassStart:
    """Where a pass starts: everything its batches depend on, and the saved state's fields."""

    epoch: int  # the loader's pass number: it seeds the workers and sample_rng()
    sampler_epoch: int  # the epoch sampler's epoch (0 without one)
    offset: int  # the epoch sampler's index offset at the start of the pass (resumed)
    sampler: dict[str, Any] | None  # the index sampler's state at the start of the pass
    unsaveable: str | None  # why that state could not be taken, if it could not
    generator: dict[str, Any] | None  # the loader generator's state at the start
    skip: int = 0  # batches already consumed (a resumed pass)
    beyond: frozenset[int] = frozenset()  # consumed out of order beyond ``skip``
    streams: tuple[int, ...] = ()  # iterable: where each stream starts
    next_stream: int = 0  # iterable: the stream whose batch comes next
    resumes: object = None  # the loaded state this pass resumes, if any
    supersedes: object = None  # the loaded state set_epoch() replaced with another epoch
    abandoned: int = 0  # batches of that state's epoch it still had to give


def index_sampler(sampling: Sampling) -> Any:
    return sampling.batch_sampler if sampling.batch_sampler is not None else sampling.sampler


def _plain(sampler: Any, base: type[Any]) -> bool:
    """``sampler`` iterates as ``base`` does (a subclass may change the order)."""
    return isinstance(sampler, base) and getattr(type(sampler), "__iter__", None) is getattr(
        base, "__iter__", None
    )


def epoch_sampler(sampling: Sampling) -> tuple[EpochSampler, int | None, bool] | None:
    """The epoch sampler under the index sampler, the batch size (None: single indices; the
    global batch when the batches are shared across ranks) and drop_last, when the pass can
    read the epoch order directly."""
    batch_sampler = sampling.batch_sampler
    if _plain(batch_sampler, DistributedBatchSampler):
        return batch_sampler.sampler, batch_sampler.global_batch_size, batch_sampler.drop_last
    if batch_sampler is not None:
        if _plain(batch_sampler, BatchSampler) and _plain(batch_sampler.sampler, EpochSampler):
            return batch_sampler.sampler, batch_sampler.batch_size, batch_sampler.drop_last
        return None
    if _plain(sampling.sampler, EpochSampler):
        return sampling.sampler, None, False
    return None


def plan_start(
    sampling: Sampling,
    generator: Any,
    epoch: int,
    streams: int,
    pending: dict[str, Any] | None,
    between_passes: bool = False,
) -> PassStart:
    """The start of the next pass: the loaded state ``pending`` if there is one, else epoch
    ``epoch`` of the loader and the sampler's current epoch, from their beginnings.

    Samplers that keep their own state (not ladle's epoch samplers) and the loader's generator
    are put back at the pass's start state, which is what they are there for.

    An epoch sampler moved to another epoch by ``set_epoch`` after the state was loaded (which
    put it at the state's epoch) asks for that epoch from its start: the loaded state is
    superseded, as ``EpochSampler.set_epoch`` says, rather than silently winning."""
    fast = epoch_sampler(sampling)
    if pending is not None and fast is not None:
        saved_epoch = int(pending["sampler"]["epoch"])
        if fast[0].epoch != saved_epoch:
            fresh = plan_start(
                sampling,
                generator,
                pending["epoch"] + max(0, fast[0].epoch - saved_epoch),
                streams,
                None,
            )
            left = len(index_sampler(sampling)) - pending["batches"] - len(pending["beyond"])
            return dataclasses.replace(fresh, supersedes=pending, abandoned=max(0, left))
    if pending is not None:
        saved = pending["sampler"]
        if generator is not None and pending["generator"] is not None:
            restore_generator(generator, pending["generator"])
        if not sampling.is_iterable and fast is None:
            load_sampler_state(index_sampler(sampling), saved)
        return PassStart(
            epoch=pending["epoch"],
            sampler_epoch=int(saved["epoch"]) if fast is not None else 0,
            offset=int(saved["offset"]) if fast is not None else 0,
            sampler=saved,
            unsaveable=None,
            generator=pending["generator"],
            skip=pending["batches"],
            beyond=frozenset(pending["beyond"]),
            streams=tuple(pending["streams"] or [0] * streams),
            next_stream=pending["next_stream"],
            resumes=pending,
        )
    saved, unsaveable = None, None
    if fast is not None:
        saved = fast[0].state_at(fast[0].epoch, 0)
    elif not sampling.is_iterable:
        try:
            saved = sampler_state(index_sampler(sampling), between_passes)
        except TypeError as error:  # raised by state_dict() only: a pass needs no state
            unsaveable = str(error)
    return PassStart(
        epoch=epoch,
        sampler_epoch=fast[0].epoch if fast is not None else 0,
        offset=0,
        sampler=saved,
        unsaveable=unsaveable,
        generator=generator_state(generator) if generator is not None else None,
        streams=(0,) * streams,
    )


class Renumbered(Iterator[Any]):
    """The index batches of a resumed pass minus those consumed before the cut (``skip``, only
    non-empty after ``in_order=False``); maps the n-th batch dispatched to its number in the
    pass."""

    def __init__(self, batches: Iterator[Any], start: int, skip: frozenset[int]) -> None:
        self._batches = batches
        self._next = start
        self._skip = skip
        self._last_skipped = max(skip)
        self._numbers: list[int] = []  # numbers dispatched while skips lie ahead

    def __next__(self) -> Any:
        while True:
            item = next(self._batches)
            number, self._next = self._next, self._next + 1
            if number in self._skip:
                continue
            if number <= self._last_skipped:
                self._numbers.append(number)
            return item

    def number(self, dispatched: int) -> int:
        if dispatched < len(self._numbers):
            return self._numbers[dispatched]
        return self._last_skipped + 1 + dispatched - len(self._numbers)


def index_batches(sampling: Sampling, start: PassStart) -> Iterator[Any]:
    """The pass's batches of indices (int64 arrays on the fast path), or single indices, from
    the first one not consumed yet."""
    fast = epoch_sampler(sampling)
    indices: Iterator[Any]
    if fast is not None:
        sampler, batch_size, drop_last = fast
        batch_sampler = sampling.batch_sampler
        if batch_size is None:
            indices = sampler.indices_from(start.sampler_epoch, start.offset + start.skip)
        elif isinstance(batch_sampler, DistributedBatchSampler):
            position = start.offset + start.skip * batch_size
            shares = batch_sampler.batches_from(start.sampler_epoch, position)
            indices = (share for share, _ in shares)
        else:
            position = start.offset + start.skip * batch_size
            indices = sampler.batches_from(start.sampler_epoch, position, batch_size, drop_last)
    else:
        indices = iter(index_sampler(sampling))
        if start.skip:
            indices = itertools.islice(indices, start.skip, None)
    if start.beyond:
        return Renumbered(indices, start.skip, start.beyond)
    return indices


def pass_keys(sampling: Sampling, start: PassStart, seed: int, streams: int) -> list[SampleKey]:
    """Each worker's ``sample_rng()`` key for the pass. The sampler's epoch keys the samples
    too: a loader built afresh for each epoch, with set_epoch() on its sampler, still draws
    new augmentations every epoch."""
    if sampling.is_iterable:
        return [sample_key(seed, 1, stream) for stream in range(streams)]
    return [sample_key(seed, 0, start.sampler_epoch)] * streams
