"""Benchmark ladle against torch.utils.data side by side, in one process, and report ratios.

    .venv/bin/python benchmarks/run.py                       # every scenario, ~3 min on 2 cores
    .venv/bin/python benchmarks/run.py --quick               # smoke run, ~1 min
    .venv/bin/python benchmarks/run.py --scenario augment --json benchmarks/results/run.json

Method, per scenario: every contender gets a short untimed warm-up pass on a throwaway loader,
then its time to first batch is taken on fresh loaders (build + iter + next, median of a few),
then one full calibration epoch sets how many epochs it runs per round. Then the contenders take
turns in rounds (the order rotates each round) so that a load spike on the machine hits all of
them alike. In a round each contender runs whole epochs on one loader for about
``seconds / rounds``; with workers and ``persistent_workers=False`` (the default, on both sides)
every epoch starts and stops its workers, and that is timed too. Throughput is the median over
rounds; ratios are of medians. Scenarios that measure start-up only (``startup``) time the first
batch of fresh loaders, the contenders taking turns.

Memory is the peak of the whole process tree (this process and every descendant, i.e. the
workers) while a contender runs, sampled by ``ladle.bench.memory.MemorySampler`` in a
background thread: RSS = RssAnon + RssShmem summed over the tree every 20 ms (a page shared by
several processes counts in each), PSS = Pss_Anon + Pss_Shmem (/proc/<pid>/smaps_rollup, shared
pages split between the processes that map them) as often as 5% of one core allows. File-backed
pages (the page cache, memory-mapped data) count in neither. "+run" is how far the tree's PSS
rose above the root's own PSS when the contender started. Isolated scenarios (``disk``) run
each contender in a child process and sample that child's tree; "+run" is then above the
child's own PSS just before it built its loader.

Only the standard library is imported at module level: spawned workers re-import this file (as
``__mp_main__``), and a torch worker must not pay for importing ladle, nor a ladle worker torch.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scenarios import Contender, Scenario, Target

MIB = 1024 * 1024


# -- memory ----------------------------------------------------------------------------------


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux, bytes on macOS


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, grandchildren, ...), from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # the name in parentheses may hold spaces
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        below = children.get(stack.pop(), [])
        found += below
        stack += below
    return found


@dataclass(frozen=True)
class TreePeak:
    """Peak memory of the process tree over one stretch, in bytes."""

    rss: int  # peak of the summed RssAnon + RssShmem (shared pages counted once per process)
    pss: int | None  # peak of the summed Pss_Anon + Pss_Shmem (shared pages split); None: n/a
    start: int  # the root process's own PSS (else RSS) when the stretch began
    processes: int  # most processes seen in the tree at once


class TreeMemory:
    """Samples the memory of a process tree (this process and all its descendants, or
    ``pid``'s) over stretches, with ``ladle.bench.memory.MemorySampler``.

    ``start()`` begins a stretch, ``stop()`` ends it and returns its :class:`TreePeak`. Every
    ``interval`` seconds the sampler sums ``RssAnon + RssShmem`` over the tree (cheap); the
    ``Pss_Anon + Pss_Shmem`` sums (smaps_rollup, ~3 ms for a process that imported torch) come
    as often as they can while taking at most ``max_load`` of one core. File-backed pages (the
    page cache, memory-mapped data) count in neither.
    """

    def __init__(self, interval: float = 0.02, max_load: float = 0.05) -> None:
        from ladle.bench.memory import supported

        self.pid = os.getpid()
        self.interval = interval
        self.max_load = max_load
        self.available = supported("rss")
        self.has_pss = supported("pss")
        self.measure = "pss" if self.has_pss else "rss"
        self._sampler: Any = None
        self._start = 0

    def start(self, pid: int | None = None, start: int | None = None) -> None:
        """Begin a stretch over ``pid``'s tree (default this process's); ``start`` is the
        root's memory to report as the start, default its memory now."""
        from ladle.bench.memory import MemorySampler, process_memory

        root = self.pid if pid is None else pid
        if not self.available:
            self._start = _ru_maxrss_bytes() if start is None else start
            return
        self._start = process_memory(root, self.measure) if start is None else start
        self._sampler = MemorySampler(
            root, self.interval, measure=self.measure, max_load=self.max_load
        ).start()

    def stop(self, start: int | None = None) -> TreePeak:
        """End the stretch; ``start`` replaces the start reading (a child's own, taken inside)."""
        sampler, self._sampler = self._sampler, None
        if start is not None:
            self._start = start
        if sampler is None:
            return TreePeak(_ru_maxrss_bytes(), None, self._start, 1)
        peak = sampler.stop()
        return TreePeak(
            rss=sampler.rss_peak or 0,
            pss=peak if self.has_pss else None,
            start=self._start,
            processes=max(sampler.max_processes, 1),
        )


