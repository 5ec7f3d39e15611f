"""Datasets and checks shared by the worker tests (importable by spawned workers)."""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import numpy as np

import ladle
from ladle._runtime.shm import PREFIX, shm_directory


class Pairs(ladle.Dataset[tuple[np.ndarray, int]]):
    """(image-like array, label) per sample, big enough to travel through shared memory."""

    def __init__(self, n: int, shape: tuple[int, ...] = (3, 32, 32)) -> None:
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full(self.shape, i, np.float32), i


class ParentPids(ladle.Dataset[int]):
    """Each sample is the pid of the loading process's parent: who started the worker."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        return os.getppid()


class Blocks(ladle.IterableDataset[int]):
    """A stream of 0..n-1 that shards itself across workers in blocks of ``block``, so that
    round-robin reassembly gives back exactly the single-process order."""

    def __init__(self, n: int, block: int) -> None:
        self.n, self.block = n, block

    def __iter__(self):  # type: ignore[no-untyped-def]
        info = ladle.get_worker_info()
        worker, count = (info.id, info.num_workers) if info is not None else (0, 1)
        for start in range(worker * self.block, self.n, count * self.block):
            yield from range(start, min(start + self.block, self.n))

    def __len__(self) -> int:
        return self.n


class PickleCounting(Pairs):
    """Counts how often it is pickled (in the process that pickles it)."""

    pickles = 0

    def __getstate__(self) -> dict[str, Any]:
        type(self).pickles += 1
        return self.__dict__


def our_segments(pid: int | None = None, directory: str | None = None) -> list[str]:
    """Every name in ``directory`` (/dev/shm) made by process ``pid`` (this one): its slabs
    ``ladle-<pid>-<token>-<n>`` and its lock file ``ladle-<pid>-<token>.lock``, which exists
    only while slabs do."""
    pid = os.getpid() if pid is None else pid
    names = os.listdir(shm_directory() if directory is None else directory)
    return sorted(n for n in names if n.startswith(f"{PREFIX}{pid}-"))


def child_pids(pid: int | None = None) -> list[int]:
    """Live children of ``pid``, read from /proc (zombies count as gone), leaving out the
    helper processes multiprocessing keeps for the whole session (resource tracker,
    forkserver)."""
    pid = os.getpid() if pid is None else pid
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid and not _session_helper(entry):
            children.append(int(entry))
    return children


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ladle-worker-")]


def _session_helper(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
    except OSError:
        return False
    return b"resource_tracker" in command or b"forkserver" in command


class LockAt(ladle.Dataset[Any]):
    """Integers, but sample ``at`` holds a lock, which cannot be pickled."""

    def __init__(self, n: int, at: int) -> None:
        self.n, self.at = n, at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return threading.Lock() if i == self.at else i


class Items(ladle.Dataset[Any]):
    """``items[i]``: a dataset over any sequence (a list, a StringArray, a RecordArray)."""

    def __init__(self, items: Any) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class FreezeCounts(ladle.Dataset[int]):
    """Each sample is ``gc.get_freeze_count()`` in the process loading it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return gc.get_freeze_count()
