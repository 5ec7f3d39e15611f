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

__all__ = ["WorkerInfo", "current_allocator", "get_worker_info", "set_allocator", "set_worker_info"]


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