def leftovers() -> tuple[list[str], list[str]]:
    """(descendant processes still alive, this process's /dev/shm/ladle-* files). The
    multiprocessing resource tracker, which spawn starts once and keeps, is not a leftover."""
    processes = []
    for pid in descendants(os.getpid()):
        command = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode()
        if "resource_tracker" not in command:
            processes.append(f"{pid}: {command.strip()[:120]}")
    files = sorted(glob.glob(f"/dev/shm/ladle-{os.getpid()}-*"))
    return processes, files


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    seconds: float  # timed seconds per contender, over all rounds
    rounds: int
    warmup_batches: int
    first_batch_repeats: int
    rounds_given: bool = False  # --rounds given: it overrides a scenario's own rounds

    def rounds_for(self, scenario: Scenario) -> int:
        if scenario.rounds is None or self.rounds_given:
            return self.rounds
        return min(scenario.rounds, self.rounds)


DEFAULT = Settings(seconds=2.0, rounds=5, warmup_batches=40, first_batch_repeats=3)
QUICK = Settings(seconds=0.3, rounds=3, warmup_batches=10, first_batch_repeats=1)


@dataclass
class Result:
    """One contender's figures. Throughputs in samples/s, times in ms, memory in MiB."""

    scenario: str
    contender: str
    role: str
    note: str
    scale: float = 1.0  # throughputs below are already multiplied by it
    samples_per_s: float | None = None  # median over rounds; None: not measured (startup)
    best_samples_per_s: float | None = None
    round_samples_per_s: list[float] = field(default_factory=list)
    epochs_per_round: int = 0
    first_batch_ms: float = 0.0
    first_batch_runs_ms: list[float] = field(default_factory=list)
    peak_tree_rss_mib: float = 0.0
    peak_tree_pss_mib: float | None = None
    tree_over_start_mib: float | None = None  # peak tree PSS (else RSS) minus own at start
    max_processes: int = 1
    vs_torch: float | None = None
    vs_limit: float | None = None
    vs_ladle: float | None = None  # over the contender named "ladle"
    # over its target's ladle reference, from epochs run in alternation (see paired_ratio)
    paired_vs_ladle: float | None = None
    first_batch_vs_torch: float | None = None
    first_batch_vs_ladle: float | None = None
    gb_per_s: float | None = None  # samples/s x bytes a sample / 1e9, where the scenario says


@dataclass
class Check:
    scenario: str
    contender: str
    metric: str  # "throughput", "first_batch" or "peak_memory"
    reference: str  # "torch", "limit", "ladle" or "absolute"
    reference_name: str | None
    ratio: float | None  # peak_memory: the peak itself, in MiB
    bound: float
    passed: bool | None  # None: skipped (the contender or its reference not measured)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def consume(loader: Iterable[Any]) -> int:
    """Run one epoch, touching each batch's sample array; returns the number of samples."""
    samples = 0
    for batch in loader:
        samples += batch[0].shape[0]
    return samples


