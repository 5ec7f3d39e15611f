"""Who is loading right now: the main process, or worker ``id`` of ``num_workers``.

Thread-local, so that thread workers each see their own; processes set it once at start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Allocator = Callable[[tuple[int, ...], np.dtype[Any]], np.ndarray | None]

__all__ = [
    "Allocator",
    "SampleSlot",
    "StageClock",
    "WorkerInfo",
    "current_allocator",
    "get_worker_info",
    "sample_slot",
    "set_allocator",
    "set_worker_info",
]


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker knows about itself (torch's ``get_worker_info()`` fields)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


class _ThreadState(threading.local):
    """Each thread's loading state. The class attributes are the defaults a thread starts
    with: a missing attribute would make each read raise and catch an AttributeError, which
    costs a microsecond on a path run several times per batch."""

    worker_info: WorkerInfo | None = None
    allocator: Allocator | None = None
    sample: SampleSlot | None = None


_local = _ThreadState()


def get_worker_info() -> WorkerInfo | None:
    """The current worker's :class:`WorkerInfo`, or None in the main process."""
    return _local.worker_info


def set_worker_info(info: WorkerInfo | None) -> None:
    _local.worker_info = info


def current_allocator() -> Allocator | None:
    """Where collate should put large arrays: a worker's shared-memory slab, or None."""
    return _local.allocator


def set_allocator(allocator: Allocator | None) -> None:
    _local.allocator = allocator


class SampleSlot:
    """The batch this thread is loading now: its sample for ``sample_rng()``, and the clock
    its stages are timed on (``ladle.transforms.Compose`` adds to it).

    The fetcher sets ``key`` (the pass's sample key) and ``clock`` once per batch and
    ``index`` before each sample; ``seeded`` says whether ``generator`` already holds that
    sample's stream. One slot and one generator per thread: a new sample reseeds the
    generator instead of building one.
    """

    __slots__ = ("clock", "generator", "index", "key", "seeded")

    def __init__(self) -> None:
        self.key: tuple[int, int, int, int] | None = None
        self.index: Any = None
        self.seeded = False
        self.generator: np.random.Generator | None = None
        self.clock: StageClock | None = None


def sample_slot() -> SampleSlot:
    """This thread's :class:`SampleSlot`."""
    slot = _local.sample
    if slot is None:
        slot = _local.sample = SampleSlot()
    return slot


class StageClock:
    """Where a worker loop's tasks spent their time, for ``loader.stats()``: the fetcher adds
    its collate time and the samples of each batch collated, an outermost ``Compose`` its
    transform time (found through the thread's :class:`SampleSlot`). A worker's loop resets it
    for each task and sends what it read with the batch; the main process's loop (no workers)
    never resets it, and the pass's stats read the running totals when they sum (nothing per
    batch). ``depth`` counts the Compose calls running, so that a pipeline nested in another
    is timed once."""

    __slots__ = ("collate", "depth", "samples", "transform")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.collate = 0.0
        self.transform = 0.0
        self.samples = 0
        self.depth = 0
