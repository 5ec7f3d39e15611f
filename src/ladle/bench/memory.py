"""Memory of a process tree, read from /proc (Linux only; psutil is not a dependency).

A loader's cost in memory is spread over a process and its workers, so a benchmark has to sum
over the whole tree: the root pid and every descendant. Per process it counts anonymous memory
(the heap) and shared memory (segments such as the transport's slabs), never file-backed pages:
memory-mapped data files and the page cache are the kernel's to drop, and would make a loader
that reads from disk look expensive in proportion to the data it touched, not to what it holds.

Two measures, selected by ``measure=``:

``"pss"`` (the default)
    ``Pss_Anon + Pss_Shmem`` from ``/proc/<pid>/smaps_rollup``: the proportional set size,
    which splits a page mapped by several processes between them. The copy-on-write heap a
    forked worker still shares with its parent, and a shared-memory batch mapped by a worker
    and the main process, count once for the tree, as they cost once. Where the kernel gives
    ``Pss`` and ``Pss_File`` but not that split, it is ``Pss - Pss_File``, the same quantity;
    one that gives neither (before Linux 5.x) cannot leave file pages out: use ``"rss"``. Reading
    smaps_rollup walks the process's page tables (about 3 ms for a process that imported
    torch), so :class:`MemorySampler` paces these readings.
``"rss"``
    ``RssAnon + RssShmem`` from ``/proc/<pid>/status``: cheap (about 10 µs a process) but
    conservative, since a page mapped by several processes counts once per process: a forked
    worker's inherited heap counts again in every worker.

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
from typing import Literal

__all__ = [
    "MEASURES",
    "Measure",
    "MemorySampler",
    "Sample",
    "descendants",
    "preferred_measure",
    "private_memory",
    "process_memory",
    "supported",
    "tree_memory",
]

Measure = Literal["pss", "rss"]
MEASURES: tuple[Measure, ...] = ("pss", "rss")

_RSS_FIELDS = (b"RssAnon:", b"RssShmem:")
_PSS_FIELDS = (b"Pss_Anon:", b"Pss_Shmem:")
_SCAN_EVERY = 5  # readings between two walks over /proc for new descendants (~0.7 ms a walk)


def _read(path: str) -> bytes:
    """The whole of a small /proc file; raises FileNotFoundError if the process has gone."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _fields(blob: bytes) -> dict[bytes, int]:
    """The ``Name:  1234 kB`` lines of a /proc file, in bytes."""
    values = {}
    for line in blob.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(b":") and parts[1].isdigit():
            values[parts[0]] = int(parts[1]) * 1024
    return values


def _check_measure(measure: object) -> Measure:
    if measure == "pss":
        return "pss"
    if measure == "rss":
        return "rss"
    raise ValueError(
        f"measure should be 'pss' (proportional: shared pages split between the processes that "
        f"map them) or 'rss' (each process's resident anonymous and shared memory in full), but "
        f"got measure={measure!r}"
    )


@functools.cache
def _pss_layout() -> Literal["split", "total", None]:
    """How this kernel's smaps_rollup gives PSS: per kind ("split"), as a total and its file
    part ("total"), or not apart from file pages (None)."""
    try:
        fields = _fields(_read("/proc/self/smaps_rollup"))
    except OSError:
        return None
    if all(name in fields for name in _PSS_FIELDS):
        return "split"
    if b"Pss:" in fields and b"Pss_File:" in fields:
        return "total"
    return None


@functools.cache
def supported(measure: Measure = "pss") -> bool:
    """Whether this system can give ``measure`` per process: ``"rss"`` needs Linux 4.5 or
    later, ``"pss"`` a smaps_rollup with Pss_Anon and Pss_Shmem, or Pss_File (Linux 5.x)."""
    measure = _check_measure(measure)
    if measure == "pss":
        return _pss_layout() is not None
    try:
        return b"\nRssAnon:" in _read("/proc/self/status")
    except OSError:
        return False


def preferred_measure() -> Measure | None:
    """PSS where the kernel gives it apart from file pages, else RSS, else None (no /proc)."""
    if supported("pss"):
        return "pss"
    return "rss" if supported("rss") else None


def _require_support(measure: Measure) -> None:
    if not supported(measure):
        source = (
            "Pss_Anon and Pss_Shmem (or Pss_File) from /proc/<pid>/smaps_rollup"
            if measure == "pss"
            else "RssAnon from /proc/<pid>/status"
        )
        raise NotImplementedError(
            f"memory measure {measure!r} reads {source}, which this platform "
            f"(sys.platform={sys.platform!r}) lacks; check ladle.bench.memory.supported("
            f"{measure!r}) first and skip the measurement elsewhere"
            + (", or use measure='rss'" if measure == "pss" and supported("rss") else "")
        )


def _process(pid: int, measure: Measure) -> int:
    name = "smaps_rollup" if measure == "pss" else "status"
    try:
        blob = _read(f"/proc/{pid}/{name}")
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(f"no process with pid={pid}") from None
    fields = _fields(blob)  # a zombie has no memory, so none of the fields: 0
    if measure == "rss":
        return sum(fields.get(name, 0) for name in _RSS_FIELDS)
    if _pss_layout() == "split":
        return sum(fields.get(name, 0) for name in _PSS_FIELDS)
    return max(fields.get(b"Pss:", 0) - fields.get(b"Pss_File:", 0), 0)


