"""The doctor's plot: throughput and peak memory against the worker count (a line per worker
type) and against the batch size, as a PNG (matplotlib, Agg: no display needed, and pyplot's
global state is left alone)."""

from __future__ import annotations

import os
from typing import Any

from ladle.doctor.diagnosis import MIB, Diagnosis
from ladle.doctor.trial import Trial
from ladle.interop import require

__all__ = ["write_plot"]

_COLORS = {"process": "#d95f02", "thread": "#1b9e77"}
_MEMORY = "#7570b3"


def _panel(axes: Any, points: dict[str, list[Trial]], x: Any, label: str) -> None:
    memory = axes.twinx()
    for name, trials in points.items():
        trials = sorted(trials, key=x)
        color = _COLORS.get(name, "#444444")
        axes.plot(
            [x(t) for t in trials],
            [t.samples_per_second for t in trials],
            "o-",
            color=color,
            label=f"{name}: samples/s",
        )
        known = [t for t in trials if t.peak_bytes is not None]
        memory.plot(
            [x(t) for t in known],
            [(t.peak_bytes or 0) / MIB for t in known],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{name}: peak MiB",
        )
    axes.set_xticks(sorted({x(t) for trials in points.values() for t in trials}))
    axes.set_xlabel(label)
    axes.set_ylabel("samples/s (solid)")
    memory.set_ylabel("peak tree memory, MiB (dashed)")
    axes.set_ylim(bottom=0)
    memory.set_ylim(bottom=0)
    handles, labels = axes.get_legend_handles_labels()
    more, more_labels = memory.get_legend_handles_labels()
    axes.legend(handles + more, labels + more_labels, fontsize=7, loc="lower right")


def write_plot(path: str | os.PathLike[str], diagnosis: Diagnosis) -> None:
    """Two panels: against ``num_workers`` (at the batch size the worker counts were swept at,
    the user's, and per worker type and count the fastest prefetch factor) and against the
    batch size (at the worker setting the batch sizes were swept at)."""
    require("matplotlib", "ladle doctor --plot")
    from matplotlib.figure import Figure

    fastest = diagnosis.fastest.setting
    swept = diagnosis.yours.setting.batch_size  # the worker counts ran at the user's batch
    ran = [t for t in diagnosis.trials if t.ok]
    by_count: dict[tuple[str, int], Trial] = {}
    for trial in ran:
        setting = trial.setting
        if setting.batch_size != swept:
            continue
        types = [setting.worker_type] if setting.num_workers else list(_COLORS)
        for worker_type in types:  # inline starts every worker type's line
            key = (worker_type, setting.num_workers)
            if key not in by_count or trial.samples_per_second > by_count[key].samples_per_second:
                by_count[key] = trial
    lines: dict[str, list[Trial]] = {}
    for (worker_type, _), trial in sorted(by_count.items()):
        lines.setdefault(worker_type, []).append(trial)
    lines = {name: trials for name, trials in lines.items() if len(trials) > 1}
    # the batch sizes ran at one worker setting (the fastest when they were swept, which a
    # later re-measure may have overtaken): the one that trials at other batch sizes share
    other = next((t.setting for t in ran if t.setting.batch_size != swept), fastest)

    def workers_of(setting: Any) -> tuple[int, str, int | None]:
        return setting.num_workers, setting.worker_type, setting.prefetch_factor

    sizes = [t for t in ran if workers_of(t.setting) == workers_of(other)]
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    workers, batches = figure.subplots(1, 2)
    _panel(workers, lines, lambda t: t.setting.num_workers, "num_workers")
    workers.set_title(f"against num_workers (batch {swept})")
    label = "inline" if not other.num_workers else other.worker_type
    _panel(batches, {label: sizes}, lambda t: t.setting.batch_size or 0, "batch_size")
    batches.set_title(f"against batch size ({other})".replace(f"batch {other.batch_size}, ", ""))
    figure.suptitle(f"ladle doctor: {diagnosis.name} (bound: {diagnosis.bound})")
    figure.savefig(path, format="png", dpi=100)
