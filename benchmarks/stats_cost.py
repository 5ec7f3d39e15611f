"""What loader.stats() costs: the in-memory scenario's loop (TensorDataset of 60,000 x 784
float32, batch 256, shuffled, no workers), this checkout against the code before stats existed
(git revision ``--against``, default d7efa1f).

    PYTHONPATH=src .venv/bin/python benchmarks/stats_cost.py [--processes 4] [--rounds 16]

Both versions run in one process, over the same arrays, their epochs alternating: each is a
copy of the package under a name of its own (``ladle_now``, ``ladle_before``). Between fresh
processes the same loop moves by 3% (where the 188 MB array lands in physical memory), which
drowns a 2% cost; inside one process the two see the same memory. A second copy of the old
code (``ladle_before2``) measures what the comparison itself can tell apart: its ratio to the
first is the noise floor. Each process reports the median epoch CPU time of each copy; the
figures are the medians over the processes of the ratios. Pin it to one CPU (``taskset -c 1``)
on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EPOCHS = r"""
import importlib, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
names, rounds = sys.argv[2].split(","), int(sys.argv[3])
packages = [importlib.import_module(name) for name in names]
rng = np.random.default_rng(0)
x, y = rng.random((60_000, 784), dtype=np.float32), rng.integers(0, 10, 60_000)
loaders = [
    package.DataLoader(package.TensorDataset(x, y), batch_size=256, shuffle=True, seed=0)
    for package in packages
]
for loader in loaders:
    for _ in loader:
        pass
times = {name: [] for name in names}
for round_ in range(rounds):
    order = list(zip(names, loaders))
    for name, loader in order if round_ % 2 == 0 else order[::-1]:
        started = time.process_time()
        for _ in loader:
            pass
        times[name].append(time.process_time() - started)
print(json.dumps({name: sorted(values)[len(values) // 2] for name, values in times.items()}))
"""

# the package's own imports, renamed so that two versions load side by side
_IMPORTS = re.compile(r"\b(from|import) ladle\b|\bladle\._runtime\b")


def _copy_as(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    name = target.name
    for path in target.rglob("*.py"):
        text = path.read_text()
        renamed = _IMPORTS.sub(
            lambda match: f"{match.group(1)} {name}" if match.group(1) else f"{name}._runtime",
            text,
        )
        path.write_text(renamed)


def _export(revision: str, target: Path) -> Path:
    """src/ladle as it was at ``revision``, unpacked under ``target``."""
    archive = target / "before.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), revision, "src/ladle"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(target / "export", filter="data")
    return target / "export" / "src" / "ladle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=16, help="epochs of each, per process")
    parser.add_argument("--against", default="d7efa1f", help="the revision without stats")
    args = parser.parse_args()
    names = ["ladle_before", "ladle_now", "ladle_before2"]
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        packages = Path(scratch) / "packages"
        packages.mkdir()
        before = _export(args.against, Path(scratch))
        _copy_as(before, packages / "ladle_before")
        _copy_as(before, packages / "ladle_before2")
        _copy_as(ROOT / "src" / "ladle", packages / "ladle_now")
        for process in range(args.processes):
            order = names if process % 2 == 0 else names[::-1]
            command = [sys.executable, "-c", EPOCHS, str(packages), ",".join(order)]
            result = subprocess.run(
                [*command, str(args.rounds)], capture_output=True, text=True, check=True
            )
            results.append(json.loads(result.stdout))
    cost = [result["ladle_now"] / result["ladle_before"] - 1 for result in results]
    floor = [result["ladle_before2"] / result["ladle_before"] - 1 for result in results]
    before_ms = statistics.median(result["ladle_before"] for result in results) * 1e3
    now_ms = statistics.median(result["ladle_now"] for result in results) * 1e3
    print(
        f"epoch CPU time, median of {args.rounds} alternating epochs in each of "
        f"{args.processes} processes: before stats {before_ms:.2f} ms, with stats "
        f"{now_ms:.2f} ms"
    )
    print(
        f"with stats: {statistics.median(cost):+.1%} (per process: "
        f"{', '.join(f'{value:+.1%}' for value in cost)})"
    )
    print(
        f"noise floor, the old code against a copy of itself: {statistics.median(floor):+.1%} "
        f"(per process: {', '.join(f'{value:+.1%}' for value in floor)})"
    )


if __name__ == "__main__":
    main()
