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
    "stage_clock",
    "set_worker_info",
]


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker knows about itself (torch's ``get_worker_info()`` fields)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_local = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """The current worker's :class:`WorkerInfo`, or None in the main process."""
    info: WorkerInfo | None = getattr(_local, "worker_info", None)
    return info


def set_worker_info(info: WorkerInfo | None) -> None:
    _local.worker_info = info


def current_allocator() -> Allocator | None:
    """Where collate should put large arrays: a worker's shared-memory slab, or None."""
    allocator: Allocator | None = getattr(_local, "allocator", None)
    return allocator


def set_allocator(allocator: Allocator | None) -> None:
    _local.allocator = allocator


class SampleSlot:
    """The sample this thread is loading now, for ``sample_rng()``.

    The fetcher sets ``key`` once per batch (the pass's sample key) and ``index`` before each
    sample; ``seeded`` says whether ``generator`` already holds that sample's stream. One slot
    and one generator per thread: a new sample reseeds the generator instead of building one.
    """

    __slots__ = ("generator", "index", "key", "seeded")

    def __init__(self) -> None:
        self.key: tuple[int, int, int, int] | None = None
        self.index: Any = None
        self.seeded = False
        self.generator: np.random.Generator | None = None


def sample_slot() -> SampleSlot:
    """This thread's :class:`SampleSlot`."""
    slot: SampleSlot | None = getattr(_local, "sample", None)
    if slot is None:
        slot = _local.sample = SampleSlot()
    return slot


class StageClock:
    """What this thread's current task spent where, for ``loader.stats()``: the fetcher adds
    its collate time and sample count, an outermost ``Compose`` its transform time; the worker
    loop reads and resets it around each task. ``depth`` counts the Compose calls running, so
    that a pipeline nested in another is timed once."""

    __slots__ = ("collate", "depth", "samples", "transform")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.collate = 0.0
        self.transform = 0.0
        self.samples = 0
        self.depth = 0


def stage_clock() -> StageClock:
    """This thread's :class:`StageClock`."""
    clock: StageClock | None = getattr(_local, "clock", None)
    if clock is None:
        clock = _local.clock = StageClock()
    return clock
