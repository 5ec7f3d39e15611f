"""One trial of ``ladle doctor``: a loader run briefly under one setting, measured.

A trial iterates the loader (another pass when one ends) for a warm-up, then for ``seconds``
or ``max_batches``, whichever comes first, and closes its passes and the loader's workers. It
counts the samples of the measured batches only (the warm-up holds the workers' start and the
prefetched batches that piled up during it), samples the memory of the process tree (this
process and its workers, PSS where the kernel gives it, see :mod:`ladle.bench.memory`) in a
thread, and keeps the passes' stats (:mod:`ladle.stats`) for the breakdown by stage.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ladle.autotune import batch_bytes as nbytes_of
from ladle.bench.memory import MemorySampler, preferred_measure
from ladle.loader import DataLoader
from ladle.stats import DataWaitWarning, PassStats, StageTimes

__all__ = ["Setting", "Trial", "combine", "failed", "run_trial"]


@dataclass(frozen=True, order=True)
class Setting:
    """The settings a trial varies; ``prefetch_factor`` is None without workers."""

    batch_size: int | None
    num_workers: int
    worker_type: str
    prefetch_factor: int | None

    def arguments(self) -> str:
        """The DataLoader keyword arguments, as code."""
        parts = [] if self.batch_size is None else [f"batch_size={self.batch_size}"]
        parts.append(f"num_workers={self.num_workers}")
        if self.num_workers:
            parts += [f'worker_type="{self.worker_type}"', f"prefetch_factor={self.prefetch}"]
        return ", ".join(parts)

    @property
    def prefetch(self) -> int:
        """The prefetch factor in effect (a loader with workers defaults to 2)."""
        return 2 if self.prefetch_factor is None else self.prefetch_factor

    def reconfiguration(self) -> dict[str, Any]:
        """What ``loader.reconfigure(...)`` takes to switch a loader to this setting."""
        if not self.num_workers:
            return {"num_workers": 0, "prefetch_factor": None}
        return {
            "num_workers": self.num_workers,
            "worker_type": self.worker_type,
            "prefetch_factor": self.prefetch,
        }

    def __str__(self) -> str:
        workers = (
            "inline"
            if not self.num_workers
            else f"{self.num_workers} {self.worker_type}, prefetch {self.prefetch}"
        )
        return workers if self.batch_size is None else f"batch {self.batch_size}, {workers}"


@dataclass(frozen=True)
class Trial:
    """What one setting measured. ``samples_per_second`` counts the measured batches only;
    ``peak_bytes`` is the highest memory of the process tree during the trial and
    ``start_bytes`` its memory as the trial began (None where /proc is not available);
    ``batch_bytes`` the arrays' bytes in one batch; ``stats`` the passes' numbers, warm-up
    included. ``error`` says why a setting could not run (the other fields are then 0).
    ``measurements``: each run's samples/s when the setting was measured again (the
    contenders for the recommendation are), ``samples_per_second`` then their mean."""

    setting: Setting
    samples_per_second: float
    peak_bytes: int | None
    start_bytes: int | None
    first_batch: float
    batch_bytes: int
    measured_batches: int
    stats: PassStats = field(repr=False)
    error: str | None = None
    measurements: tuple[float, ...] = ()

    def remeasured(self, again: Trial) -> Trial:
        """This trial with another measurement of the same setting: the throughput their
        mean, the peak memory the higher."""
        runs = (*(self.measurements or (self.samples_per_second,)), again.samples_per_second)
        peaks = [peak for peak in (self.peak_bytes, again.peak_bytes) if peak is not None]
        return replace(
            self,
            samples_per_second=sum(runs) / len(runs),
            peak_bytes=max(peaks) if peaks else None,
            measurements=runs,
        )

    @property
    def ok(self) -> bool:
        return self.error is None and self.samples_per_second > 0

    @property
    def bottleneck(self) -> str:
        """The stage that took the most time (summed over the workers)."""
        return self.stats.bottleneck()

    @property
    def data_wait_share(self) -> float:
        return self.stats.data_wait_share

    @property
    def worker_busy(self) -> float | None:
        """The workers' mean busy share; None without workers."""
        busy = self.stats.worker_busy
        return sum(busy) / len(busy) if busy else None


