"""Fetchers: turn one batch of indices (or the next stretch of a stream) into a collated batch.

While a sample is fetched, this thread's sample slot names it, so that ``sample_rng()`` inside
``__getitem__`` (or a transform) draws from that sample's own generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ladle._runtime.context import (
    Allocator,
    SampleSlot,
    StageClock,
    current_allocator,
    sample_slot,
    set_allocator,
)
from ladle.collate import Collater, default_collate
from ladle.gathered import GatheredBatch

__all__ = ["FetchPlan", "IterableFetcher", "MapFetcher", "open_stream"]

SampleKey = tuple[int, int, int, int]


def _nested(slot: SampleSlot) -> tuple[Any, ...]:
    """What a loader running inside another loader's sample must give back to it: the outer
    sample's key, index and generator state."""
    generator = slot.generator
    state = generator.bit_generator.state if slot.seeded and generator is not None else None
    return slot.key, slot.index, slot.seeded, state


def _give_back(slot: SampleSlot, outer: tuple[Any, ...]) -> None:
    slot.key, slot.index, slot.seeded, state = outer
    if state is not None:
        assert slot.generator is not None
        slot.generator.bit_generator.state = state  # its draws go on where they were


def _collate(
    collate_fn: Callable[[Any], Any],
    value: Any,
    allocate: Allocator | None,
    samples: int,
    clock: StageClock,
) -> Any:
    if allocate is not None:
        set_allocator(allocate)  # the batch goes into the slab
    transform = clock.transform
    started = time.perf_counter()
    try:
        batch = collate_fn(value)
    finally:
        # a Compose that collate_fn runs (a batch augmentation) is timed as the transform
        clock.collate += time.perf_counter() - started - (clock.transform - transform)
    clock.samples += samples  # a batch that raised has none
    return batch


class FetchPlan:
    """What every worker loads from (the ``BatchSource`` of ``_runtime``): the dataset, the
    collate function and the batching rules. Pickled once for spawned workers."""

    def __init__(
        self,
        dataset: Any,
        auto_collation: bool,
        collate_fn: Callable[[Any], Any],
        is_iterable: bool,
        batch_size: int | None,
        drop_last: bool,
    ) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.is_iterable = is_iterable
        self.batch_size = batch_size
        self.drop_last = drop_last

    def open(
        self, start: int, sample_key: SampleKey, clock: StageClock
    ) -> MapFetcher | IterableFetcher:
        if self.is_iterable:
            return IterableFetcher(
                open_stream(self.dataset, start),
                self.batch_size,
                self.drop_last,
                self.collate_fn,
                sample_key,
                start,
                clock,
            )
        return MapFetcher(self.dataset, self.auto_collation, self.collate_fn, sample_key, clock)


class _Fetcher:
    """What both fetchers do around a batch (calling one loads it): the thread's sample slot
    gets the pass's sample key and the fetcher's ``clock`` for the batch's stages, and the
    worker's slab allocator is taken away while the dataset runs (what ``__getitem__`` makes,
    with default_collate too, is the dataset's, and may be kept by it: a memo, a buffer, while
    a slab is written again once its batch is done; :func:`_collate` gives it back for the
    batch). A loader run inside another loader's sample gives the outer sample back."""

    clock: StageClock
    sample_key: SampleKey | None

    def __call__(self, indices: Any = None) -> Any:
        slot = sample_slot()
        nested = None if slot.key is None else _nested(slot)  # None: the common case
        outer, slot.clock, slot.key = slot.clock, self.clock, self.sample_key
        allocate = current_allocator()
        if allocate is not None:  # None without workers and in thread workers: nothing to take
            set_allocator(None)
        try:
            return self._load(indices, slot, allocate)
        finally:
            if nested is None:
                slot.key = slot.index = None
            else:
                _give_back(slot, nested)
            slot.clock = outer
            if allocate is not None:
                set_allocator(allocate)

    def _load(self, indices: Any, slot: SampleSlot, allocate: Allocator | None) -> Any:
        raise NotImplementedError


class MapFetcher(_Fetcher):
    """Fetch from a map-style dataset: ``__getitems__`` once per batch when it has one.

    ``sample_key`` is the pass's key for ``sample_rng()`` (see ``seeding.sample_key``); the
    loader sets it at the start of each pass.
    """

    def __init__(
        self,
        dataset: Any,
        auto_collation: bool,
        collate_fn: Callable[[Any], Any],
        sample_key: SampleKey | None = None,
        clock: StageClock | None = None,
    ) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.sample_key = sample_key
        self.clock = clock or StageClock()  # its loop's: where the stats find the stages
        self._getitems = getattr(dataset, "__getitems__", None) if auto_collation else None
        self._accepts_array = bool(getattr(dataset, "accepts_index_array", False))
        # ladle's collaters take a GatheredBatch's columns as they are; any other collate_fn
        # gets the plain list of samples torch would give it.
        self._takes_gathered = collate_fn is default_collate or isinstance(collate_fn, Collater)

    position = None  # a map-style dataset has no stream position

    def _load(self, indices: Any, slot: SampleSlot, allocate: Allocator | None) -> Any:
        if not self.auto_collation:
            slot.index, slot.seeded = indices, False
            sample = self.dataset[indices]
            slot.index = None
            return _collate(self.collate_fn, sample, allocate, 1, self.clock)
        if self._getitems is None:
            if isinstance(indices, np.ndarray):
                indices = indices.tolist()
            dataset = self.dataset
            samples = []
            for index in indices:
                slot.index, slot.seeded = index, False
                samples.append(dataset[index])
            slot.index = None
            return _collate(self.collate_fn, samples, allocate, len(samples), self.clock)
        if isinstance(indices, np.ndarray) and not self._accepts_array:
            indices = indices.tolist()
        gathered = self._getitems(indices)
        slot.index = None
        if isinstance(gathered, GatheredBatch) and not self._takes_gathered:
            gathered = list(gathered)
        return _collate(self.collate_fn, gathered, allocate, len(indices), self.clock)


def open_stream(dataset: Any, start: int) -> Iterator[Any]:
    """An iterable dataset's stream, from sample ``start`` on (the resume protocol)."""
    return dataset.iter_from(start) if start else iter(dataset)


class IterableFetcher(_Fetcher):
    """Fetch from an iterable dataset's stream: ``batch_size`` samples at a time, or one.

    ``position`` counts the samples the stream has delivered (from ``start`` on, when the stream
    was resumed there): it is what a saved loader state records for this stream.
    """

    def __init__(
        self,
        stream: Iterator[Any],
        batch_size: int | None,
        drop_last: bool,
        collate_fn: Callable[[Any], Any],
        sample_key: SampleKey | None = None,
        start: int = 0,
        clock: StageClock | None = None,
    ) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.sample_key = sample_key
        self.position = start
        self.clock = clock or StageClock()  # its loop's: where the stats find the stages

    def _load(self, indices: Any, slot: SampleSlot, allocate: Allocator | None) -> Any:
        """The next batch; raises StopIteration when the stream has no (full) batch left."""
        stream = self.stream
        if self.batch_size is None:
            slot.index, slot.seeded = self.position, False
            sample = next(stream)
            self.position += 1
            slot.index = None
            return _collate(self.collate_fn, sample, allocate, 1, self.clock)
        samples = []
        for _ in range(self.batch_size):
            slot.index, slot.seeded = self.position, False
            try:
                samples.append(next(stream))
            except StopIteration:
                break
            self.position += 1
        slot.index = None
        if not samples or (self.drop_last and len(samples) < self.batch_size):
            raise StopIteration
        return _collate(self.collate_fn, samples, allocate, len(samples), self.clock)
