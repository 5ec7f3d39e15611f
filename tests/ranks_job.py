"""A data-parallel job for torchrun: ``torchrun --nproc_per_node=W ranks_job.py OUT MODE``.

Each rank loads a dataset whose samples name their index (plus a ``sample_rng()`` draw) with
``distributed=True`` and a global batch of ``GLOBAL``. At every step the ranks all-reduce a
count over gloo, as a training step's gradient all-reduce would, so a rank that ran out early
would leave the others waiting (the test's time limit catches it). Each rank writes the batches
it saw to ``OUT/rank<r>.json``.

MODE: ``full`` runs two epochs, and after ``CUT`` steps of epoch 0 writes every rank's
``state_dict()`` to ``OUT/state<r>.json``, as a checkpoint would; ``resume`` loads
``OUT/../state0.json`` (rank 0's copy, as a job restarted on another world size would) and runs
the rest of that epoch, then epoch 1.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import ladle

N, GLOBAL, CUT, WORKERS = 61, 12, 2, 2


class Named(ladle.Dataset[np.ndarray]):
    def __len__(self) -> int:
        return N

    def __getitem__(self, index: int) -> np.ndarray:
        return np.array([index, ladle.sample_rng().integers(1 << 30)])


def main() -> None:
    out, mode = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    loader = ladle.DataLoader(
        Named(),
        global_batch_size=GLOBAL,
        shuffle=True,
        seed=11,
        num_workers=WORKERS,
        distributed=True,
    )
    assert loader.ranks is not None and loader.ranks.source == "torch.distributed"
    if mode == "resume":
        with open(os.path.join(out, os.pardir, "state0.json")) as file:
            loader.load_state_dict(json.load(file))
    epochs: list[list[list[list[int]]]] = []
    for _ in range(2):
        batches = []
        for batch in loader:
            count = torch.tensor([len(batch)])
            dist.all_reduce(count)  # every rank takes part in every step
            batches.append(batch.tolist())
            if mode == "full" and not epochs and len(batches) == CUT:
                with open(os.path.join(out, f"state{rank}.json"), "w") as file:
                    json.dump(loader.state_dict(), file)
        epochs.append(batches)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as file:
        json.dump({"world": dist.get_world_size(), "epochs": epochs}, file)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
