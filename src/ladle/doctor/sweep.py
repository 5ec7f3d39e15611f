"""``diagnose()``: the doctor's small sweep of settings, run one after the other.

The order keeps the sweep short (about 10 trials, a second or two each): the loader as given;
the worker counts (0, 1, the CPUs, twice the CPUs); at the fastest count the other worker
types and the prefetch factors; at the fastest of those, half and twice the batch size. Worker
settings are switched with ``loader.reconfigure(...)``; another batch size needs another
loader, so it is swept only when the factory takes ``batch_size=``.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ladle import machine
from ladle.doctor.diagnosis import Diagnosis, diagnosis
from ladle.doctor.trial import Setting, Trial, failed, run_trial
from ladle.loader import DataLoader

__all__ = ["default_worker_counts", "diagnose"]

_CONTEND = 0.15  # settings within this of the fastest are measured again
_CONTENDERS = 3


def default_worker_counts(cpus: int) -> list[int]:
    """0, 1, the CPUs and twice as many (at most 8 more than the CPUs)."""
    return sorted({0, 1, cpus, min(2 * cpus, cpus + 8)})


def _takes_batch_size(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "batch_size" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in parameters
    )


def _checked(loader: Any, source: str) -> DataLoader:
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"{source} should return a ladle.DataLoader, but it returned "
            f"{type(loader).__name__}; return the DataLoader itself (not an iterator or a "
            f"dataset): e.g. return ladle.DataLoader(dataset, batch_size=batch_size)"
        )
    return loader


def _setting_of(loader: DataLoader) -> Setting:
    workers = loader.num_workers
    return _workers(loader.batch_size, workers, loader.worker_type, loader.prefetch_factor)


def diagnose(
    make_loader: Callable[..., DataLoader] | DataLoader,
    *,
    batch_sizes: Sequence[int] | None = None,
    num_workers: Sequence[int] | None = None,
    worker_types: Sequence[str] = ("process", "thread"),
    prefetch_factors: Sequence[int] = (2, 4),
    seconds: float = 1.0,
    max_batches: int | None = None,
    plot: str | os.PathLike[str] | None = None,
    progress: Callable[[str], object] | None = None,
    name: str | None = None,
) -> Diagnosis:
    """Run a loader briefly under a few settings and say what bounds it and what is best.

    ``make_loader`` is a factory returning a :class:`ladle.DataLoader`: called with no
    arguments for your loader, and with ``batch_size=`` for the other batch sizes when it
    takes that argument; or a DataLoader itself (its batch size is then not swept, and its
    settings are put back afterwards). Each setting runs for ``seconds`` after a short
    warm-up (or ``max_batches``), over as many passes as that takes; its workers are stopped
    and its shared memory freed before the next one starts. ``num_workers`` (default 0, 1,
    the CPUs and twice as many), ``worker_types`` and ``prefetch_factors`` are the values
    tried; ``batch_sizes`` defaults to half and twice yours (``()``: keep yours). ``plot``
    writes a PNG of throughput and peak memory against the worker count and the batch size
    (matplotlib). ``progress`` receives a line per setting as it is measured; ``name`` heads
    the report (default: the dataset's class and the batch size).

    The settings within 15% of the fastest (three at most) are measured once more, in turn,
    and their throughput is the mean of both runs; the recommendation is the one with the
    least peak memory among those within 5% of the fastest.
    """
    if not seconds > 0:
        raise ValueError(
            f"seconds is the measuring time per setting and must be positive, but got "
            f"seconds={seconds!r}; the default is 1.0"
        )
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches should be 1 or more (or None), got {max_batches!r}")
    for worker_type in worker_types:
        if worker_type not in ("process", "thread"):
            raise ValueError(
                f"worker_types should hold 'process' and/or 'thread', but got {worker_type!r}"
            )
    if isinstance(make_loader, DataLoader):
        loader, by_batch = make_loader, None
    elif callable(make_loader):
        loader = _checked(make_loader(), "make_loader()")
        by_batch = make_loader if _takes_batch_size(make_loader) else None
    else:
        raise TypeError(
            f"make_loader should be a function returning a ladle.DataLoader (or a DataLoader), "
            f"but got {type(make_loader).__name__}"
        )
    own = loader is not make_loader
    yours = _setting_of(loader)
    base = yours.batch_size
    cpus = machine.cpus()
    done: dict[Setting, Trial] = {}
    trials: list[Trial] = []
    began = time.perf_counter()

    def measure(setting: Setting, again: bool = False) -> Trial:
        if setting in done and not again:
            return done[setting]
        target = loader
        if setting.batch_size != base:
            assert by_batch is not None
            target = _checked(
                by_batch(batch_size=setting.batch_size),
                f"make_loader(batch_size={setting.batch_size})",
            )
        try:
            target.reconfigure(**setting.reconfiguration())
            trial = run_trial(target, setting, seconds=seconds, max_batches=max_batches)
        except Exception as error:
            if setting == yours:
                raise  # the loader as given fails: that is the user's to see, as it is
            trial = failed(setting, error)
        finally:
            if target is not loader:
                target.close()
        if progress is not None:
            progress(_line(trial) + (" (again)" if again else ""))
        if not again:
            done[setting] = trial
            trials.append(trial)
        return trial

    def fastest(batch_size: int | None) -> Setting:
        ran = [t for t in trials if t.ok and t.setting.batch_size == batch_size]
        return max(ran, key=lambda trial: trial.samples_per_second).setting

    try:
        measure(yours)
        counts = default_worker_counts(cpus) if num_workers is None else list(num_workers)
        first_type = yours.worker_type if yours.num_workers else worker_types[0]
        for count in counts:
            measure(_workers(base, count, first_type, yours.prefetch))
        best = fastest(base)
        # inline fastest: would the other worker type do, at least? (not when the counts
        # asked for were all 0: then no workers at all)
        count = best.num_workers or (cpus if any(counts) else 0)
        prefetch = best.prefetch if best.num_workers else yours.prefetch
        if count:
            for worker_type in worker_types:
                measure(_workers(base, count, worker_type, prefetch))
        best = fastest(base)
        if best.num_workers:
            for factor in prefetch_factors:
                measure(_workers(base, best.num_workers, best.worker_type, factor))
        best = fastest(base)
        swept = by_batch is not None and base is not None and batch_sizes != ()
        if swept:
            assert base is not None
            sizes = [max(base // 2, 1), base * 2] if batch_sizes is None else list(batch_sizes)
            for size in sizes:
                measure(_workers(size, best.num_workers, best.worker_type, best.prefetch_factor))
        # the contenders measured once more, in turn: one run's noise should not decide
        ran = [t for t in trials if t.ok]
        top = max(t.samples_per_second for t in ran)
        contenders = sorted(
            (t for t in ran if t.samples_per_second >= (1 - _CONTEND) * top),
            key=lambda t: -t.samples_per_second,
        )[:_CONTENDERS]
        if len(contenders) > 1:
            for contender in contenders:
                again = measure(contender.setting, again=True)
                trials[trials.index(contender)] = contender.remeasured(again)
    finally:
        if own:
            loader.close()
        else:  # the caller's loader: its settings as they were
            loader.reconfigure(**yours.reconfiguration())
            loader.close()
    result = diagnosis(
        name or _name(loader),
        cpus,
        seconds,
        time.perf_counter() - began,
        trials,
        swept,
    )
    if plot is not None:
        from ladle.doctor.plot import write_plot

        write_plot(plot, result)
    return result


def _workers(batch_size: int | None, count: int, worker_type: str, prefetch: int | None) -> Setting:
    """A setting; inline ones all alike (no worker type, no prefetch)."""
    if not count:
        return Setting(batch_size, 0, "process", None)
    return Setting(batch_size, count, worker_type, prefetch or 2)


def _name(loader: DataLoader) -> str:
    batch = "" if loader.batch_size is None else f", batch {loader.batch_size}"
    return f"{type(loader.dataset).__name__}{batch}"


def _line(trial: Trial) -> str:
    if not trial.ok:
        return f"  {trial.setting}: failed ({trial.error})"
    memory = "" if trial.peak_bytes is None else f", peak {trial.peak_bytes / (1 << 20):,.0f} MiB"
    return (
        f"  {trial.setting}: {trial.samples_per_second:,.0f} samples/s{memory}, "
        f"most time in {trial.bottleneck}"
    )