def first_batch_seconds(make: Callable[[], Iterable[Any]]) -> float:
    """Seconds from building a fresh loader to holding its first batch. The loader and its
    workers are shut down afterwards, outside the timing."""
    start = time.perf_counter()
    iterator = iter(make())
    batch = next(iterator)
    batch[0].shape  # noqa: B018 - touch the batch
    elapsed = time.perf_counter() - start
    del iterator, batch
    return elapsed


def time_first_batch(make: Callable[[], Iterable[Any]], repeats: int) -> list[float]:
    """Seconds to first batch of ``repeats`` fresh loaders."""
    return [first_batch_seconds(make) for _ in range(repeats)]


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


def _record_memory(result: Result, peaks: Sequence[TreePeak]) -> None:
    result.peak_tree_rss_mib = max(p.rss for p in peaks) / MIB
    pss = [p.pss for p in peaks if p.pss is not None]
    result.peak_tree_pss_mib = max(pss) / MIB if pss else None
    result.tree_over_start_mib = (
        max((p.pss if p.pss is not None else p.rss) - p.start for p in peaks) / MIB
    )
    result.max_processes = max(p.processes for p in peaks)


def dispose(loader: Iterable[Any]) -> None:
    """Stop a loader's workers now where it can say so (ladle's ``close``); torch's stop when
    the loader is garbage, which the caller's ``del`` makes it."""
    close = getattr(loader, "close", None)
    if callable(close):
        close()


def measure(scenario: Scenario, settings: Settings, memory: TreeMemory) -> list[Result]:
    """Throughput, time to first batch and tree memory of every contender of ``scenario``.

    Per contender: warm up on a throwaway loader, time the first batch of fresh loaders, then
    calibrate on the loader the rounds use. Only one loader per contender is alive at a time.
    With persistent workers each round builds a fresh loader, runs one untimed epoch (worker
    start-up), then times its epochs, and stops it: so the idle workers of one contender never
    sit in the process tree while another one is measured.
    """
    if not scenario.throughput:
        return measure_start(scenario, settings, memory)
    if scenario.isolated:
        return measure_isolated(scenario, settings, memory)
    contenders = scenario.contenders
    results = {
        c.name: Result(scenario.name, c.name, c.role, c.note, scale=c.scale) for c in contenders
    }
    loaders: dict[str, Iterable[Any]] = {}
    epochs: dict[str, int] = {}
    rounds = settings.rounds_for(scenario)
    round_seconds = settings.seconds / rounds
    warmup = scenario.warmup_batches or settings.warmup_batches
    fresh_per_round = scenario.persistent_workers
    for contender in contenders:
        make = _make(contender)
        throwaway = make()
        warm_up(throwaway, warmup)
        dispose(throwaway)
        del throwaway
        result = results[contender.name]
        runs = time_first_batch(make, settings.first_batch_repeats)
        result.first_batch_runs_ms = [1000 * t for t in runs]
        result.first_batch_ms = 1000 * statistics.median(runs)
        if scenario.epochs_per_round is not None:  # long epochs: no calibration
            epochs[contender.name] = result.epochs_per_round = scenario.epochs_per_round
            progress(f"  {contender.name}: warm")
            continue
        loader = make()
        if fresh_per_round:
            consume(loader)  # start the workers: the calibration is of a steady epoch
        estimate = time_epoch(loader, _samples_per_epoch(scenario, contender))
        if fresh_per_round:
            dispose(loader)
        else:
            loaders[contender.name] = loader
        del loader
        epochs[contender.name] = max(1, round(round_seconds / max(estimate, 1e-9)))
        result.epochs_per_round = epochs[contender.name]
        progress(f"  {contender.name}: warm, {estimate * 1000:.0f} ms/epoch")

    peaks: dict[str, list[TreePeak]] = {c.name: [] for c in contenders}
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for contender in (*contenders[shift:], *contenders[:shift]):
            count = epochs[contender.name]
            memory.start()  # before a fresh loader exists: "+run" is what the loader adds
            if contender.name not in loaders:  # fresh every round (persistent, uncalibrated)
                loader = _make(contender)()
                if fresh_per_round:
                    consume(loader)
            else:
                loader = loaders[contender.name]
            start = time.perf_counter()
            samples = sum(consume(loader) for _ in range(count))
            elapsed = time.perf_counter() - start
            peaks[contender.name].append(memory.stop())
            if contender.name not in loaders:
                dispose(loader)
            del loader
            expected = count * _samples_per_epoch(scenario, contender)
            if samples != expected:
                raise RuntimeError(
                    f"{scenario.name}/{contender.name} yielded {samples} samples in {count} "
                    f"epochs, expected {expected}"
                )
            results[contender.name].round_samples_per_s.append(contender.scale * samples / elapsed)
            if scenario.epochs_per_round is not None:
                progress(f"    {contender.name}: {contender.scale * samples / elapsed:,.0f}/s")
        progress(f"  round {round_index + 1}/{rounds} done")
    for target in scenario.targets:
        base = target.against or "ladle"
        pair = loaders.get(target.contender), loaders.get(base)
        if target.reference == "ladle" and target.metric == "throughput" and None not in pair:
            result = results[target.contender]
            result.paired_vs_ladle = paired_ratio(pair[0], pair[1], PAIRS)  # type: ignore[arg-type]
            progress(f"  {target.contender} / {base}, paired: {result.paired_vs_ladle:.3f}")
    for loader in loaders.values():
        dispose(loader)

    for contender in contenders:
        result = results[contender.name]
        result.samples_per_s = statistics.median(result.round_samples_per_s)
        result.best_samples_per_s = max(result.round_samples_per_s)
        _record_memory(result, peaks[contender.name])
    return [results[c.name] for c in contenders]


