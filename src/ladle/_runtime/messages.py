"""The worker protocol: small frozen messages. Only metadata crosses; array bytes travel in
shared-memory slabs (see shm.py) or, for small payloads, inside the pickled message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Batch",
    "Exhausted",
    "Failure",
    "SlabRef",
    "StartEpoch",
    "Stop",
    "Task",
    "WorkerSpec",
]


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
    dataset: Any  # the dataset itself (fork, threads) or its pickle, made once (spawn)
    dataset_pickled: bool
    collate_fn: Any
    auto_collation: bool
    is_iterable: bool
    batch_size: int | None
    drop_last: bool
    worker_init_fn: Any
    shm_dir: str | None  # None: no shared memory (thread workers share the address space)
    parent_pid: int
    inherited_slabs: Any = None  # fork only: slab mappings the worker inherits from the main


@dataclass(frozen=True)
class StartEpoch:
    """Begin a pass: the first one seeds the worker (torch's base seed) and runs its init;
    every one restarts an iterable dataset's stream, at sample ``start`` of it when resumed.
    ``sample_key`` keys the pass's ``sample_rng()`` generators in this worker."""

    seed: int
    start: int
    sample_key: tuple[int, int, int, int]


@dataclass(frozen=True)
class Task:
    """Load batch ``seq``: these indices (map-style) or the next batch of the stream."""

    seq: int
    indices: Any
    slab: SlabRef | None


@dataclass(frozen=True)
class Batch:
    """Batch ``seq`` is ready; arrays in ``payload`` may point into ``slab``."""

    seq: int
    worker_id: int
    payload: Any
    slab: SlabRef | None
    slab_used: bool
    bytes_needed: int
    position: int | None = None  # iterable: samples the worker's stream delivered so far


@dataclass(frozen=True)
class Failure:
    """Loading batch ``seq`` raised; ``error`` is the pickled exception, traceback attached."""

    seq: int
    worker_id: int
    error: bytes | None
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
class Stop:
    """Finish: the worker exits its loop."""
