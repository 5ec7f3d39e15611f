"""What loader.stats() costs: the in-memory scenario's loop (TensorDataset of 60,000 x 784
float32, batch 256, shuffled, no workers) with the pass recorder as it is, and with its
per-batch calls made no-ops, in alternating rounds in one process; the figure is the
process CPU time of an epoch (the median of the rounds) and their ratio.

    PYTHONPATH=src .venv/bin/python benchmarks/stats_cost.py [--rounds 30]

(The workers' side, the stage timing and its TaskTimes, stays on in both: it costs about a
microsecond a batch, out of a batch's hundreds.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import ladle
import ladle.stats as stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.random((60_000, 784), dtype=np.float32), rng.integers(0, 10, 60_000)
    loader = ladle.DataLoader(ladle.TensorDataset(x, y), batch_size=256, shuffle=True, seed=0)
    recorded = stats.PassRecorder.delivered

    def ignored(*_: object) -> None:
        return None

    def epoch() -> float:
        started = time.process_time()
        for _ in loader:
            pass
        return time.process_time() - started

    epoch()
    times: dict[str, list[float]] = {"with stats": [], "recorder off": []}
    for _ in range(args.rounds):
        for name, method in (("with stats", recorded), ("recorder off", ignored)):
            stats.PassRecorder.delivered = method  # type: ignore[method-assign]
            times[name].append(epoch())
    stats.PassRecorder.delivered = recorded  # type: ignore[method-assign]
    on, off = (statistics.median(times[name]) for name in times)
    print(
        f"epoch CPU time, median of {args.rounds}: with stats {on * 1e3:.2f} ms, recorder off "
        f"{off * 1e3:.2f} ms: stats cost {on / off - 1:+.1%}"
    )


if __name__ == "__main__":
    main()
