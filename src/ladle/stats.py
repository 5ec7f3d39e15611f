"""Where a loader's time goes: ``loader.stats()`` and ``iterator.stats()``.

Always on, so it must stay cheap: a pass adds a few clock readings and additions per batch
(workers time their own stages and send the times with the batch). The training loop's side
is split exactly: ``wait`` (inside ``next()``) plus ``outside`` (between batches, the training
step) is ``wall``, from the first ``next()`` to the latest batch (read from another thread while
a ``next()`` runs: to now, that call's wait so far included). The stage times are summed
over the workers (inline, over the training process):

- ``fetch``: the dataset's own time (``__getitem__``/``__getitems__``, a stream's ``next``),
  less what the next two measure inside it;
- ``transform``: time in ``ladle.transforms.Compose`` pipelines (the outermost call);
- ``collate``: ``collate_fn``;
- ``transport``: a worker writing the batch for the trip (slab descriptors, pickling) plus the
  main process reading it (unpickling, views of the slab);
- ``convert``: the main process's output conversion and pinning.

A worker's busy share is the time it spent on tasks over the pass's wall time. When the data
wait stays high (``LADLE_DATA_WAIT_WARNING``, default ``0.5,30``: above half of the time over
30 s windows), one :class:`DataWaitWarning` per loader says so, with the numbers and the
likely remedy; ``LADLE_DATA_WAIT_WARNING=off`` silences it.
"""

from __future__ import annotations

import collections
import os
import struct
import time
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

from ladle import machine
from ladle._runtime.context import StageClock
from ladle._runtime.engine import Delivered
from ladle._runtime.shm import SlabPool
from ladle.callers import outside_ladle
from ladle.tracing import active_trace

__all__ = [
    "DataWaitWarning",
    "LoaderStats",
    "PassRecorder",
    "PassStats",
    "StageTimes",
    "StatsBook",
]

_DEPTH_SAMPLES = 1024  # the queue-depth samples a pass keeps (its latest batches)
_MERGE_AFTER = 64  # passes kept one by one; older finished ones are folded into one tally
_DEFAULT_WATCH = (0.5, 30.0)
_WATCH_MIN_BATCHES = 8
_FOLD_EVERY = 1024  # records logged before they are summed (a sum runs out of cache: ~0.1 ms)
_FOLD_SECONDS = 5.0  # or about this long, at the pace measured (the data-wait watch reads sums)

# One record per next(), logged flat (see PassRecorder.delivered): its columns. The worker's
# TaskTimes come last, as sent; a next() that gave no batch has worker -1 and no times.
(
    _ENTERED,
    _HANDED,
    _CONVERTED,
    _TRANSPORT,
    _NBYTES,
    _WORKER,
    _STARTED,
    _FETCH,
    _TRANSFORM,
    _COLLATE,
    _ENCODE,
    _SAMPLES,
    _PID,
) = range(13)
_COLUMNS = 13
_RECORD = struct.Struct(f"{_COLUMNS}d")  # packed into a buffer made ahead: one C call a batch
_RECORD_BYTES = _RECORD.size
_DEPTH_EVERY = 8  # the queue's depth is sampled every this many batches
_NO_TIMES = (0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)


