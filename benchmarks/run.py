"""Benchmark ladle against torch.utils.data side by side, in one process, and report ratios.

    .venv/bin/python benchmarks/run.py                       # every scenario, ~30 s on 2 cores
    .venv/bin/python benchmarks/run.py --quick               # smoke run, a few seconds
    .venv/bin/python benchmarks/run.py --scenario in-memory --json benchmarks/results/run.json

Method, per scenario: every contender gets a short warm-up pass and one full calibration epoch
(which sets how many epochs it runs per round), then its time to first batch is taken on fresh
loaders (build + iter + next, median of a few), then the contenders take turns in rounds
(the order rotates each round) so that a load spike on the machine hits all of them alike. In a
round each contender runs whole epochs on one persistent loader for about ``seconds / rounds``.
Throughput is the median over rounds; ratios are of medians. Peak RSS is the process's peak
resident memory during the contender's timed rounds (Linux resets the peak through
/proc/self/clear_refs); "+run" is how far that peak rose above the RSS at the round's start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scenarios
from scenarios import Scenario, Target

import ladle

MIB = 1024 * 1024


# -- memory ----------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux, bytes on macOS


class PeakMemory:
    """The process's peak RSS over a stretch of code.

    On Linux the kernel's high-water mark (VmHWM) is reset to the current RSS at ``start`` by
    writing 5 to /proc/self/clear_refs. Elsewhere it falls back to ru_maxrss, the peak since the
    process started (``resettable`` is then False).
    """

    def __init__(self) -> None:
        self.resettable = self._reset() and _status_kib("VmHWM") is not None

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        except OSError:
            return False
        return True

    def current(self) -> int:
        kib = _status_kib("VmRSS")
        return kib * 1024 if kib is not None else _ru_maxrss_bytes()

    def start(self) -> int:
        """Reset the peak; returns the current RSS in bytes."""
        if self.resettable:
            self._reset()
        return self.current()

    def peak(self) -> int:
        """The peak RSS in bytes since ``start`` (since process start when not resettable)."""
        kib = _status_kib("VmHWM") if self.resettable else None
        return kib * 1024 if kib is not None else _ru_maxrss_bytes()


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    seconds: float  # timed seconds per contender, over all rounds
    rounds: int
    warmup_batches: int
    first_batch_repeats: int


DEFAULT = Settings(seconds=2.0, rounds=5, warmup_batches=40, first_batch_repeats=3)
QUICK = Settings(seconds=0.3, rounds=3, warmup_batches=10, first_batch_repeats=1)


@dataclass
class Result:
    """One contender's figures. Throughputs in samples/s, times in ms, memory in MiB."""

    scenario: str
    contender: str
    role: str
    note: str
    samples_per_s: float = 0.0  # median over rounds
    best_samples_per_s: float = 0.0
    round_samples_per_s: list[float] = field(default_factory=list)
    epochs_per_round: int = 0
    first_batch_ms: float = 0.0
    peak_rss_mib: float = 0.0
    peak_rss_over_start_mib: float | None = None  # None where the peak cannot be reset
    vs_torch: float | None = None
    vs_limit: float | None = None


@dataclass
class Check:
    scenario: str
    contender: str
    reference: str  # "torch" or "limit"
    reference_name: str | None
    ratio: float | None
    minimum: float
    passed: bool | None  # None: skipped (no reference measured)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def consume(loader: Iterable[Any]) -> int:
    """Run one epoch, touching each batch's sample array; returns the number of samples."""
    samples = 0
    for batch in loader:
        samples += batch[0].shape[0]
    return samples


