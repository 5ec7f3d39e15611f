"""``ladle bench``'s results: an aligned text table, JSON, and a bar chart."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ladle.bench.memory import preferred_measure
from ladle.bench.settings import MIB, Result
from ladle.interop import require

__all__ = ["footnote", "format_table", "read_json", "write_json", "write_plot"]

_MEASURE_TEXT = {"pss": "Pss_Anon + Pss_Shmem", "rss": "RssAnon + RssShmem"}
_FOOTNOTE = {
    "pss": "peak memory: proportional anonymous and shared memory (Pss_Anon + Pss_Shmem) summed "
    "over each\n  library's own process tree: a page shared by a worker and its parent is split "
    "between them,\n  file pages (the page cache, memory-mapped data) are left out",
    "rss": "peak memory: anonymous and shared memory (RssAnon + RssShmem) summed over each "
    "library's own\n  process tree, pages a forked worker shares with its parent counted once "
    "per process",
}


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def format_table(results: Sequence[Result]) -> str:
    """An aligned text table: throughput, ratio to torch, first batch, peak tree memory."""
    torch = next((r for r in results if r.library == "torch"), None)
    headers = ("library", "samples/s", "vs torch", "first batch", "peak memory", "+loader")
    rows = [headers]
    for r in results:
        added = (
            "-"
            if r.peak_bytes is None or r.baseline_bytes is None
            else f"+{max(r.peak_bytes - r.baseline_bytes, 0) / MIB:,.0f} MiB"
        )
        ratio = "-" if torch is None else f"{r.samples_per_s / torch.samples_per_s:.2f}x"
        rows.append(
            (
                f"{r.library} {r.version}",
                f"{r.samples_per_s:,.0f}",
                ratio,
                f"{1000 * r.first_batch_s:,.1f} ms",
                _mib(r.peak_bytes) + (f" ({r.processes} procs)" if r.processes > 1 else ""),
                added,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], results: Sequence[Result], **about: Any) -> None:
    """The results, plus whatever describes the run (``about``), as JSON."""
    report = {**about, "results": [asdict(r) for r in results]}
    Path(path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> list[Result]:
    """The results of :func:`write_json`."""
    return [Result(**fields) for fields in json.loads(Path(path).read_text())["results"]]


def write_plot(path: str | os.PathLike[str], results: Sequence[Result], title: str = "") -> None:
    """Bar charts of throughput and peak tree memory, side by side, as a PNG (matplotlib, Agg:
    no display needed, and pyplot's global state is left alone)."""
    require("matplotlib", "ladle bench --plot")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.4), layout="constrained")
    speed, memory = figure.subplots(1, 2)
    names = [r.library for r in results]
    colors = ["#d95f02" if name == "ladle" else "#7570b3" for name in names]
    bars = speed.bar(names, [r.samples_per_s for r in results], color=colors)
    speed.bar_label(bars, fmt="{:,.0f}")
    speed.set_title("throughput: higher is better")
    speed.set_ylabel("samples/s")
    bars = memory.bar(names, [(r.peak_bytes or 0) / MIB for r in results], color=colors)
    memory.bar_label(bars, fmt="{:,.0f}")
    memory.set_title("peak tree memory: lower is better")
    memory.set_ylabel("MiB (" + _MEASURE_TEXT[preferred_measure() or "pss"] + ")")
    for axes in (speed, memory):
        axes.margins(y=0.12)  # room for the labels above the bars
    if title:
        figure.suptitle(title)
    figure.savefig(path, format="png", dpi=100)


def footnote() -> str:
    """What the table's memory columns measure, with the measure this machine gives."""
    return (
        _FOOTNOTE.get(preferred_measure() or "pss", "")
        + "; +loader: the rise\n  above the library's process before its loader started"
    )
