"""The worker protocol: small frozen messages, typed end to end.

The main process sends :data:`Command` s (``StartEpoch``, ``Task``, ``Stop``) and receives
:data:`Reply` s (``Batch``, ``Failure``, ``Exhausted``, ``Cancelled``), one reply per task. Only
metadata crosses: array bytes travel in shared-memory slabs (see shm.py); a process worker pickles
the rest of a batch itself, so that a batch which cannot be pickled (or unpickled) is one batch's
error instead of a dead worker or a dead pipe.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ladle._runtime.context import StageClock

__all__ = [
    "Batch",
    "BatchSource",
    "Cancelled",
    "Command",
    "Exhausted",
    "Failure",
    "Fetch",
    "Reply",
    "SampleKey",
    "SlabRef",
    "StartEpoch",
    "Stop",
    "Task",
    "TaskTimes",
    "WorkerSpec",
]

SampleKey = tuple[int, int, int, int]


class Fetch(Protocol):
    """Loads one task's batch: ``fetch(indices)``; raises StopIteration at a stream's end.
    ``position`` counts the samples a stream has delivered (None for a map-style dataset)."""

    @property
    def position(self) -> int | None: ...

    def __call__(self, indices: object) -> object: ...


class BatchSource(Protocol):
    """What a worker loads from, handed down by the layer above: the dataset, collate_fn and
    batching rules behind one method."""

    @property
    def is_iterable(self) -> bool: ...

    @property
    def dataset(self) -> object:
        """What ``get_worker_info().dataset`` shows in a worker."""
        ...

    def open(self, start: int, sample_key: SampleKey, clock: StageClock) -> Fetch:
        """The fetch of a new pass: a stream from sample ``start`` on, or the map-style fetch
        with the pass's ``sample_rng()`` key; its stages are timed on ``clock``."""
        ...


@dataclass(frozen=True)
class SlabRef:
    """A shared-memory segment the main process created and lends for one batch."""

    name: str
    size: int


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, sent once when it starts."""

    worker_id: int
    num_workers: int
    source: BatchSource | bytes  # the source itself (fork, threads) or its pickle (spawn)
    worker_init_fn: Callable[[int], object] | None
    shm_dir: str | None  # None: no shared memory (threads share the address space)
    parent_pid: int
    inherited_slabs: Mapping[str, mmap.mmap] | None = None  # fork: mappings made before it
    inline: bool = False  # the main process itself: no worker info, no init, no seeding


@dataclass(frozen=True)
class StartEpoch:
    """Begin a pass: the first one seeds the worker (torch's base seed) and runs its init;
    every one restarts an iterable dataset's stream, at sample ``start`` when resumed.
    ``sample_key`` keys the pass's ``sample_rng()`` generators in this worker."""

    seed: int
    start: int
    sample_key: SampleKey


@dataclass(frozen=True)
class Task:
    """Load batch ``seq``: these indices (map-style) or the next batch of the stream (None)."""

    seq: int
    indices: object
    slab: SlabRef | None


@dataclass(frozen=True)
class Stop:
    """Finish: the worker exits its loop, without running the tasks still queued."""


Command = StartEpoch | Task | Stop


class TaskTimes(NamedTuple):
    """Where a worker's time for one task went (seconds; ``started`` on the monotonic clock,
    which Linux shares between processes). ``fetch`` is the dataset's own time, less the
    transforms and collate timed inside it; ``encode`` is writing the batch for the trip to
    the main process (slab descriptors and pickling). A NamedTuple: one per batch, cheap to
    make and to pickle."""

    started: float
    fetch: float
    transform: float
    collate: float
    encode: float
    samples: int
    pid: int


@dataclass(frozen=True)
class Batch:
    """Batch ``seq`` is ready. ``payload`` is the batch (threads), or its pickle when
    ``pickled`` (processes); arrays in it may be descriptors into ``slab``."""

    seq: int
    worker_id: int
    payload: object
    pickled: bool
    slab: SlabRef | None
    slab_used: bool
    bytes_needed: int
    position: int | None = None  # iterable: samples the worker's stream delivered so far
    # where the worker's time went (none from the main process's own loop: see StageClock)
    times: TaskTimes | None = None


@dataclass(frozen=True)
class Failure:
    """Loading batch ``seq`` raised. ``error`` is the exception (threads), its pickle
    (processes), or None when it could not be pickled; ``type_name`` and ``message`` describe
    it either way."""

    seq: int
    worker_id: int
    error: BaseException | bytes | None
    type_name: str
    message: str
    slab: SlabRef | None


@dataclass(frozen=True)
class Exhausted:
    """An iterable dataset's stream in this worker has ended; task ``seq`` has no batch."""

    seq: int
    worker_id: int
    slab: SlabRef | None


@dataclass(frozen=True)
class Cancelled:
    """Task ``seq`` was not run: a new pass (or a stop) was already waiting behind it."""

    seq: int
    worker_id: int
    slab: SlabRef | None


Reply = Batch | Failure | Exhausted | Cancelled
