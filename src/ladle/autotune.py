"""``num_workers="auto"`` (and ``prefetch_factor="auto"``): measured, then chosen.

The first pass of such a loader starts in the main process and times its first batches: how
long loading a batch takes (``b``) and how long the training step between batches takes
(``c``). Loading that costs less than shipping a batch from a worker (about
``_SHIP_SECONDS``), or a few percent of the step, stays in the main process. Otherwise the pass
moves on to ``ceil(1.2 b / max(c, ship))`` workers, at most one per CPU and as many as the
memory budget holds (``memory_budget=``, by default half the memory available, and half the
free shared memory for the slabs). It then measures again: workers all busy while the loop
still waits means more workers (while CPUs and the budget allow); idle workers while it waits
means a deeper prefetch (with ``prefetch_factor="auto"``); a setting not 5% faster than a leaner
one tried before gives way to it. A choice of workers is confirmed at
the start of the next pass: the first pass's probe may have paid for the data's first touches
(the page cache, a memory map's faults), so the main process is timed again, warm, and kept if
it keeps up with the workers. The choice is kept for the later passes; ``loader.autotune``
shows it and why.

The batches never change: a map-style dataset's batches, and every ``sample_rng()`` draw, are
the same for any number of workers, and a switch hands the rest of the pass to the new
workers in order (the batches already in flight come from the old ones first). Iterable
datasets are refused: their batches depend on the number of workers.
"""

from __future__ import annotations

import enum
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle import machine
from ladle._runtime.shm import shm_directory, space
from ladle.stats import PassStats

__all__ = ["AutoTuner", "Choice", "PassTuner"]

_SHIP_SECONDS = 1e-4  # the main process's cost of a batch from a worker (receive, views)
_SMALL_SHARE = 0.03  # loading this small a share of the step is left in the main process
_PROBE_SECONDS = 0.25  # how long each measurement runs, at least
_PROBE_BATCHES = 64  # or this many batches, whichever comes first (at least _MIN_BATCHES)
_MIN_BATCHES = 3
_WARMUP_BATCHES = 4  # a setting's first batches, left out of its measurement
_WORKER_BYTES = 96 << 20  # a worker's own memory, besides its slabs, before it is measured
_MAX_SWITCHES = 3
_MAX_UNMEASURED_PASSES = 4
_MAX_PREFETCH = 8


def batch_bytes(batch: Any) -> int:
    """The bytes of the arrays and tensors in a batch (what travels through the slabs)."""
    if isinstance(batch, np.ndarray):
        return int(batch.nbytes)
    nbytes = getattr(batch, "nbytes", None)
    if isinstance(nbytes, int) and hasattr(batch, "shape"):  # a tensor, a jax array
        return nbytes
    if isinstance(batch, Mapping):
        return sum(batch_bytes(value) for value in batch.values())
    if isinstance(batch, list | tuple):
        return sum(batch_bytes(value) for value in batch)
    return 0


@dataclass(frozen=True)
class Choice:
    """What ``num_workers="auto"`` chose, and why (from the measured numbers)."""

    num_workers: int
    prefetch_factor: int | None
    reason: str

    def __str__(self) -> str:
        prefetch = f", prefetch_factor={self.prefetch_factor}" if self.num_workers else ""
        return f"num_workers={self.num_workers}{prefetch}: {self.reason}"


class _Phase(enum.Enum):
    PROBE = "probe"  # loading in the main process, timed
    VERIFY = "verify"  # loading in workers, timed again
    CONFIRM = "confirm"  # workers chosen: a later pass times the main process again, warm
    DONE = "done"