def process_memory(pid: int, measure: Measure = "pss") -> int:
    """The memory of one process in bytes, by ``measure`` (see the module docstring); 0 for a
    zombie, which holds none. Raises ProcessLookupError if ``pid`` does not exist."""
    measure = _check_measure(measure)
    _require_support(measure)
    return _process(pid, measure)


def private_memory(pid: int) -> int:
    """``RssAnon + RssShmem`` of one process, in bytes: ``process_memory(pid, "rss")``."""
    return process_memory(pid, "rss")


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
    _require_support("rss")
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


def _sum(pids: list[int], measure: Measure) -> tuple[int, list[int]]:
    """(bytes, the pids still alive) of ``pids``; the first, the root, must exist."""
    total = _process(pids[0], measure)  # ProcessLookupError if the root has gone
    alive = [pids[0]]
    for pid in pids[1:]:
        try:
            total += _process(pid, measure)
        except ProcessLookupError:  # exited since the scan: it holds nothing any more
            continue
        alive.append(pid)
    return total, alive


def tree_memory(pid: int, measure: Measure = "pss") -> int:
    """Memory of ``pid`` and all its descendants in bytes, by ``measure``: ``"pss"`` (default,
    ``Pss_Anon + Pss_Shmem``, shared pages split between the processes mapping them) or
    ``"rss"`` (``RssAnon + RssShmem``, shared pages counted once per process).

    Descendants that exit while they are read are skipped; raises ProcessLookupError when
    ``pid`` itself does not exist, NotImplementedError where the measure is unavailable.
    """
    measure = _check_measure(measure)
    _require_support(measure)
    return _sum([pid, *descendants(pid)], measure)[0]


@dataclass(frozen=True)
class Sample:
    """One reading of the tree: when (seconds since sampling began), how much, how many."""

    seconds: float
    bytes: int
    processes: int


class MemorySampler:
    """Samples :func:`tree_memory` of ``pid`` by ``measure`` in a daemon thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`); afterwards ``peak`` is
    the highest reading in bytes (None if the process was gone before the first one) and
    ``samples`` every reading. A reading is taken at start and at stop as well, so a run
    shorter than ``interval`` still has one. Sampling ends by itself when the root process
    exits. Between readings the peak can be missed: it is a floor.

    The cheap ``RssAnon + RssShmem`` of the tree is read every ``interval`` seconds whatever
    the measure, and its highest value kept as ``rss_peak`` (an upper bound for the PSS peak).
    With ``measure="pss"`` the PSS readings, whose cost grows with the processes' mappings
    (about 3 ms for a process that imported torch), come as often as ``interval`` allows while
    they take at most ``max_load`` of one core: each waits at least its predecessor's cost
    divided by ``max_load``. New descendants are looked for at every PSS reading and every
    fifth interval.
    """

    def __init__(
        self,
        pid: int,
        interval: float = 0.01,
        *,
        measure: Measure = "pss",
        max_load: float = 0.05,
    ) -> None:
        self.measure = _check_measure(measure)
        _require_support(self.measure)
        _require_support("rss")
        if not interval > 0:
            raise ValueError(
                f"interval is the time between readings in seconds and must be positive, but "
                f"got interval={interval!r}; the default is 0.01"
            )
        if not 0 < max_load <= 1:
            raise ValueError(
                f"max_load is the fraction of one core the PSS readings may take, in (0, 1], "
                f"but got max_load={max_load!r}; the default is 0.05"
            )
        self.pid = pid
        self.interval = interval
        self.max_load = max_load
        self.samples: list[Sample] = []
        self.peak: int | None = None
        self.rss_peak: int | None = None
        self.max_processes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._gone = False
        self._stopped = False
        self._pids = [pid]
        self._ticks = 0
        self._next_pss = 0.0

    def _scan(self) -> None:
        self._pids = [self.pid, *descendants(self.pid)]

    def _read(self, measure: Measure) -> tuple[int, int] | None:
        """(bytes, processes) of the tree, or None once the root has gone."""
        try:
            total, alive = _sum(self._pids, measure)
        except ProcessLookupError:
            self._gone = True
            return None
        self._pids = alive
        return total, len(alive)

    def sample(self) -> Sample | None:
        """Take one reading of ``measure`` now (and of RSS); None once the root has gone."""
        if self._gone:
            return None
        self._scan()
        return self._tick(force=True)

    def _tick(self, force: bool = False) -> Sample | None:
        rss = self._read("rss")
        if rss is None:
            return None
        with self._lock:
            self.rss_peak = rss[0] if self.rss_peak is None else max(self.rss_peak, rss[0])
            self.max_processes = max(self.max_processes, rss[1])
        now = time.monotonic()
        if self.measure == "rss":
            reading: tuple[int, int] | None = rss
        elif force or now >= self._next_pss:
            if not force:
                self._scan()
            begun = time.perf_counter()
            reading = self._read("pss")
            cost = time.perf_counter() - begun
            self._next_pss = time.monotonic() + cost / self.max_load
        else:
            return None
        if reading is None:
            return None
        total, processes = reading
        taken = Sample(now - self._started, total, processes)
        with self._lock:
            self.samples.append(taken)
            self.peak = total if self.peak is None else max(self.peak, total)
            self.max_processes = max(self.max_processes, processes)
        return taken

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._ticks += 1
            if self._ticks % _SCAN_EVERY == 0:
                self._scan()
            self._tick()
            if self._gone:
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