PAIRS = 8  # fewest pairs of epochs in a paired comparison
PAIRED_SECONDS = 4.0  # short epochs: more pairs, until this much time is spent (at most 40)


def paired_ratio(loader: Iterable[Any], base: Iterable[Any], pairs: int) -> float:
    """``loader``'s throughput over ``base``'s: the median, over at least ``pairs`` pairs of
    epochs run back to back (in ABBA order; more while under ``PAIRED_SECONDS``, up to 40), of
    each pair's ratio. Two near-equal contenders, such as a variant of ladle against ladle,
    are then compared under the same machine conditions: medians over rounds a few epochs long
    drift by ±10% on a busy 2-core machine, and a burst of load that slows one epoch moves one
    pair's ratio rather than the total."""
    ratios: list[float] = []
    began = time.perf_counter()
    index = 0
    while index < pairs or (time.perf_counter() - began < PAIRED_SECONDS and index < 40):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        rate = [0.0, 0.0]
        for which in order:
            start = time.perf_counter()
            samples = consume(loader if which == 0 else base)
            rate[which] = samples / (time.perf_counter() - start)
        ratios.append(rate[0] / rate[1])
        index += 1
    return statistics.median(ratios)


def _make(contender: Contender) -> Callable[[], Iterable[Any]]:
    if contender.make is None:
        raise TypeError(f"contender {contender.name!r} has no loader factory (isolated?)")
    return contender.make


def _samples_per_epoch(scenario: Scenario, contender: Contender) -> int:
    if contender.samples_per_epoch is not None:
        return contender.samples_per_epoch
    return scenario.samples_per_epoch


def run_child(command: Sequence[str], memory: TreeMemory) -> TreePeak:
    """Run ``command`` to its end while sampling its process tree's memory. On an error here
    (Ctrl-C) the child gets SIGINT first, so that its loader stops its workers and frees its
    shared memory, and is killed if it has not ended within 5 s (``stop_child``)."""
    from ladle.bench.children import stop_child

    process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL)
    peak: TreePeak | None = None
    try:
        memory.start(process.pid, start=0)
        code = process.wait()
        peak = memory.stop()
    finally:
        if peak is None:
            memory.stop()
        stop_child(process)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit status {code}")
    return peak


