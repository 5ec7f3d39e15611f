"""Where ladle.torch's time goes beside ladle's in python-dataset (num_workers=0): one process,
ABBA pairs of epochs over the same torch Dataset body, main-thread CPU per epoch.

    PYTHONPATH=src .venv/bin/python benchmarks/torch_gap.py [--pairs N]

Three loaders: ``ladle`` (NumPy batches), ``ladle.torch`` as shipped, and ``ladle.torch`` whose
batches skip the NumPy-to-tensor step (``output`` conversion off: everything else is
ladle.torch's). Then, inside the same epoch loop, the time of each ``torch.from_numpy`` of a
batch: the first torch call after the fetch loop runs with torch's code out of the caches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()

    import torch
    from scenarios import BATCH_SIZE, LadleRows, make_data
    from torch_datasets import TorchRows

    import ladle
    import ladle.interop as interop
    import ladle.torch as lt

    data = make_data()
    shipped = interop.to_torch
    interop.to_torch = lambda batch: batch  # read when a loader is built: this one keeps NumPy
    unconverted = lt.DataLoader(TorchRows(data.x, data.y), batch_size=BATCH_SIZE, shuffle=True)
    interop.to_torch = shipped
    loaders: dict[str, Any] = {
        "ladle": ladle.DataLoader(LadleRows(data.x, data.y), batch_size=BATCH_SIZE, shuffle=True),
        "ladle.torch": lt.DataLoader(
            TorchRows(data.x, data.y), batch_size=BATCH_SIZE, shuffle=True
        ),
        "ladle.torch, no tensors": unconverted,
    }

    def epoch(loader: Any) -> None:
        for batch in loader:
            batch[0].shape  # noqa: B018 - touch the batch, as the harness does

    for loader in loaders.values():
        epoch(loader)
    cpu: dict[str, list[float]] = {name: [] for name in loaders}
    for pair in range(args.pairs):
        names = list(loaders) if pair % 2 else list(loaders)[::-1]
        for name in names:
            used = time.thread_time()
            epoch(loaders[name])
            cpu[name].append(time.thread_time() - used)
    medians = {name: statistics.median(times) for name, times in cpu.items()}
    batches = len(loaders["ladle"])
    for name, median in medians.items():
        print(
            f"{name:24} {1000 * median:6.1f} ms/epoch  ladle / this {medians['ladle'] / median:.3f}"
            f"  (+{1e6 * (median - medians['ladle']) / batches:5.1f} us/batch)"
        )

    clock = time.perf_counter_ns
    first = second = 0
    rows = TorchRows(data.x, data.y)
    order = torch.randperm(len(rows)).numpy()
    for start in range(0, len(order) - BATCH_SIZE + 1, BATCH_SIZE):
        batch = ladle.default_collate([rows[i] for i in order[start : start + BATCH_SIZE].tolist()])
        started = clock()
        torch.from_numpy(batch[0])
        middle = clock()
        torch.from_numpy(batch[1])
        first, second = first + middle - started, second + clock() - middle
    count = len(order) // BATCH_SIZE
    print(
        f"torch.from_numpy after a fetch loop: first {first / count / 1e3:.1f} us, "
        f"second {second / count / 1e3:.1f} us per batch"
    )


if __name__ == "__main__":
    main()
