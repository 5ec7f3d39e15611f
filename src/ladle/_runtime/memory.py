"""Private memory of a process tree, read from /proc (Linux only; psutil is not a dependency).

A loader's cost in memory is spread over a process and its workers, so a benchmark has to sum
over the whole tree: the root pid and every descendant. Per process we count *private* memory,
``RssAnon + RssShmem`` from ``/proc/<pid>/status``: the heap, and shared-memory segments such as
the transport's slabs, but not file-backed pages. Memory-mapped data files and the page cache
are the kernel's to drop and would make a loader that reads from disk look expensive in
proportion to the data it touched, not to what it holds.

The count is conservative: a page mapped by several processes (a shared-memory slab, the
copy-on-write heap a forked worker still shares with its parent) counts once per process.

On platforms without /proc (macOS, Windows) :func:`tree_memory` and :class:`MemorySampler`
raise :class:`NotImplementedError`; check :func:`supported` first to degrade gracefully.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType

__all__ = ["MemorySampler", "Sample", "descendants", "private_memory", "supported", "tree_memory"]

_FIELDS = (b"RssAnon:", b"RssShmem:")


def _read(path: str) -> bytes:
    """The whole of a small /proc file; raises FileNotFoundError if the process has gone."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


@functools.cache
def supported() -> bool:
    """Whether this system exposes per-process private memory (Linux 4.5 or later)."""
    try:
        return b"\nRssAnon:" in _read("/proc/self/status")
    except OSError:
        return False


def _require_support() -> None:
    if not supported():
        raise NotImplementedError(
            f"memory measurement reads RssAnon from /proc/<pid>/status, which this platform "
            f"(sys.platform={sys.platform!r}) lacks; it needs Linux 4.5 or later, so check "
            f"ladle._runtime.memory.supported() first and skip the measurement elsewhere"
        )


def private_memory(pid: int) -> int:
    """``RssAnon + RssShmem`` of one process, in bytes (0 for a zombie, which holds none).

    Raises ProcessLookupError if ``pid`` does not exist.
    """
    _require_support()
    try:
        status = _read(f"/proc/{pid}/status")
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process with pid={pid}") from None
    total = 0
    for line in status.splitlines():
        if line.startswith(_FIELDS):
            total += int(line.split()[1]) * 1024  # the kernel writes "RssAnon:  1234 kB"
    return total


def _parent_of(entry: str) -> int | None:
    try:
        stat = _read(f"/proc/{entry}/stat")
    except OSError:  # exited between listdir and open, or not ours to read
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in parentheses may hold spaces
    return int(fields[1]) if len(fields) > 1 else None


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``: children, grandchildren, and so on.

    One pass over /proc/*/stat (about 10 µs a process). /proc/<pid>/task/*/children would be
    cheaper but needs CONFIG_PROC_CHILDREN, which many kernels lack.
    """
    _require_support()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(entry)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        below = children.get(stack.pop(), [])
        found += below
        stack += below
    return found


def _tree(pid: int) -> tuple[int, int]:
    """(private bytes, live processes) of the tree rooted at ``pid``."""
    total = private_memory(pid)  # the root must exist: ProcessLookupError otherwise
    processes = 1
    for child in descendants(pid):
        try:
            total += private_memory(child)
        except ProcessLookupError:  # exited since the scan: it holds nothing any more
            continue
        processes += 1
    return total, processes


def tree_memory(pid: int) -> int:
    """Private memory (``RssAnon + RssShmem``) of ``pid`` and all its descendants, in bytes.

    Descendants that exit while they are read are skipped; raises ProcessLookupError when
    ``pid`` itself does not exist, NotImplementedError off Linux.
    """
    return _tree(pid)[0]


@dataclass(frozen=True)
class Sample:
    """One reading of the tree: when (seconds since sampling began), how much, how many."""

    seconds: float
    bytes: int
    processes: int


class MemorySampler:
    """Samples :func:`tree_memory` of ``pid`` every ``interval`` seconds in a daemon thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`); afterwards ``peak`` is
    the highest reading in bytes (None if the process was gone before the first one) and
    ``samples`` every reading. A reading is taken at start and at stop as well, so a run
    shorter than ``interval`` still has one. Sampling ends by itself when the root process
    exits. Between readings the peak can be missed: it is a floor, sharper the shorter the
    interval (one reading costs about 10 µs per process on the machine).
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        _require_support()
        if not interval > 0:
            raise ValueError(
                f"interval is the time between readings in seconds and must be positive, but "
                f"got interval={interval!r}; the default is 0.01"
            )
        self.pid = pid
        self.interval = interval
        self.samples: list[Sample] = []
        self.peak: int | None = None
        self.max_processes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._gone = False
        self._stopped = False

    def sample(self) -> Sample | None:
        """Take one reading now; None once the root process has gone."""
        if self._gone:
            return None
        try:
            total, processes = _tree(self.pid)
        except ProcessLookupError:
            self._gone = True
            return None
        reading = Sample(time.monotonic() - self._started, total, processes)
        with self._lock:
            self.samples.append(reading)
            self.peak = total if self.peak is None else max(self.peak, total)
            self.max_processes = max(self.max_processes, processes)
        return reading

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.sample() is None:
                return

    def start(self) -> MemorySampler:
        if self._thread is not None:
            raise RuntimeError(
                f"this MemorySampler of pid={self.pid} was already started; make a new one for "
                f"each measurement"
            )
        self._started = time.monotonic()
        self.sample()
        self._thread = threading.Thread(
            target=self._run, name=f"ladle-memory-{self.pid}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop sampling (idempotent), take a last reading, and return ``peak``.

        Waits at most ``timeout`` seconds for the thread; a reading stuck on a hung /proc
        file is left to finish in its daemon thread rather than blocking the caller.
        """
        if self._stopped:
            return self.peak
        self._stopped = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.sample()
        return self.peak

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
