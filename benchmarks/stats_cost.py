"""What loader.stats() costs: the in-memory scenario's loop (TensorDataset of 60,000 x 784
float32, batch 256, shuffled, no workers), this checkout against the code before stats existed
(git revision ``--against``, default d7efa1f, checked out in a temporary worktree), in
alternating fresh processes. Each process reports the best epoch's CPU time of seven; the
figure is the ratio of the medians over the rounds (and of the minimums).

    PYTHONPATH=src .venv/bin/python benchmarks/stats_cost.py [--rounds 10] [--batch-size 256]

Fresh processes, not toggles in one: the cost is mostly the CPU's caches, which the batch's
800 KB gather empties every batch, and a process's layout moves a loop by a few percent.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EPOCH = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import ladle
batch_size = int(sys.argv[2])
rng = np.random.default_rng(0)
x, y = rng.random((60_000, 784), dtype=np.float32), rng.integers(0, 10, 60_000)
loader = ladle.DataLoader(ladle.TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=0)
for _ in loader:
    pass
best = float("inf")
for _ in range(7):
    started = time.process_time()
    for _ in loader:
        pass
    best = min(best, time.process_time() - started)
print(best)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--against", default="d7efa1f", help="the revision without stats")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch) / "before"
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "-q",
                "--detach",
                str(before),
                args.against,
            ],
            check=True,
        )
        try:
            sources = {"without stats": str(before / "src"), "with stats": str(ROOT / "src")}
            times: dict[str, list[float]] = {name: [] for name in sources}
            for round_ in range(args.rounds):
                order = list(sources.items())
                for name, src in order if round_ % 2 == 0 else order[::-1]:
                    command = [sys.executable, "-c", EPOCH, src, str(args.batch_size)]
                    result = subprocess.run(command, capture_output=True, text=True, check=True)
                    times[name].append(float(result.stdout))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=True
            )
    off, on = times["without stats"], times["with stats"]
    median_off, median_on = statistics.median(off), statistics.median(on)
    print(
        f"epoch CPU time (best of 7 per process, {args.rounds} rounds, batch {args.batch_size}): "
        f"without stats {median_off * 1e3:.2f} ms, with {median_on * 1e3:.2f} ms: "
        f"{median_on / median_off - 1:+.1%} by the medians, {min(on) / min(off) - 1:+.1%} by "
        f"the minimums"
    )


if __name__ == "__main__":
    main()
