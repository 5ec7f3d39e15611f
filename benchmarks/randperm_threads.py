"""What ladle.torch's permutation draw costs python-dataset: its ``_randperm`` (torch's
``randperm`` on one intra-op thread, the thread count set and restored each epoch) against a
plain ``torch.randperm``, each beside ladle over the same torch Dataset.

    PYTHONPATH=src .venv/bin/python benchmarks/randperm_threads.py shipped
    PYTHONPATH=src .venv/bin/python benchmarks/randperm_threads.py plain

One process per variant (the ratio of one process is what the harness sees); 30 ABBA pairs of
epochs; prints wall and process-CPU medians per epoch and ladle / ladle.torch (wall).
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
    parser.add_argument("variant", choices=["shipped", "plain"])
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()

    import torch
    from scenarios import make_data
    from torch_datasets import TorchRows

    import ladle
    import ladle.torch as lt
    import ladle.torch.sampling as sampling

    if args.variant == "plain":
        sampling._randperm = lambda n, g: torch.randperm(n, generator=g).numpy()  # type: ignore[assignment]
    data = make_data()
    dataset = TorchRows(data.x, data.y)
    loaders: dict[str, Any] = {
        "ladle": ladle.DataLoader(dataset, batch_size=256, shuffle=True),
        "ladle.torch": lt.DataLoader(dataset, batch_size=256, shuffle=True),
    }

    def epoch(loader: Any) -> None:
        for batch in loader:
            batch[0].shape  # noqa: B018 - touch the batch, as the harness does

    for loader in loaders.values():
        epoch(loader)
    wall: dict[str, list[float]] = {name: [] for name in loaders}
    cpu: dict[str, list[float]] = {name: [] for name in loaders}
    for pair in range(args.pairs):
        names = list(loaders) if pair % 2 else list(loaders)[::-1]
        for name in names:
            started, used = time.perf_counter(), time.process_time()
            epoch(loaders[name])
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)
    for name in loaders:
        print(
            f"{args.variant:8} {name:12} wall {1000 * statistics.median(wall[name]):7.1f} ms  "
            f"process cpu {1000 * statistics.median(cpu[name]):7.1f} ms"
        )
    ratio = statistics.median(wall["ladle"]) / statistics.median(wall["ladle.torch"])
    print(f"{args.variant:8} ladle.torch / ladle (throughput): {ratio:.3f}")


if __name__ == "__main__":
    main()