def measure_isolated(scenario: Scenario, settings: Settings, memory: TreeMemory) -> list[Result]:
    """Every contender in child processes of its own (``Contender.command``), one per round,
    the order rotating: each child runs one epoch and reports its samples, seconds, first
    batch and own memory before its loader; the child's whole tree is sampled from here."""
    contenders = scenario.contenders
    results = {
        c.name: Result(scenario.name, c.name, c.role, c.note, scale=c.scale) for c in contenders
    }
    peaks: dict[str, list[TreePeak]] = {c.name: [] for c in contenders}
    rounds = settings.rounds_for(scenario)
    with tempfile.TemporaryDirectory(prefix="ladle-bench-") as folder:
        for round_index in range(rounds):
            shift = round_index % len(contenders)
            for contender in (*contenders[shift:], *contenders[:shift]):
                if contender.command is None:
                    raise TypeError(f"contender {contender.name!r} has no command")
                out = Path(folder) / f"{round_index}.json"
                peak = run_child(contender.command(out), memory)
                figures = json.loads(out.read_text())
                expected = _samples_per_epoch(scenario, contender)
                if figures["samples"] != expected:
                    raise RuntimeError(
                        f"{scenario.name}/{contender.name} yielded {figures['samples']} "
                        f"samples, expected {expected}"
                    )
                baseline = figures.get("baseline_bytes")
                peaks[contender.name].append(
                    TreePeak(peak.rss, peak.pss, baseline or 0, peak.processes)
                )
                result = results[contender.name]
                speed = contender.scale * figures["samples"] / figures["seconds"]
                result.round_samples_per_s.append(speed)
                result.first_batch_runs_ms.append(1000 * figures["first_batch_s"])
                result.epochs_per_round = 1
                pss = "-" if peak.pss is None else f"{peak.pss / MIB:,.0f} MiB"
                progress(
                    f"    {contender.name}: {speed:,.0f} samples/s, first batch "
                    f"{1000 * figures['first_batch_s']:,.0f} ms, peak tree PSS {pss} "
                    f"(RSS {peak.rss / MIB:,.0f} MiB, {peak.processes} procs)"
                )
            progress(f"  round {round_index + 1}/{rounds} done")
    for contender in contenders:
        result = results[contender.name]
        result.samples_per_s = statistics.median(result.round_samples_per_s)
        result.best_samples_per_s = max(result.round_samples_per_s)
        result.first_batch_ms = statistics.median(result.first_batch_runs_ms)
        _record_memory(result, peaks[contender.name])
    return [results[c.name] for c in contenders]


def measure_start(scenario: Scenario, settings: Settings, memory: TreeMemory) -> list[Result]:
    """Time to first batch only: one untimed fresh loader per contender (page cache, lazy
    imports), then ``first_batch_repeats`` turns, the order rotating, memory sampled in each."""
    contenders = scenario.contenders
    results = {c.name: Result(scenario.name, c.name, c.role, c.note) for c in contenders}
    peaks: dict[str, list[TreePeak]] = {c.name: [] for c in contenders}
    for contender in contenders:
        warm = first_batch_seconds(_make(contender))
        progress(f"  {contender.name}: warm, first batch {warm * 1000:.0f} ms")
    for turn in range(settings.first_batch_repeats):
        shift = turn % len(contenders)
        for contender in (*contenders[shift:], *contenders[:shift]):
            memory.start()
            seconds = first_batch_seconds(_make(contender))
            peaks[contender.name].append(memory.stop())
            results[contender.name].first_batch_runs_ms.append(1000 * seconds)
        progress(f"  turn {turn + 1}/{settings.first_batch_repeats} done")
    for contender in contenders:
        result = results[contender.name]
        result.first_batch_ms = statistics.median(result.first_batch_runs_ms)
        _record_memory(result, peaks[contender.name])
    return [results[c.name] for c in contenders]