class AutoTuner:
    """A loader's tuning: its limits, and the choice once made (kept for later passes)."""

    def __init__(
        self,
        worker_type: str,
        prefetch_factor: int | None,
        auto_prefetch: bool,
        memory_budget: int | None,
    ) -> None:
        self.worker_type = worker_type
        self.prefetch_factor = prefetch_factor  # given, or None (2, or "auto")
        self.auto_prefetch = auto_prefetch
        self.memory_budget = memory_budget
        self.choice: Choice | None = None
        self._running: PassTuner | None = None

    def budget(self) -> int:
        if self.memory_budget is not None:
            return self.memory_budget
        return machine.available_memory() // 2

    def start(self) -> PassTuner | None:
        """The tuning for a new pass, which starts with its ``workers`` and ``prefetch``:
        None once the choice is made. Passes too short to finish the measuring carry it on
        from one to the next."""
        if self.choice is not None:
            return None
        if self._running is None:
            self._running = PassTuner(self)
        return self._running

    def decided(self, choice: Choice) -> None:
        self.choice = choice

    def forget(self, running: PassTuner) -> None:
        """``running``'s measurements are dropped: the next pass measures afresh."""
        if self._running is running:
            self._running = None


class PassTuner:
    """One pass's measurements: :meth:`review` at the batches :attr:`next_review` names, and
    switch to what it returns."""

    def __init__(self, tuner: AutoTuner) -> None:
        self.tuner = tuner
        self.phase = _Phase.PROBE
        self.next_review = _WARMUP_BATCHES
        self.workers = 0
        self.prefetch: int | None = None
        self.switches = 0
        self._since: PassStats | None = None  # the numbers when the measuring began
        self._warm = False  # the current setting's first batches are behind
        self._cap = 1
        self._reason = ""
        self._tried: list[tuple[float, int, int | None]] = []  # (batches/s, workers, prefetch)
        self.passes = 0
        self._nbytes = 0  # a batch's bytes, as last seen
        self._owner: weakref.ref[object] | None = None  # the pass driving it
        self._switched = False  # the setting changed during the driving pass
        # CONFIRM: the workers chosen, as (workers, prefetch, reason, batches/s measured), and
        # the pass the confirming began in
        self._candidate: tuple[int, int | None, str, float] | None = None
        self._confirm_pass = 0

    def claim(self, owner: object) -> None:
        """Pass ``owner`` begins with the current setting and drives the tuning from now on:
        the newest pass does (an earlier one still running, or left unfinished, goes on with
        its setting, untuned). Its numbers start at zero."""
        self._owner = weakref.ref(owner)
        self._since, self._warm, self._switched = None, False, False
        self.next_review = _WARMUP_BATCHES
        self.passes += 1

    def owns(self, owner: object) -> bool:
        """``owner`` is the pass driving the tuning."""
        return self._owner is not None and self._owner() is owner

    def _prefetch_start(self) -> int:
        return self.tuner.prefetch_factor or 2

    def _window(self, stats: PassStats) -> tuple[int, float, float, float, float]:
        """(batches, wall, wait, outside, worker busy seconds) since the setting began."""
        since = self._since
        busy = sum(share * stats.wall for share in stats.worker_busy)
        if since is None:
            return stats.batches, stats.wall, stats.wait, stats.outside, busy
        busy_before = sum(share * since.wall for share in since.worker_busy)
        return (
            stats.batches - since.batches,
            stats.wall - since.wall,
            stats.wait - since.wait,
            stats.outside - since.outside,
            busy - busy_before,
        )

    def review(self, stats: PassStats, nbytes: int) -> tuple[int, int | None] | None:
        """Judge the numbers so far; returns ``(num_workers, prefetch_factor)`` to switch to,
        or None to go on as is."""
        if self.phase is _Phase.DONE:
            self.next_review = 1 << 62
            return None
        self._nbytes = nbytes
        batches, wall, wait, outside, busy = self._window(stats)
        if not self._warm:
            # a setting's first batches pay for its start (fresh memory, forked workers):
            # the measurement begins after them
            if batches < _WARMUP_BATCHES:
                self.next_review = stats.batches + _WARMUP_BATCHES - batches
                return None
            self._warm, self._since = True, stats
            self.next_review = stats.batches + _MIN_BATCHES
            return None
        if batches < _MIN_BATCHES or (wall < _PROBE_SECONDS and batches < _PROBE_BATCHES):
            self.next_review = stats.batches + max(1, batches // 8)
            return None
        if self.phase is _Phase.PROBE:
            return self._from_probe(stats, batches, wait, outside, nbytes)
        if self.phase is _Phase.CONFIRM:
            return self._from_confirm(batches, wall)
        return self._from_verify(stats, batches, wall, wait, busy)

    def _from_probe(
        self, stats: PassStats, batches: int, wait: float, outside: float, nbytes: int
    ) -> tuple[int, int | None] | None:
        load, step = wait / batches, outside / batches
        if load <= 2 * _SHIP_SECONDS or load <= _SMALL_SHARE * (load + step):
            self._finish(
                0,
                None,
                f"loading takes {load * 1e3:.2f} ms a batch in the main process against "
                f"{step * 1e3:.2f} ms of training step: workers would cost more than they save",
            )
            return None
        self._tried.append((batches / (wait + outside), 0, None))
        prefetch = self._prefetch_start()
        self._cap = self._capacity(nbytes, prefetch)
        needed = math.ceil(1.2 * load / max(step, _SHIP_SECONDS))
        workers = max(1, min(needed, self._cap))
        self._reason = (
            f"loading takes {load * 1e3:.2f} ms a batch against {step * 1e3:.2f} ms of training "
            f"step: {needed} workers keep up, {self._cap} fit ({machine.cpus()} CPUs, the memory "
            f"budget)"
        )
        return self._switch(stats, workers, prefetch)

    def _from_verify(
        self, stats: PassStats, batches: int, wall: float, wait: float, busy: float
    ) -> tuple[int, int | None] | None:
        share = wait / wall if wall > 0 else 0.0
        busy_share = busy / (self.workers * wall) if wall > 0 else 0.0
        assert self.prefetch is not None
        rate = batches / wall if wall > 0 else 0.0
        best_rate, best_workers, best_prefetch = max(self._tried, key=lambda tried: tried[0])
        self._tried.append((rate, self.workers, self.prefetch))
        if rate < 1.05 * best_rate:
            # measured no faster than a setting tried before (the main process, or fewer
            # workers, or a shallower prefetch, each leaner than this one): back to that one,
            # and done
            reason = (
                f"{best_workers} workers gave {best_rate:,.0f} batches/s, {self.workers} gave "
                f"{rate:,.0f} ({self._reason})"
            )
            if best_workers:
                self._confirm(best_workers, best_prefetch, reason, best_rate)
            else:
                self._finish(best_workers, best_prefetch, reason)
            return best_workers, best_prefetch
        if self.switches < _MAX_SWITCHES and share > 0.2:
            if busy_share > 0.85 and self.workers < self._cap:
                workers = min(self._cap, self.workers + max(1, self.workers // 2))
                self._reason = (
                    f"{self.workers} workers were busy {busy_share:.0%} while the loop waited "
                    f"{share:.0%} of the time: {workers} workers"
                )
                return self._switch(stats, workers, self.prefetch)
            if busy_share < 0.6 and self.tuner.auto_prefetch and self.prefetch < _MAX_PREFETCH:
                prefetch = min(_MAX_PREFETCH, self.prefetch * 2)
                self._reason = (
                    f"the workers were idle {1 - busy_share:.0%} of the time while the loop "
                    f"waited {share:.0%}: prefetch_factor={prefetch}"
                )
                return self._switch(stats, self.workers, prefetch)
        self._confirm(
            self.workers,
            self.prefetch,
            f"{self._reason}; measured: the loop waited {share:.0%} of the time, the workers "
            f"busy {busy_share:.0%}",
            rate,
        )
        return None

    def _confirm(self, workers: int, prefetch: int | None, reason: str, rate: float) -> None:
        """Workers were chosen: the rest of this pass runs them, the next one starts in the
        main process again to time it warm (:meth:`_from_confirm`)."""
        self.phase = _Phase.CONFIRM
        self._candidate = (workers, prefetch, reason, rate)
        self._confirm_pass = self.passes + 1
        self.workers, self.prefetch = 0, None  # what the next pass starts with
        self.next_review = 1 << 62  # nothing more to judge in this pass

    def _from_confirm(self, batches: int, wall: float) -> tuple[int, int | None] | None:
        assert self._candidate is not None
        workers, prefetch, reason, worker_rate = self._candidate
        rate = batches / wall if wall > 0 else 0.0
        if rate >= 0.95 * worker_rate:
            self._finish(
                0,
                None,
                f"the main process gave {rate:,.0f} batches/s in a later pass, {workers} "
                f"workers {worker_rate:,.0f} (the first pass timed the main process on cold "
                f"data; {reason})",
            )
            return None
        self._finish(
            workers,
            prefetch,
            f"{reason}; the main process timed again in a later pass: {rate:,.0f} batches/s "
            f"against {worker_rate:,.0f}",
        )
        return workers, prefetch

    def _capacity(self, nbytes: int, prefetch: int) -> int:
        """How many workers the CPUs and the memory budget hold."""
        cpus = machine.cpus()
        slabs = nbytes * (prefetch + 1)
        by_memory = self.tuner.budget() // max(1, _WORKER_BYTES + slabs)
        cap = min(cpus, max(1, by_memory))
        if self.tuner.worker_type == "process" and slabs:
            _, free = space(shm_directory())
            if free:
                cap = min(cap, max(1, (free // 2) // slabs))
        return cap

    def _switch(self, stats: PassStats, workers: int, prefetch: int) -> tuple[int, int | None]:
        self.phase = _Phase.VERIFY
        self.workers, self.prefetch = workers, prefetch
        self.switches += 1
        self._since, self._warm, self._switched = stats, False, True
        self.next_review = stats.batches + _MIN_BATCHES
        return workers, prefetch

    def _finish(self, workers: int, prefetch: int | None, reason: str) -> None:
        self.phase = _Phase.DONE
        self.next_review = 1 << 62
        self.tuner.decided(Choice(workers, prefetch, reason))

    def interrupted(self) -> None:
        """The pass was interrupted (Ctrl-C) while moving to other workers: nothing is
        decided, and the next pass measures afresh."""
        self.phase = _Phase.DONE  # this pass judges nothing more
        self.next_review = 1 << 62
        self.tuner.forget(self)

    def failed(self, workers: int, prefetch: int | None, error: BaseException) -> None:
        """Moving to other workers failed (they could not start): keep what runs."""
        self._finish(
            workers,
            prefetch,
            f"workers could not start ({type(error).__name__}: {error}); {self._reason}",
        )

    def ended(self, stats: PassStats) -> None:
        """The pass ended before the tuning did: judge what it measured (the next pass starts
        with the setting chosen from it). A pass too short to measure judges on its whole
        numbers, and after a few such passes the setting running is kept."""
        if self.phase is _Phase.DONE:
            return
        batches, wall, wait, outside, busy = self._window(stats)
        if not self._warm or batches < _MIN_BATCHES:
            if self._switched:
                return  # the new setting ran too little here: the next pass measures it
            self._since = None  # the whole pass, warm-up and all
            batches, wall, wait, outside, busy = self._window(stats)
        if self.phase is _Phase.CONFIRM:
            if self.passes < self._confirm_pass:
                return  # the pass that chose the workers: the next one confirms
            if batches >= _MIN_BATCHES:
                self._from_confirm(batches, wall)  # the next pass starts with the choice
            elif self.passes - self._confirm_pass + 1 >= _MAX_UNMEASURED_PASSES:
                assert self._candidate is not None
                workers, prefetch, reason, _ = self._candidate
                self._finish(workers, prefetch, reason)
            return
        if batches < _MIN_BATCHES:
            if self.passes >= _MAX_UNMEASURED_PASSES:
                self._finish(
                    self.workers,
                    self.prefetch,
                    f"{self.passes} passes of under {_MIN_BATCHES} batches: nothing to measure",
                )
            return
        if self.phase is _Phase.PROBE:
            self._from_probe(stats, batches, wait, outside, self._nbytes)
        else:
            self._from_verify(stats, batches, wall, wait, busy)