class DataWaitWarning(UserWarning):
    """The training loop spends much of its time waiting for batches."""


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent in each stage, summed over the workers (see the module's notes)."""

    fetch: float = 0.0
    transform: float = 0.0
    collate: float = 0.0
    transport: float = 0.0
    convert: float = 0.0

    def items(self) -> list[tuple[str, float]]:
        return [
            ("fetch", self.fetch),
            ("transform", self.transform),
            ("collate", self.collate),
            ("transport", self.transport),
            ("convert", self.convert),
        ]

    @property
    def total(self) -> float:
        return self.fetch + self.transform + self.collate + self.transport + self.convert


@dataclass(frozen=True)
class PassStats:
    """One pass's numbers (or several passes' summed: ``passes`` says how many).

    ``wall`` = ``wait`` + ``outside``; ``first_batch`` is the time from ``iter(loader)`` to
    the first batch (in a total, the passes' mean). ``depth`` holds ``(seconds since the
    pass's first next(), batches waiting, tasks in flight)`` as each batch was handed out:
    "waiting" are those already received, ahead of it."""

    passes: int
    batches: int
    samples: int
    wall: float
    wait: float
    outside: float
    first_batch: float
    stages: StageTimes
    num_workers: int
    worker_busy: tuple[float, ...]
    waiting_mean: float
    waiting_max: int
    bytes_moved: int
    shm_bytes: int
    depth: tuple[tuple[float, int, int], ...] = field(default=(), repr=False)

    @property
    def data_wait_share(self) -> float:
        """The share of the wall time the training loop spent waiting inside ``next()``."""
        return self.wait / self.wall if self.wall > 0 else 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.wall if self.wall > 0 else 0.0

    def bottleneck(self) -> str:
        """The stage that took the most time."""
        return max(self.stages.items(), key=lambda item: item[1])[0]

    def __str__(self) -> str:
        if not self.batches:
            return "no batches yet"
        stages = ", ".join(
            f"{name} {seconds * 1e3 / self.batches:.2f}" for name, seconds in self.stages.items()
        )
        busy = ""
        if self.worker_busy:
            shares = " ".join(f"{share:.0%}" for share in self.worker_busy)
            busy = f"; workers busy {shares}"
        return (
            f"{self.batches:,} batches, {self.samples:,} samples in {self.wall:.2f} s "
            f"({self.samples_per_second:,.0f}/s); data wait {self.data_wait_share:.0%} "
            f"({self.wait:.2f} s); ms per batch: {stages}{busy}; first batch "
            f"{self.first_batch * 1e3:.0f} ms"
        )


@dataclass(frozen=True)
class LoaderStats:
    """``latest``: the pass begun last (running or over); ``total``: every pass so far."""

    latest: PassStats | None
    total: PassStats

    def __str__(self) -> str:
        if self.latest is None:
            return "no pass yet"
        if self.total.passes == 1:
            return f"pass: {self.latest}"
        return f"latest pass: {self.latest}\nall {self.total.passes} passes: {self.total}"


class _Tally:
    """A pass's running sums; the loader's book keeps these, not the passes. ``outside`` is
    not summed: the pass's ``next()`` calls do not overlap, so it is ``wall - wait``."""

    __slots__ = (
        "batches",
        "busy",
        "bytes",
        "clock",
        "collate",
        "convert",
        "created",
        "encode",
        "fetch",
        "first",
        "first_batch",
        "last",
        "live",
        "log",
        "main_convert",
        "main_staged",
        "main_wait",
        "num_workers",
        "passes",
        "received",
        "samples",
        "seen",
        "transform",
        "used",
        "wait",
        "waiting",
        "waiting_max",
        "waits",
    )

    def __init__(self, num_workers: int, created: float = 0.0) -> None:
        self.passes = 1
        self.created = created  # iter(loader) was called
        self.num_workers = num_workers
        self.batches = self.samples = self.bytes = self.waiting = self.waiting_max = 0
        self.waits = 0  # depth samples taken (every _DEPTH_EVERY batches)
        self.wait = self.first_batch = 0.0
        self.fetch = self.transform = self.collate = self.encode = self.received = 0.0
        self.convert = 0.0
        self.busy = [0.0] * num_workers
        # workers' batches since the last fold: one record each (see PassRecorder.delivered)
        # in the first ``used`` bytes of ``log``
        self.log = bytearray()
        self.used = 0
        # The main process's own loop (no workers): summed as its batches come, the stages
        # read from its loop's clock (totals ``seen`` at the last read). Its fetch is what is
        # left of its wait, worked out when the tally is settled.
        self.clock: StageClock | None = None
        self.seen = (0.0, 0.0, 0)
        self.main_wait = self.main_convert = self.main_staged = 0.0
        self.first: float | None = None  # the first next() call
        self.last: float | None = None  # the latest batch handed out
        self.live = True

    def copy(self) -> _Tally:
        twin = _Tally(0)
        for name in self.__slots__:
            setattr(twin, name, getattr(self, name))
        twin.busy = list(self.busy)
        # another thread may be writing: the bytes below ``used`` are whole records (of a log
        # that may have been dropped meanwhile, at the pass's end: then none)
        twin.log = self.log[: self.used]
        twin.used = len(twin.log)
        return twin

    def settled(self, entered: float | None = None) -> _Tally:
        """A copy with everything summed (the pass may be running in another thread): the
        log folded in, the main process's loop's stages read and its fetch worked out.
        ``entered``: a ``next()`` began then; if no batch came since, it is still running (read
        from another thread), and its wait so far is counted, as the stages it has run are."""
        twin = self.copy()
        _fold(twin, twin.records())
        twin.log, twin.used = bytearray(), 0
        if entered is not None and twin.live and (twin.last is None or entered > twin.last):
            now = time.perf_counter()
            if twin.clock is not None:  # its stages so far are in the loop's clock
                twin.main_wait += now - entered
            else:
                twin.wait += now - entered
            twin.first = entered if twin.first is None else twin.first
            twin.last = now
        twin.read_clock()
        twin.clock = None
        twin.wait += twin.main_wait
        twin.convert += twin.main_convert
        twin.fetch += max(twin.main_wait - twin.main_staged - twin.main_convert, 0.0)
        twin.main_wait = twin.main_convert = twin.main_staged = 0.0
        return twin

    def follow(self, clock: StageClock | None) -> None:
        """From now on the batches come from the main process's loop timed by ``clock`` (None:
        from workers, which send their times with each batch)."""
        self.read_clock()
        self.clock = clock
        if clock is not None:
            self.seen = (clock.transform, clock.collate, clock.samples)

    def read_clock(self) -> None:
        """Add what the main process's loop spent since the last read."""
        clock = self.clock
        if clock is None:
            return
        transform, collate, samples = clock.transform, clock.collate, clock.samples
        before = self.seen
        self.seen = (transform, collate, samples)
        self.transform += transform - before[0]
        self.collate += collate - before[1]
        self.samples += samples - before[2]
        self.main_staged += (transform - before[0]) + (collate - before[1])

    def records(self) -> np.ndarray:
        """The records not yet folded, one row each (a view of the log: drop it before the
        log is resized)."""
        return np.frombuffer(self.log, dtype=np.float64, count=self.used // 8).reshape(-1, _COLUMNS)

    @property
    def wall(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first

    def absorb(self, other: _Tally, entered: float | None = None) -> None:
        """Add ``other``'s numbers (``entered``: as for :meth:`settled`)."""
        other = other.settled(entered)
        wall = self.wall + other.wall
        self.passes += other.passes
        for name in (
            "batches",
            "samples",
            "bytes",
            "waiting",
            "waits",
            "wait",
            "first_batch",
            "fetch",
            "transform",
            "collate",
            "encode",
            "received",
            "convert",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waiting_max = max(self.waiting_max, other.waiting_max)
        self.num_workers = max(self.num_workers, other.num_workers)
        if len(self.busy) < len(other.busy):
            self.busy.extend([0.0] * (len(other.busy) - len(self.busy)))
        for worker, seconds in enumerate(other.busy):
            self.busy[worker] += seconds
        # a merged tally keeps its wall as a span from 0: the passes' walls summed
        self.first, self.last = 0.0, wall

    def stats(self, shm_bytes: int, depth: tuple[tuple[float, int, int], ...] = ()) -> PassStats:
        """The numbers of a settled tally."""
        wall = self.wall
        return PassStats(
            passes=self.passes,
            batches=self.batches,
            samples=self.samples,
            wall=wall,
            wait=self.wait,
            outside=max(wall - self.wait, 0.0),
            first_batch=self.first_batch / self.passes if self.passes else 0.0,
            stages=StageTimes(
                self.fetch, self.transform, self.collate, self.encode + self.received, self.convert
            ),
            num_workers=self.num_workers,
            worker_busy=tuple(busy / wall if wall > 0 else 0.0 for busy in self.busy),
            waiting_mean=self.waiting / self.waits if self.waits else 0.0,
            waiting_max=self.waiting_max,
            bytes_moved=self.bytes,
            shm_bytes=shm_bytes,
            depth=depth,
        )


def _fold(tally: _Tally, records: np.ndarray) -> None:
    """Add ``records`` (one row of ``_COLUMNS`` numbers per next() over workers) to ``tally``.
    One sum of every column does most of it: this runs out of cache too (a handful of NumPy
    calls then costs tens of microseconds)."""
    if not len(records):
        return
    waits = records[:, _HANDED] - records[:, _ENTERED]
    if tally.first is None:
        tally.first = float(records[0, _ENTERED])
    tally.wait += float(waits.sum())
    tally.last = float(records[-1, _HANDED])
    empty = records[:, _WORKER] < 0  # no batch: the dataset raised, or the pass ended
    if empty.any():
        records = records[~empty]
        if not len(records):
            return
    sums = records.sum(axis=0)
    if tally.batches == 0:
        tally.first_batch = float(records[0, _HANDED]) - tally.created
    tally.batches += len(records)
    tally.convert += float(sums[_CONVERTED])
    tally.received += float(sums[_TRANSPORT])
    tally.bytes += int(sums[_NBYTES])
    tally.samples += int(sums[_SAMPLES])
    tally.fetch += float(sums[_FETCH])
    tally.transform += float(sums[_TRANSFORM])
    tally.collate += float(sums[_COLLATE])
    tally.encode += float(sums[_ENCODE])
    if tally.busy:
        busy = records[:, _FETCH : _ENCODE + 1].sum(axis=1)
        workers = records[:, _WORKER].astype(np.int64)
        for worker, seconds in enumerate(np.bincount(workers, busy, len(tally.busy)).tolist()):
            tally.busy[worker] += seconds


def _watch_settings() -> tuple[float, float] | None:
    raw = os.environ.get("LADLE_DATA_WAIT_WARNING", "").strip().lower()
    if not raw:
        return _DEFAULT_WATCH
    if raw in ("off", "0", "no", "false"):
        return None
    try:
        share, seconds = (float(part) for part in raw.split(","))
    except ValueError:
        warnings.warn(
            f"LADLE_DATA_WAIT_WARNING should be 'off' or '<share>,<seconds>' (e.g. '0.5,30'), "
            f"but it is {raw!r}; using the default 0.5,30",
            UserWarning,
            stacklevel=4,
        )
        return _DEFAULT_WATCH
    return share, seconds


def remedy(stats: PassStats, cpus: int | None = None, auto: bool = False) -> str:
    """What to change, judged from a pass's numbers: the bound stage and the setting.
    ``auto``: the loader has ``num_workers="auto"``, whose measurements already chose the
    worker count (the advice is then the stage, not the count)."""
    cpus = cpus or machine.cpus()
    per_batch = {name: seconds / max(stats.batches, 1) for name, seconds in stats.stages.items()}
    worker_stage = max(("fetch", "transform", "collate"), key=lambda name: per_batch[name])
    cache = (
        " (ladle.cache() keeps decoded samples for later epochs)"
        if worker_stage
        in (
            "fetch",
            "transform",
        )
        else ""
    )
    stage_ms = f"{per_batch[worker_stage] * 1e3:.1f} ms a batch"
    if auto and stats.num_workers == 0:
        return (
            f"loading runs in the training process, most of it in {worker_stage} ({stage_ms}), "
            f"where num_workers='auto' measured it no slower than in workers (loader.autotune "
            f"says why): make {worker_stage} cheaper{cache}"
        )
    if auto and (sum(stats.worker_busy) / max(len(stats.worker_busy), 1)) >= 0.8:
        return (
            f"the {stats.num_workers} workers num_workers='auto' chose are busy most of the "
            f"time, most of it in {worker_stage} ({stage_ms}): make {worker_stage} "
            f"cheaper{cache}, or, when loader.autotune says the memory budget capped the "
            f"count, raise memory_budget="
        )
    if stats.num_workers == 0:
        suggestion = min(cpus, 8)
        if cpus < 2:
            return (
                f"loading runs in the training process, most of it in {worker_stage}, and this "
                f"machine has 1 CPU: make {worker_stage} cheaper{cache}"
            )
        return (
            f"loading runs in the training process, most of it in {worker_stage} "
            f"({per_batch[worker_stage] * 1e3:.1f} ms a batch): load in workers, e.g. "
            f"num_workers={suggestion} (this machine has {cpus} CPUs)"
        )
    busy = sum(stats.worker_busy) / len(stats.worker_busy) if stats.worker_busy else 0.0
    are = "worker is" if stats.num_workers == 1 else "workers are"
    if busy >= 0.8:
        if stats.num_workers < cpus:
            return (
                f"the {stats.num_workers} {are} busy {busy:.0%} of the time, most of it "
                f"in {worker_stage} ({per_batch[worker_stage] * 1e3:.1f} ms a batch): raise "
                f"num_workers (this machine has {cpus} CPUs) or make {worker_stage} "
                f"cheaper{cache}"
            )
        return (
            f"the {stats.num_workers} {are} busy {busy:.0%} of the time on {cpus} CPUs, "
            f"most of it in {worker_stage} ({per_batch[worker_stage] * 1e3:.1f} ms a batch): "
            f"more workers cannot help; make {worker_stage} cheaper{cache}"
        )
    main = per_batch["transport"] + per_batch["convert"]
    return (
        f"the workers are idle {1 - busy:.0%} of the time, so the main process's share bounds "
        f"it ({main * 1e3:.2f} ms a batch in transport and conversion) or batches come in "
        f"bursts: raise prefetch_factor, or hand out fewer or smaller arrays per batch"
    )


class StatsBook:
    """A loader's record of its passes: their tallies, and the one data-wait warning."""

    def __init__(self) -> None:
        self._tallies: list[_Tally] = []
        self._latest: weakref.ref[PassRecorder] | None = None
        self._latest_tally: _Tally | None = None
        self._recorders: weakref.WeakSet[PassRecorder] = weakref.WeakSet()
        self.warned = False

    def open(
        self, num_workers: int, created: float, slabs: SlabPool | None, auto: bool = False
    ) -> PassRecorder:
        """A new pass's recorder; ``auto``: the loader chooses its worker count."""
        recorder = PassRecorder(num_workers, created, slabs, self)
        recorder.auto = auto
        self._recorders.add(recorder)
        tally = recorder.tally
        self._tallies.append(tally)
        # a pass dropped unfinished has ended too, whether or not a newer one began meanwhile
        # (then its tally is folded with the others instead of kept, and summed, forever)
        weakref.finalize(recorder, _ended, tally).atexit = False
        self._latest = weakref.ref(recorder)
        self._latest_tally = tally
        if len(self._tallies) > _MERGE_AFTER:
            self._merge()
        return recorder

    def _merge(self) -> None:
        ended = [tally for tally in self._tallies[:-1] if not tally.live]
        if len(ended) < 2:
            return
        merged = _Tally(0)
        merged.passes = 0
        for tally in ended:
            merged.absorb(tally)
        merged.live = False
        self._tallies = [merged, *(tally for tally in self._tallies if tally.live)]
        if self._latest_tally is not None and self._latest_tally not in self._tallies:
            self._tallies.append(self._latest_tally)

    def stats(self, idle_slabs: SlabPool | None) -> LoaderStats:
        """``idle_slabs``: the loader's slabs kept between passes, besides the passes'."""
        pools = {id(pool): pool for pool in (idle_slabs,) if pool is not None}
        entered: dict[int, float | None] = {}  # a running pass's next() in progress counts too
        for running in list(self._recorders):
            entered[id(running.tally)] = running.entered
            if running.tally.live and running.slabs is not None:
                pools[id(running.slabs)] = running.slabs
        shm_bytes = sum(pool.footprint()[1] for pool in pools.values())
        total = _Tally(0)
        total.passes = 0
        for tally in self._tallies:
            total.absorb(tally, entered.get(id(tally)))
        latest: PassStats | None = None
        recorder = self._latest() if self._latest is not None else None
        if recorder is not None:
            latest = recorder.stats()
        elif self._latest_tally is not None:
            latest = self._latest_tally.settled().stats(shm_bytes)
        return LoaderStats(latest, total.stats(shm_bytes))


def _ended(tally: _Tally) -> None:
    tally.live = False


class PassRecorder:
    """One pass's stats, fed by its iterator: :meth:`delivered` after each batch."""

    def __init__(
        self, num_workers: int, created: float, slabs: SlabPool | None, book: StatsBook
    ) -> None:
        self.tally = _Tally(num_workers, created)
        self.slabs = slabs
        self.trace = active_trace()  # a pass begun inside ``ladle.trace()`` is recorded
        self.number = self.trace.new_pass() if self.trace is not None else 0
        self._book = book
        # when the latest next() began (the iterator sets it): while no batch has come since,
        # it is running, and a read from another thread counts its wait so far
        self.entered: float | None = None
        self.auto = False  # the loader has num_workers="auto" (its advice differs)
        self._depth: collections.deque[tuple[float, int, int]] = collections.deque(
            maxlen=_DEPTH_SAMPLES
        )
        self._watch = _watch_settings() if not book.warned else None
        self._window_start: float | None = None
        self._window_wait = 0.0
        self._window_batches = 0
        self._main = False  # the batches come from the main process's own loop
        self._pack = _RECORD.pack_into
        self._fold_at = 8 * _RECORD_BYTES  # a first look soon, to learn the pace
        self.tally.log = bytearray(self._fold_at)
        self._paced = False
        self._count = 0
        # the main process's loop: the data-wait watch looks at batch _check_at, and the
        # wait, batch count and time it saw last
        self._check_at = 8
        self._checked: tuple[float, int, float] | None = None

    def delivered(self, entered: float, outcome: Delivered, converted: float, now: float) -> bool:
        """A batch was handed out at ``now``: ``next()`` began at ``entered``, ``converted``
        seconds of it went into the output conversion. This runs on the loader's hot path,
        out of the CPU's caches, where every line of Python costs: a batch of the main
        process's loop adds to four sums (its stages are in its loop's clock), a worker's
        batch is packed into the log, summed every so often. Returns True when the caller
        should report the queue's depth (:meth:`depth`)."""
        tally = self.tally
        if self._main:
            batches = tally.batches
            if not batches:
                self._first(entered, now)
            tally.batches = batches = batches + 1
            tally.main_wait += now - entered
            if converted:  # an output conversion ran (none by default)
                tally.main_convert += converted
            tally.last = now
            if batches >= self._check_at:
                self._check(now)
            return False
        used = tally.used
        self._pack(
            tally.log,
            used,
            entered,
            now,
            converted,
            outcome.transport,
            outcome.nbytes,
            outcome.worker_id,
            *(outcome.times or _NO_TIMES),
        )
        # counted once written: stats() from another thread copies whole records only
        tally.used = used = used + _RECORD_BYTES
        if used >= self._fold_at:
            self._due()
        self._count += 1
        return not self._count % _DEPTH_EVERY

    def _first(self, entered: float, now: float) -> None:
        tally = self.tally
        if tally.first is None:
            tally.first = entered
        tally.first_batch = now - tally.created

    def depth(self, now: float, waiting: int, in_flight: int) -> None:
        """The queue at ``now``: batches received and waiting, tasks in flight."""
        self._depth.append((now, waiting, in_flight))
        tally = self.tally
        tally.waiting += waiting
        tally.waits += 1
        if waiting > tally.waiting_max:
            tally.waiting_max = waiting

    def stopped(self, entered: float, now: float, over: bool) -> None:
        """``next()`` gave no batch at ``now``: the dataset raised for it, or (``over``) the
        pass has ended or broken."""
        tally = self.tally
        if self._main:
            if tally.first is None:
                tally.first = entered
            tally.main_wait += now - entered
            tally.last = now
        else:
            if tally.used + _RECORD_BYTES > len(tally.log):
                tally.log.extend(bytes(_RECORD_BYTES))
            self._pack(tally.log, tally.used, entered, now, 0.0, 0.0, 0, -1, *_NO_TIMES)
            tally.used += _RECORD_BYTES
        if over:
            self._fold()
            tally.log = bytearray()  # every record is summed: its buffer (up to 100 KB) goes
            tally.follow(None)  # the loop's clock is read for the last time
            tally.live = False
        elif tally.used >= self._fold_at:
            self._due()

    def _check(self, now: float) -> None:
        """The main process's loop: hand the data-wait watch what came since the last look;
        the next look after about a second of batches."""
        tally = self.tally
        wait, batches = tally.wait + tally.main_wait, tally.batches
        checked = self._checked or (0.0, 0, tally.first or now)
        self._checked = (wait, batches, now)
        pace = (batches - checked[1]) / max(now - checked[2], 1e-9)
        self._check_at = batches + max(8, int(pace))
        if self._watch is not None:
            self._watch_wait(wait - checked[0], batches - checked[1], checked[2], now)

    def _due(self) -> None:
        """The log is as long as planned: the first time, learn the pace from it (the next
        sum after about _FOLD_SECONDS of it), later sum it."""
        tally = self.tally
        if not self._paced:
            self._paced = True
            records = tally.records()
            pace = len(records) / max(float(records[-1, _HANDED] - records[0, _ENTERED]), 1e-9)
            del records  # the log may be resized now
            self._plan(pace)
            if tally.used < self._fold_at:
                return
        self._fold()

    def _plan(self, pace: float) -> None:
        """The next sum after about _FOLD_SECONDS at ``pace`` batches a second (the watch
        reads the sums); the log is made long enough for it."""
        self._fold_at = _RECORD_BYTES * max(8, min(_FOLD_EVERY, int(pace * _FOLD_SECONDS)))
        log = self.tally.log
        if len(log) < self._fold_at + _RECORD_BYTES:  # a stopped() record may come on top
            log.extend(bytes(self._fold_at + _RECORD_BYTES - len(log)))

    def _fold(self) -> None:
        tally = self.tally
        if not tally.used:
            return
        records = tally.records()
        count = len(records)
        start, end = float(records[0, _ENTERED]), float(records[-1, _HANDED])
        waited = float((records[:, _HANDED] - records[:, _ENTERED]).sum())
        _fold(tally, records)
        del records
        tally.used = 0
        self._plan(count / max(end - start, 1e-9))
        if self._watch is not None:
            self._watch_wait(waited, count, start, end)

    def closed(self) -> None:
        self.tally.live = False

    def follow(self, clock: StageClock | None) -> None:
        """The pass's batches come from the main process's own loop, timed by ``clock`` (None:
        from workers)."""
        tally = self.tally
        if self._main and tally.last is not None:
            self._check(tally.last)  # the watch sees the main process's batches since its look
        self._fold()  # what came before was loaded elsewhere
        tally.follow(clock)
        self._main = clock is not None
        # the watch's next look starts here: it has seen what came before (a look from zero
        # would hand it every wait of the pass again)
        last, waited = tally.last, tally.wait + tally.main_wait
        self._checked = None if last is None else (waited, tally.batches, last)
        self._check_at = tally.batches + 8

    def resized(self, num_workers: int, clock: StageClock | None) -> None:
        """The pass moved to ``num_workers`` workers (num_workers="auto"; 0 and ``clock``: to
        the main process's loop)."""
        self.follow(clock)
        tally = self.tally
        tally.num_workers = max(tally.num_workers, num_workers)
        if len(tally.busy) < num_workers:
            tally.busy.extend([0.0] * (num_workers - len(tally.busy)))

    def _watch_wait(self, waited: float, batches: int, start: float, now: float) -> None:
        if self._window_start is None:
            self._window_start = start
        self._window_wait += waited
        self._window_batches += batches
        assert self._watch is not None
        threshold, window = self._watch
        span = now - self._window_start
        if span < window:
            return
        share = self._window_wait / span
        batches = self._window_batches
        self._window_start, self._window_wait, self._window_batches = now, 0.0, 0
        if share < threshold or batches < _WATCH_MIN_BATCHES or self._book.warned:
            return
        self._book.warned = True
        self._watch = None
        stats = self.stats()
        waits = stats.wait / max(stats.batches, 1)
        outside = stats.outside / max(stats.batches, 1)
        warnings.warn(
            f"the training loop waited for data {share:.0%} of the last {span:.1f} s "
            f"({batches} batches; over the pass, {waits * 1e3:.1f} ms a batch waiting and "
            f"{outside * 1e3:.1f} ms a batch outside the loader): {remedy(stats, auto=self.auto)}. "
            f"loader.stats() shows the breakdown; LADLE_DATA_WAIT_WARNING=off silences this",
            DataWaitWarning,
            stacklevel=outside_ladle(),
        )

    def stats(self) -> PassStats:
        tally = self.tally.settled(self.entered)
        first = tally.first or 0.0
        depth = [(now - first, waiting, flight) for now, waiting, flight in self._depth]
        shm_bytes = self.slabs.footprint()[1] if self.slabs is not None else 0
        return tally.stats(shm_bytes, tuple(depth))
