"""num_workers="auto" against every hand-picked worker count, on the benchmark scenarios.

For each scenario the ladle contender's dataset and batch size are loaded with shuffling by
fresh loaders: num_workers 0, 1, ... up to one more than the CPUs, and "auto". Each loader runs
three epochs; the table gives the last epoch's samples/s (the first ones of "auto" include its
measuring, which may take more than a pass when passes are short; the first is shown apart),
the best fixed setting, and auto over best. Rounds alternate the settings, and each figure is
the round median. ``disk`` loads its shards (the scenario itself runs child processes);
``startup`` is about the first batch, so there the figure is fresh loaders' time to it (spawned
workers, as the scenario has them; the least of 5 x rounds), best fixed over auto.

    PYTHONPATH=src .venv/bin/python benchmarks/autotune.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios

import ladle
from ladle import machine

SCENARIOS = [
    "in-memory",
    "python-dataset",
    "augment",
    "big-samples",
    "jpeg",
    "numpy-augment",
    "imagenet",
    "jpeg-files",
    "disk",
    "startup",
]


def dataset_of(name: str, quick: bool) -> tuple[Any, int]:
    if name == "disk":  # its contenders are child processes: load the same shards here
        import disk

        from ladle.formats import ShardDataset

        data = disk.array_files(disk.DISK_SAMPLES_QUICK if quick else disk.DISK_SAMPLES)
        disk.warm_page_cache([*disk.files_under(data.shards)])
        return ShardDataset(data.shards), scenarios.DISK_BATCH
    build: Callable[[scenarios.Setup], scenarios.Scenario] = scenarios.SCENARIOS[name]
    scenario = build(scenarios.Setup(torch=None, quick=quick))
    contender = next(c for c in scenario.contenders if c.name == "ladle")
    assert contender.make is not None
    loader = contender.make()
    assert isinstance(loader, ladle.DataLoader)
    dataset, batch_size = loader.dataset, loader.batch_size
    assert batch_size is not None
    loader.close()
    return dataset, batch_size


def epochs(dataset: Any, batch_size: int, workers: int | str) -> tuple[float, float, str]:
    """(first epoch, last epoch) samples/s, and what the loader ran. A fixed setting runs three
    epochs; "auto" runs until it has chosen (at most _MAX_TUNING passes: a short pass hands
    its measuring on to the next), then two more."""
    loader = ladle.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    rates: list[float] = []
    chosen: int | None = None  # the pass after which "auto" had chosen
    while True:
        started = time.perf_counter()
        samples = sum(len(batch[-1]) for batch in loader)
        rates.append(samples / (time.perf_counter() - started))
        if workers != "auto":
            if len(rates) == 3:
                break
            continue
        if chosen is None and (loader.autotune is not None or len(rates) == _MAX_TUNING):
            chosen = len(rates)
        if chosen is not None and len(rates) >= max(3, chosen + 2):
            break
    ran = str(workers)
    if workers == "auto":
        ran = f"chosen in pass {chosen}: {loader.autotune}"
    loader.close()
    return rates[0], rates[-1], ran


_MAX_TUNING = 12


def first_batch(dataset: Any, batch_size: int, workers: int | str) -> float:
    """Seconds from a fresh loader's iter() to its first batch, with spawned workers."""
    loader = ladle.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        multiprocessing_context="spawn" if workers else None,
    )
    started = time.perf_counter()
    next(iter(loader))
    seconds = time.perf_counter() - started
    loader.close()
    return seconds


def startup(quick: bool, rounds: int, counts: list[int | str]) -> None:
    dataset, batch_size = dataset_of("startup", quick)
    times: dict[int | str, list[float]] = {count: [] for count in [*counts, "auto"]}
    for round_ in range(rounds * 5):  # a few milliseconds each: more of them
        order = list(times) if round_ % 2 == 0 else list(times)[::-1]
        for count in order:
            times[count].append(first_batch(dataset, batch_size, count))
    # the least: what lingers of the loaders before (spawned workers exiting) only adds
    medians = {count: min(values) for count, values in times.items()}
    best = min(counts, key=lambda count: medians[count])
    auto = medians["auto"]
    print(
        f"{'startup':<14} {medians[best] * 1e3:>6,.2f} ms (n={best}) {auto * 1e3:>7,.2f} ms "
        f"{medians[best] / auto:>9.2f} {'':>9}  (time to the first batch)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    counts: list[int | str] = list(range(0, machine.cpus() + 2))
    print(f"{machine.cpus()} CPUs; fixed num_workers {counts[0]}..{counts[-1]} against 'auto'\n")
    header = f"{'best fixed':>16} {'auto':>10} {'auto/best':>9} {'auto 1st':>9}"
    print(f"{'scenario':<14} {header}  chose")
    for name in args.scenario or SCENARIOS:
        if name == "startup":
            startup(args.quick, args.rounds, counts)
            continue
        dataset, batch_size = dataset_of(name, args.quick)
        second: dict[int | str, list[float]] = {count: [] for count in [*counts, "auto"]}
        first_auto: list[float] = []
        chose = ""
        for round_ in range(args.rounds):
            order = [*counts, "auto"]
            for count in order if round_ % 2 == 0 else order[::-1]:
                one, two, ran = epochs(dataset, batch_size, count)
                second[count].append(two)
                if count == "auto":
                    first_auto.append(one)
                    chose = ran
        medians = {count: statistics.median(rates) for count, rates in second.items()}
        best = max(counts, key=lambda count: medians[count])
        auto = medians["auto"]
        print(
            f"{name:<14} {medians[best]:>9,.0f} (n={best}) {auto:>10,.0f} "
            f"{auto / medians[best]:>9.2f} {statistics.median(first_auto) / medians[best]:>9.2f}"
            f"  {chose}"
        )


if __name__ == "__main__":
    main()
