"""Who is loading right now: the main process, or worker ``id`` of ``num_workers``.

Thread-local, so that thread workers each see their own; processes set it once at start.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerInfo", "get_worker_info", "set_worker_info"]


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
