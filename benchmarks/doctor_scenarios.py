"""ladle doctor on two benchmark scenarios: jpeg (decode-bound: Pillow decode and crop per
sample) and big-samples (transport-bound: 3 x 224 x 224 float32 made per sample). For each, the
bound stage the doctor names, its recommendation, and that recommendation's throughput against
the best of a small sweep (num_workers 0..CPUs+1, process workers, prefetch 2) measured
independently afterwards, in alternating rounds, each over two fresh epochs.

    PYTHONPATH=src .venv/bin/python -W ignore benchmarks/doctor_scenarios.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autotune import dataset_of

import ladle
from ladle import machine
from ladle.doctor import diagnose


def rate(
    dataset: Any, batch_size: int, workers: int, worker_type: str, prefetch: int | None
) -> float:
    loader = ladle.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        worker_type=worker_type,
        prefetch_factor=prefetch if workers else None,
    )
    sum(1 for _ in loader)  # a warm-up epoch
    started = time.perf_counter()
    samples = sum(len(batch[-1]) for batch in loader)
    loader.close()
    return samples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name, expected in (("jpeg", ("fetch", "transform")), ("big-samples", ("transport",))):
        dataset, batch_size = dataset_of(name, args.quick)

        report = diagnose(
            ladle.DataLoader(dataset, batch_size=batch_size, shuffle=True), seconds=1.0
        )
        chosen = report.recommended.setting
        sweep = {count: [] for count in range(machine.cpus() + 2)}  # type: dict[int, list[float]]
        mine: list[float] = []
        for _ in range(args.rounds):
            for count in sweep:
                sweep[count].append(rate(dataset, batch_size, count, "process", 2))
            mine.append(
                rate(
                    dataset,
                    batch_size,
                    chosen.num_workers,
                    chosen.worker_type,
                    chosen.prefetch_factor,
                )
            )
        best = max(sweep, key=lambda count: statistics.median(sweep[count]))
        ratio = statistics.median(mine) / statistics.median(sweep[best])
        verdict = "as expected" if report.bound in expected else "NOT " + "/".join(expected)
        print(
            f"{name}: bound {report.bound} ({verdict}); recommended {chosen}: {ratio:.2f} of "
            f"the sweep's best (num_workers={best})"
        )


if __name__ == "__main__":
    main()