def reference(results: Sequence[Result], role: str) -> Result | None:
    """The fastest contender with ``role`` (by throughput, else by time to first batch); for
    ``"ladle"`` the contender named ``"ladle"``, which the other ladle rows are variants of."""
    if role == "ladle":
        return next((r for r in results if r.contender == "ladle"), None)
    candidates = [r for r in results if r.role == role]
    if not candidates:
        return None
    if all(r.samples_per_s is not None for r in candidates):
        return max(candidates, key=lambda r: r.samples_per_s or 0.0)
    return min(candidates, key=lambda r: r.first_batch_ms)


def _over(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def compare(results: Sequence[Result], targets: Sequence[Target]) -> list[Check]:
    """Fill in every result's ratios and check ``targets``. A target whose contender was not
    measured (a torch-only contender without torch) reads SKIP."""
    refs = {role: reference(results, role) for role in ("torch", "limit", "ladle")}
    torch_ref, limit_ref, ladle_ref = refs["torch"], refs["limit"], refs["ladle"]
    for result in results:
        if torch_ref is not None:
            result.vs_torch = _over(result.samples_per_s, torch_ref.samples_per_s)
            result.first_batch_vs_torch = _over(result.first_batch_ms, torch_ref.first_batch_ms)
        if limit_ref is not None:
            result.vs_limit = _over(result.samples_per_s, limit_ref.samples_per_s)
        if ladle_ref is not None:
            result.vs_ladle = _over(result.samples_per_s, ladle_ref.samples_per_s)
            result.first_batch_vs_ladle = _over(result.first_batch_ms, ladle_ref.first_batch_ms)
    by_name = {r.contender: r for r in results}
    scenario = results[0].scenario if results else ""
    checks = []
    for target in targets:
        result = by_name.get(target.contender)
        if result is None:
            known = refs.get(target.reference)
            checks.append(
                Check(
                    scenario,
                    target.contender,
                    target.metric,
                    target.reference,
                    None if known is None else known.contender,
                    None,
                    target.bound,
                    None,
                )
            )
            continue
        if target.metric == "peak_memory":  # an absolute bound, in MiB
            peak = result.peak_tree_pss_mib
            peak = result.peak_tree_rss_mib if peak is None else peak
            checks.append(
                Check(
                    result.scenario,
                    target.contender,
                    target.metric,
                    target.reference,
                    None,
                    peak,
                    target.bound,
                    None if not peak else peak <= target.bound,
                )
            )
            continue
        ref = by_name.get(target.against) if target.against else refs[target.reference]
        ratio: float | None = None
        if target.reference == "ladle" and result.paired_vs_ladle is not None:
            ratio = result.paired_vs_ladle
        elif ref is not None and target.metric == "throughput":
            ratio = _over(result.samples_per_s, ref.samples_per_s)
        elif ref is not None:
            ratio = _over(result.first_batch_ms, ref.first_batch_ms)
        passed = None
        if ratio is not None and target.metric == "throughput":
            passed = ratio >= target.bound
        elif ratio is not None:
            passed = ratio <= target.bound
        checks.append(
            Check(
                result.scenario,
                target.contender,
                target.metric,
                target.reference,
                None if ref is None else ref.contender,
                ratio,
                target.bound,
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
    texts = {
        "throughput": ">={bound:g}x {reference}",
        "first_batch": "1st batch <={bound:g}x {reference}",
        "peak_memory": "peak PSS <={bound:,.0f} MiB",
    }
    return ", ".join(texts[c.metric].format(bound=c.bound, reference=c.reference) for c in checks)


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
    "vs torch",
    "vs limit",
    "vs ladle",
    "first batch",
    "1st vs torch",
    "peak PSS tree (+run)",
    "peak RSS tree",
    "target",
    "result",
)
NUMERIC = frozenset(range(2, 10))


def _first_batch(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def table_rows(results: Sequence[Result], checks: Sequence[Check]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        own = [c for c in checks if c.scenario == r.scenario and c.contender == r.contender]
        pss = "-" if r.peak_tree_pss_mib is None else f"{r.peak_tree_pss_mib:,.0f} MiB"
        over = "" if r.tree_over_start_mib is None else f" (+{r.tree_over_start_mib:,.0f})"
        processes = f" ({r.max_processes} procs)" if r.max_processes > 1 else ""
        rows.append(
            (
                r.scenario,
                r.contender,
                "-" if r.samples_per_s is None else f"{r.samples_per_s:,.0f}",
                _ratio(r.vs_torch),
                _ratio(r.vs_limit),
                _ratio(r.vs_ladle),
                _first_batch(r.first_batch_ms),
                _ratio(r.first_batch_vs_torch),
                pss + over,
                f"{r.peak_tree_rss_mib:,.0f} MiB{processes}",
                _target_text(own),
                _verdict(own),
            )
        )
    return rows


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in (HEADERS, *rows)) for i in range(len(HEADERS))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if i in NUMERIC else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADERS), rule, *(line(row) for row in rows)])