def combine(passes: list[PassStats]) -> PassStats:
    """Several passes' stats as one: sums, the busy shares weighted by each pass's wall."""
    if len(passes) == 1:
        return passes[0]
    wall = sum(p.wall for p in passes)
    batches = sum(p.batches for p in passes)
    busy = [0.0] * max(len(p.worker_busy) for p in passes)
    for p in passes:
        for worker, share in enumerate(p.worker_busy):
            busy[worker] += share * p.wall
    stages = StageTimes(
        *(
            sum(seconds for _, seconds in stage)
            for stage in zip(*(p.stages.items() for p in passes), strict=True)
        )
    )
    return PassStats(
        passes=sum(p.passes for p in passes),
        batches=batches,
        samples=sum(p.samples for p in passes),
        wall=wall,
        wait=sum(p.wait for p in passes),
        outside=sum(p.outside for p in passes),
        first_batch=passes[0].first_batch,
        stages=stages,
        num_workers=max(p.num_workers for p in passes),
        worker_busy=tuple(seconds / wall if wall > 0 else 0.0 for seconds in busy),
        waiting_mean=sum(p.waiting_mean * p.batches for p in passes) / max(batches, 1),
        waiting_max=max(p.waiting_max for p in passes),
        bytes_moved=sum(p.bytes_moved for p in passes),
        shm_bytes=max(p.shm_bytes for p in passes),
    )


def _batches(loader: DataLoader, passes: list[Any]) -> Iterator[Any]:
    """The loader's batches, pass after pass; each pass is kept in ``passes`` (for its stats
    and to close it)."""
    while True:
        iterator = iter(loader)
        passes.append(iterator)
        empty = True
        for batch in iterator:
            empty = False
            yield batch
        if empty:
            raise ValueError(
                f"the loader gave no batch (its dataset has {len(loader.dataset)} samples?); "
                f"the doctor needs a loader with at least one batch"
            )


def run_trial(
    loader: DataLoader, setting: Setting, *, seconds: float, max_batches: int | None = None
) -> Trial:
    """Run ``loader`` (already switched to ``setting``) briefly and measure it; closes the
    passes and the loader's workers before it returns."""
    measure = preferred_measure()
    sampler = None if measure is None else MemorySampler(os.getpid(), measure=measure)
    passes: list[Any] = []
    warm_batches = max(2, setting.num_workers * setting.prefetch if setting.num_workers else 2)
    limit = max_batches if max_batches is not None else 1 << 62
    try:
        with warnings.catch_warnings():
            # the doctor tries more workers than CPUs on purpose, and runs no training step
            warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
            warnings.simplefilter("ignore", DataWaitWarning)
            if sampler is not None:
                sampler.start()
            begun = time.perf_counter()
            batches = _batches(loader, passes)
            batch_bytes = nbytes_of(next(batches))
            first_batch = time.perf_counter() - begun
            warm_until = time.perf_counter() + seconds / 2
            warmed = 1
            while warmed < warm_batches and time.perf_counter() < warm_until:
                next(batches)
                warmed += 1
            counted_before = sum(p.stats().samples for p in passes)
            started = time.perf_counter()
            deadline = started + seconds
            measured = 0
            while measured < limit:
                next(batches)
                measured += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            elapsed = time.perf_counter() - started
            stats = combine([p.stats() for p in passes])
    finally:
        for iterator in passes:
            iterator.close()
        loader.close()
        if sampler is not None:
            sampler.stop()
    samples = stats.samples - counted_before
    start_bytes = sampler.samples[0].bytes if sampler is not None and sampler.samples else None
    return Trial(
        setting=setting,
        samples_per_second=samples / elapsed if elapsed > 0 else 0.0,
        peak_bytes=None if sampler is None else sampler.peak,
        start_bytes=start_bytes,
        first_batch=first_batch,
        batch_bytes=batch_bytes,
        measured_batches=measured,
        stats=stats,
    )


def failed(setting: Setting, error: BaseException) -> Trial:
    """The record of a setting that could not run."""
    empty = PassStats(0, 0, 0, 0.0, 0.0, 0.0, 0.0, StageTimes(), 0, (), 0.0, 0, 0, 0)
    return Trial(setting, 0.0, None, None, 0.0, 0, 0, empty, f"{type(error).__name__}: {error}")