def time_first_batch(make: Callable[[], Iterable[Any]], repeats: int) -> float:
    """Median seconds from building a fresh loader to holding its first batch."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        iterator = iter(make())
        batch = next(iterator)
        batch[0].shape  # noqa: B018 - touch the batch
        times.append(time.perf_counter() - start)
        del iterator, batch
    return statistics.median(times)


def warm_up(loader: Iterable[Any], batches: int) -> None:
    """A short pass of ``batches`` batches, untimed: lazy imports, caches, allocator."""
    for count, batch in enumerate(loader, start=1):
        batch[0].shape  # noqa: B018
        if count >= batches:
            break


def time_epoch(loader: Iterable[Any], samples_per_epoch: int) -> float:
    """Seconds for one full epoch (the calibration that sets the epochs per round)."""
    start = time.perf_counter()
    samples = consume(loader)
    elapsed = time.perf_counter() - start
    if samples != samples_per_epoch:
        raise RuntimeError(f"one epoch yielded {samples} samples, expected {samples_per_epoch}")
    return elapsed


def measure(scenario: Scenario, settings: Settings, memory: PeakMemory) -> list[Result]:
    contenders = scenario.contenders
    results = {c.name: Result(scenario.name, c.name, c.role, c.note) for c in contenders}
    loaders: dict[str, Iterable[Any]] = {}
    epochs: dict[str, int] = {}
    round_seconds = settings.seconds / settings.rounds
    for contender in contenders:
        loader = contender.make()
        warm_up(loader, settings.warmup_batches)
        estimate = time_epoch(loader, scenario.samples_per_epoch)
        result = results[contender.name]
        result.first_batch_ms = 1000 * time_first_batch(
            contender.make, settings.first_batch_repeats
        )
        loaders[contender.name] = loader
        epochs[contender.name] = max(1, round(round_seconds / max(estimate, 1e-9)))
        result.epochs_per_round = epochs[contender.name]
        progress(f"  {contender.name}: warm, {estimate * 1000:.0f} ms/epoch")

    peaks: dict[str, list[tuple[int, int]]] = {c.name: [] for c in contenders}
    for round_index in range(settings.rounds):
        shift = round_index % len(contenders)
        for contender in (*contenders[shift:], *contenders[:shift]):
            loader, count = loaders[contender.name], epochs[contender.name]
            rss_start = memory.start()
            start = time.perf_counter()
            samples = sum(consume(loader) for _ in range(count))
            elapsed = time.perf_counter() - start
            peaks[contender.name].append((rss_start, memory.peak()))
            expected = count * scenario.samples_per_epoch
            if samples != expected:
                raise RuntimeError(
                    f"{scenario.name}/{contender.name} yielded {samples} samples in {count} "
                    f"epochs, expected {expected}"
                )
            results[contender.name].round_samples_per_s.append(samples / elapsed)
        progress(f"  round {round_index + 1}/{settings.rounds} done")

    for contender in contenders:
        result = results[contender.name]
        result.samples_per_s = statistics.median(result.round_samples_per_s)
        result.best_samples_per_s = max(result.round_samples_per_s)
        result.peak_rss_mib = max(peak for _, peak in peaks[contender.name]) / MIB
        if memory.resettable:
            over = max(peak - rss for rss, peak in peaks[contender.name])
            result.peak_rss_over_start_mib = over / MIB
    return [results[c.name] for c in contenders]


def reference(results: Sequence[Result], role: str) -> Result | None:
    """The fastest contender with ``role``, or None."""
    candidates = [r for r in results if r.role == role]
    return max(candidates, key=lambda r: r.samples_per_s) if candidates else None


def compare(results: Sequence[Result], targets: Sequence[Target]) -> list[Check]:
    torch_ref, limit_ref = reference(results, "torch"), reference(results, "limit")
    for result in results:
        if torch_ref is not None:
            result.vs_torch = result.samples_per_s / torch_ref.samples_per_s
        if limit_ref is not None:
            result.vs_limit = result.samples_per_s / limit_ref.samples_per_s
    by_name = {r.contender: r for r in results}
    checks = []
    for target in targets:
        result = by_name[target.contender]
        ref = torch_ref if target.reference == "torch" else limit_ref
        ratio = result.vs_torch if target.reference == "torch" else result.vs_limit
        passed = None if ratio is None else ratio >= target.minimum
        checks.append(
            Check(
                result.scenario,
                target.contender,
                target.reference,
                None if ref is None else ref.contender,
                ratio,
                target.minimum,
                passed,
            )
        )
    return checks


# -- reporting -------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _target_text(checks: Sequence[Check]) -> str:
    return ", ".join(f">={c.minimum:g}x {c.reference}" for c in checks)


def _verdict(checks: Sequence[Check]) -> str:
    if not checks:
        return ""
    if any(c.passed is False for c in checks):
        return "FAIL"
    if any(c.passed is None for c in checks):
        return "SKIP"
    return "PASS"


HEADERS = (
    "scenario",
    "contender",
    "samples/s",
    "first batch",
    "peak RSS (+run)",
    "vs torch",
    "vs limit",
    "target",
    "result",
)


def table_rows(results: Sequence[Result], checks: Sequence[Check]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        own = [c for c in checks if c.scenario == r.scenario and c.contender == r.contender]
        over = "" if r.peak_rss_over_start_mib is None else f" (+{r.peak_rss_over_start_mib:.1f})"
        rows.append(
            (
                r.scenario,
                r.contender,
                f"{r.samples_per_s:,.0f}",
                f"{r.first_batch_ms:.1f} ms",
                f"{r.peak_rss_mib:.0f} MiB{over}",
                _ratio(r.vs_torch),
                _ratio(r.vs_limit),
                _target_text(own),
                _verdict(own),
            )
        )
    return rows


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    numeric = {2, 3, 4, 5, 6}
    widths = [max(len(row[i]) for row in (HEADERS, *rows)) for i in range(len(HEADERS))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADERS), rule, *(line(row) for row in rows)])


def format_markdown(rows: Sequence[tuple[str, ...]]) -> str:
    aligns = ["---", "---", "--:", "--:", "--:", "--:", "--:", "---", "---"]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_checks(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        ref = c.reference_name or f"{c.reference} (not measured)"
        lines.append(
            f"  {c.verdict}  {c.scenario}: {c.contender} / {ref} = {_ratio(c.ratio)}"
            f"  (target >= {c.minimum:g}x)"
        )
    return "\n".join(lines)


def environment(torch: Any) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "ladle": ladle.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ladle against torch.utils.data, side by side, as ratios."
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(scenarios.SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as Markdown here"
    )
    parser.add_argument(
        "--seconds", type=float, help="timed seconds per contender (default 2, quick 0.3)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 3)")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    settings = Settings(
        seconds=args.seconds if args.seconds is not None else base.seconds,
        rounds=args.rounds if args.rounds is not None else base.rounds,
        warmup_batches=base.warmup_batches,
        first_batch_repeats=base.first_batch_repeats,
    )
    names = args.scenario or list(scenarios.SCENARIOS)
    wall_start = time.perf_counter()
    torch = scenarios.load_torch()
    if torch is None:
        progress("torch is not installed: torch contenders are skipped, their checks SKIP")
    env = environment(torch)
    memory = PeakMemory()
    start = time.perf_counter()
    data = scenarios.make_data()
    progress(f"data: {data.x.shape} float32 + labels, made in {time.perf_counter() - start:.1f} s")

    results: list[Result] = []
    checks: list[Check] = []
    described = []
    for name in names:
        scenario = scenarios.SCENARIOS[name](data, torch)
        progress(f"{scenario.name}: {scenario.description}")
        scenario_results = measure(scenario, settings, memory)
        checks += compare(scenario_results, scenario.targets)
        results += scenario_results
        described.append(
            {
                "name": scenario.name,
                "description": scenario.description,
                "samples_per_epoch": scenario.samples_per_epoch,
                "batch_size": scenario.batch_size,
            }
        )
    wall = time.perf_counter() - wall_start

    rows = table_rows(results, checks)
    print(
        f"ladle {env['ladle']} vs torch {env['torch'] or '(not installed)'} | "
        f"numpy {env['numpy']} | Python {env['python']} | {env['cpu_count']} CPUs, "
        f"torch threads {env['torch_threads']}"
    )
    print(
        f"{settings.rounds} rounds, ~{settings.seconds:g} s timed per contender; samples/s is the "
        f"median over rounds; vs torch/limit divide by the fastest torch/limit row"
    )
    if not memory.resettable:
        print("peak RSS: /proc/self/clear_refs unavailable, so it is the process peak so far")
    print()
    print(format_table(rows))
    print()
    print("checks")
    print(format_checks(checks))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print()
    print(
        f"whole run {wall:.1f} s; process peak RSS {_ru_maxrss_bytes() / MIB:.0f} MiB"
        + ("" if load is None else f"; load average {load[0]:.2f} (1 min)")
    )

    failed = any(c.passed is False for c in checks)
    if args.json is not None:
        report = {
            "environment": env | {"load_average_at_end": None if load is None else list(load)},
            "settings": asdict(settings) | {"quick": args.quick},
            "scenarios": described,
            "results": [asdict(r) for r in results],
            "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
            "all_passed": not failed and all(c.passed for c in checks),
            "wall_s": wall,
            "process_peak_rss_mib": _ru_maxrss_bytes() / MIB,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        progress(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_markdown(rows) + "\n")
        progress(f"wrote {args.markdown}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
