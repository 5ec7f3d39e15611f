"""An opt-in trace of every task, in the Chrome trace event format (JSON).

``with ladle.trace("trace.json"):`` records every pass begun inside the block and writes the
file when it ends; ``LADLE_TRACE=trace.json`` does the same for the whole run, written at
exit. Open the file in https://ui.perfetto.dev or chrome://tracing: one track per worker
(its tasks, each split into fetch, collate and encode, with the indices and the transform
time as arguments) and one for the training loop (each ``next()``: the wait, the transport
read and the conversion). Times come from the monotonic clock, which Linux shares between
processes, so the workers' and the main process's events line up.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ladle._runtime.context import StageClock
from ladle._runtime.engine import Delivered
from ladle._runtime.messages import TaskTimes

__all__ = ["Trace", "active_trace", "trace"]

_MAX_EVENTS = 2_000_000  # about 300 MB of JSON: a trace is for a few epochs, not a run
_INDICES_SHOWN = 16
_INLINE_TID = 1000  # the track of the tasks the main process runs itself (num_workers=0)

_lock = threading.Lock()
_active: list[Trace] = []


class Trace:
    """The events of the passes begun while it is active; :meth:`write` saves them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.origin = time.perf_counter()
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self._passes = 0
        self._named: set[tuple[int, int]] = set()
        # the main process's loops' clocks (id -> clock, its totals at the last batch): a task
        # it ran is the difference
        self._seen: dict[int, tuple[StageClock, float, float, int]] = {}
        self._lock = threading.Lock()

    def new_pass(self) -> int:
        with self._lock:
            self._passes += 1
            return self._passes - 1

    def _us(self, seconds: float) -> float:
        return round((seconds - self.origin) * 1e6, 3)

    def _track(self, pid: int, tid: int, name: str) -> None:
        if (pid, tid) not in self._named:
            self._named.add((pid, tid))
            self.events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            )

    def _span(
        self, name: str, pid: int, tid: int, start: float, seconds: float, args: dict[str, Any]
    ) -> None:
        self.events.append(
            {
                "ph": "X",
                "name": name,
                "cat": "ladle",
                "pid": pid,
                "tid": tid,
                "ts": self._us(start),
                "dur": round(max(seconds, 0.0) * 1e6, 3),
                "args": args,
            }
        )

    def batch(
        self,
        pass_number: int,
        outcome: Delivered,
        indices: object,
        entered: float,
        handed: float,
        converted: float,
        main_clock: StageClock | None = None,
    ) -> None:
        """One batch handed out: the worker's task, and the training loop's ``next()``.
        ``main_clock``: the batch was loaded by the main process's loop that it times."""
        with self._lock:
            if len(self.events) >= _MAX_EVENTS:
                self.dropped += 1
                return
            main = os.getpid()
            label = {"pass": pass_number, "batch": outcome.number}
            times = outcome.times
            inline = False
            if times is None and main_clock is not None:
                inline = True
                # the main process's own task (no workers), inside this next()
                _, *before = self._seen.get(id(main_clock), (main_clock, 0.0, 0.0, 0))
                transform = main_clock.transform - before[0]
                collate = main_clock.collate - before[1]
                samples = int(main_clock.samples - before[2])
                self._mark(main_clock)
                fetch = handed - entered - converted - outcome.transport - transform - collate
                times = TaskTimes(entered, max(fetch, 0.0), transform, collate, 0.0, samples, main)
            if times is not None:
                # tid 0 is the training loop's; a thread worker shares the main process's pid
                worker_tid = _INLINE_TID if inline else outcome.worker_id + 1
                name = (
                    "loading, in the main process"
                    if inline
                    else f"ladle worker {outcome.worker_id}"
                )
                self._track(times.pid, worker_tid, name)
                busy = times.fetch + times.transform + times.collate + times.encode
                self._span(
                    "task",
                    times.pid,
                    worker_tid,
                    times.started,
                    busy,
                    {**label, "samples": times.samples, "indices": _shown(indices)},
                )
                fetched = times.fetch + times.transform
                self._span(
                    "fetch",
                    times.pid,
                    worker_tid,
                    times.started,
                    fetched,
                    {"transform_ms": round(times.transform * 1e3, 3)},
                )
                self._span(
                    "collate", times.pid, worker_tid, times.started + fetched, times.collate, {}
                )
                if times.encode:
                    self._span(
                        "encode",
                        times.pid,
                        worker_tid,
                        times.started + fetched + times.collate,
                        times.encode,
                        {},
                    )
            self._track(main, 0, "training loop")
            self._span(
                "next",
                main,
                0,
                entered,
                handed - entered,
                {**label, "worker": outcome.worker_id, "bytes": outcome.nbytes},
            )
            read_end = handed - converted
            self._span("transport", main, 0, read_end - outcome.transport, outcome.transport, {})
            if converted:
                self._span("convert", main, 0, read_end, converted, {})

    def raised(self, main_clock: StageClock | None) -> None:
        """A task raised instead of giving a batch; ``main_clock``: the main process's loop, if
        it ran the task. What that task spent is its own, not the next task's."""
        if main_clock is not None:
            with self._lock:
                self._mark(main_clock)

    def _mark(self, main_clock: StageClock) -> None:
        self._seen[id(main_clock)] = (
            main_clock,
            main_clock.transform,
            main_clock.collate,
            main_clock.samples,
        )

    def write(self) -> Path:
        """Write the trace file now (the block's end does it); returns its path."""
        with self._lock:
            document = {
                "traceEvents": list(self.events),
                "displayTimeUnit": "ms",
                "otherData": {"producer": "ladle", "dropped_batches": self.dropped},
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(document, file)
        os.replace(partial, self.path)
        return self.path


def _shown(indices: object) -> object:
    if indices is None:
        return None
    tolist = getattr(indices, "tolist", None)
    values = tolist() if tolist is not None else indices
    if isinstance(values, list | tuple):
        if len(values) > _INDICES_SHOWN:
            return [*values[:_INDICES_SHOWN], f"... {len(values)} in all"]
        return list(values)
    return values if isinstance(values, int | float | str) else repr(values)


@contextlib.contextmanager
def trace(path: str | os.PathLike[str]) -> Iterator[Trace]:
    """Record every loader pass begun inside the block; the file is written when it ends."""
    recording = Trace(path)
    with _lock:
        _active.append(recording)
    try:
        yield recording
    finally:
        with _lock:
            _active.remove(recording)
        recording.write()


def active_trace() -> Trace | None:
    """The innermost trace being recorded, if any."""
    with _lock:
        return _active[-1] if _active else None


def _trace_from_environment() -> None:
    path = os.environ.get("LADLE_TRACE")
    if not path or multiprocessing.parent_process() is not None:
        return  # a spawned worker imports ladle again: the trace is its parent's to write
    recording = Trace(path)
    _active.append(recording)
    owner = os.getpid()

    def write() -> None:
        if os.getpid() == owner:  # a forked worker exiting writes nothing
            recording.write()

    atexit.register(write)


_trace_from_environment()