def format_markdown(rows: Sequence[tuple[str, ...]]) -> str:
    aligns = ["--:" if i in NUMERIC else "---" for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_checks(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        if c.metric == "peak_memory":
            peak = "not measured" if c.ratio is None else f"{c.ratio:,.0f} MiB"
            lines.append(
                f"  {c.verdict}  {c.scenario}: {c.contender} peak tree memory = {peak}"
                f"  (target <= {c.bound:,.0f} MiB)"
            )
            continue
        ref = c.reference_name or f"{c.reference} (not measured)"
        what, sign = ("", ">=") if c.metric == "throughput" else (" first batch", "<=")
        lines.append(
            f"  {c.verdict}  {c.scenario}: {c.contender} / {ref}{what} = {_ratio(c.ratio)}"
            f"  (target {sign} {c.bound:g}x)"
        )
    return "\n".join(lines)


def environment(torch: Any) -> dict[str, Any]:
    import numpy as np

    import ladle

    try:
        from PIL import __version__ as pillow
    except ImportError:
        pillow = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "ladle": ladle.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "pillow": pillow,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def parse_args(argv: Sequence[str] | None, names: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ladle against torch.utils.data, side by side, as ratios."
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(names),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as Markdown here"
    )
    parser.add_argument(
        "--seconds", type=float, help="timed seconds per contender (default 2, quick 0.3)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 3)")
    parser.add_argument(
        "--persistent-workers",
        action="store_true",
        help="worker scenarios keep their workers between epochs (ladle and torch alike); "
        "default: both re-create them every epoch, as torch's default does",
    )
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
    import scenarios

    args = parse_args(argv, list(scenarios.SCENARIOS))
    base = QUICK if args.quick else DEFAULT
    settings = Settings(
        seconds=args.seconds if args.seconds is not None else base.seconds,
        rounds=args.rounds if args.rounds is not None else base.rounds,
        warmup_batches=base.warmup_batches,
        first_batch_repeats=base.first_batch_repeats,
        rounds_given=args.rounds is not None,
    )
    names = [n for n in scenarios.SCENARIOS if args.scenario is None or n in args.scenario]
    wall_start = time.perf_counter()
    torch = scenarios.load_torch()
    if torch is None:
        progress("torch is not installed: torch contenders are skipped, their checks SKIP")
    env = environment(torch)
    setup = scenarios.Setup(torch, persistent_workers=args.persistent_workers, quick=args.quick)
    memory = TreeMemory()

    results: list[Result] = []
    checks: list[Check] = []
    described = []
    skipped: list[str] = []
    for position, name in enumerate(names):
        if not scenarios.USES_SHARED_DATA.intersection(names[position:]):
            scenarios.shared_data.cache_clear()  # no scenario left needs it: free 180 MiB
        start = time.perf_counter()
        try:
            scenario = scenarios.SCENARIOS[name](setup)
        except scenarios.Unavailable as reason:
            progress(f"{name}: skipped, {reason}")
            skipped.append(f"{name}: {reason}")
            continue
        progress(
            f"{scenario.name}: {scenario.description} (data ready in "
            f"{time.perf_counter() - start:.1f} s)"
        )
        try:
            scenario_results = measure(scenario, settings, memory)
        finally:
            if scenario.close is not None:
                scenario.close()  # its servers and temporary data (the s3 scenario's moto)
        progress(f"  {scenario.name} took {time.perf_counter() - start:.1f} s")
        if scenario.bytes_per_sample is not None:
            for result in scenario_results:
                if result.samples_per_s is not None:
                    result.gb_per_s = result.samples_per_s * scenario.bytes_per_sample / 1e9
        checks += compare(scenario_results, scenario.targets)
        results += scenario_results
        described.append(
            {
                "name": scenario.name,
                "description": scenario.description,
                "samples_per_epoch": scenario.samples_per_epoch,
                "batch_size": scenario.batch_size,
                "num_workers": scenario.num_workers,
                "throughput_measured": scenario.throughput,
                "rounds": settings.rounds_for(scenario),
                "isolated": scenario.isolated,
                "bytes_per_sample": scenario.bytes_per_sample,
            }
        )
        del scenario
    wall = time.perf_counter() - wall_start

    rows = table_rows(results, checks)
    print(
        f"ladle {env['ladle']} vs torch {env['torch'] or '(not installed)'} | "
        f"numpy {env['numpy']} | Pillow {env['pillow'] or '-'} | Python {env['python']} | "
        f"{env['cpu_count']} CPUs, torch threads {env['torch_threads']}"
    )
    workers = "persistent" if args.persistent_workers else "re-created every epoch (default)"
    own_rounds = ", ".join(
        f"{d['name']} {d['rounds']}" for d in described if d["rounds"] != settings.rounds
    )
    print(
        f"{settings.rounds} rounds{f' ({own_rounds})' if own_rounds else ''}, "
        f"~{settings.seconds:g} s timed per contender; samples/s is the median over rounds; vs "
        f"torch/limit divide by the fastest torch/limit row, vs ladle by the ladle row; workers "
        f"{workers}"
    )
    if not memory.available:
        print("memory: /proc unavailable, so the peak is this process's alone, since its start")
    elif not memory.has_pss:
        print("memory: smaps_rollup unavailable, so no PSS; +run is RSS above the start")
    else:
        print(
            "memory: PSS = Pss_Anon + Pss_Shmem (shared pages split between the processes "
            "mapping them), RSS = RssAnon + RssShmem, each summed over the tree; file pages "
            "(page cache, mapped data) in neither"
        )
    print()
    print(format_table(rows))
    throughputs = [r for r in results if r.gb_per_s is not None]
    for name in dict.fromkeys(r.scenario for r in throughputs):
        print(
            f"{name}: "
            + ", ".join(
                f"{r.contender} {r.gb_per_s:.2f} GB/s" for r in throughputs if r.scenario == name
            )
        )
    print()
    print("checks")
    print(format_checks(checks))
    for line in skipped:
        print(f"  SKIP  {line}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    gc.collect()  # loaders caught in reference cycles stop their workers now
    processes, files = leftovers()
    print()
    print(
        f"whole run {wall:.1f} s; process peak RSS {_ru_maxrss_bytes() / MIB:.0f} MiB"
        + ("" if load is None else f"; load average {load[0]:.2f} (1 min)")
        + f"; left behind: {len(processes)} processes, {len(files)} /dev/shm/ladle-* files"
    )
    for leftover in processes + files:
        print(f"  left behind: {leftover}")

    failed = any(c.passed is False for c in checks)
    if args.json is not None:
        report = {
            "environment": env | {"load_average_at_end": None if load is None else list(load)},
            "settings": asdict(settings)
            | {"quick": args.quick, "persistent_workers": args.persistent_workers},
            "scenarios": described,
            "skipped": skipped,
            "results": [asdict(r) for r in results],
            "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
            "all_passed": not failed and all(c.passed for c in checks),
            "wall_s": wall,
            "process_peak_rss_mib": _ru_maxrss_bytes() / MIB,
            "left_behind": {"processes": processes, "shm_files": files},
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
