"""``ladle.DataLoader(distributed=...)`` under Lightning: a DDP fit on 2 ranks checkpoints
mid-epoch, and the fit resumed from it on 1 rank continues the global stream exactly
(lightning_elastic_child.py does the training). Resuming on 3 ranks works the same way (it is
tested under torchrun in tests/test_ranks.py; here it would cost the suite another 35 s)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from fw_support import run_child, run_ranks

SCRIPT = "lightning_elastic_child.py"
CUT = 4  # the checkpoint after global step 4: in the middle of epoch 0 (6 steps an epoch)


def global_stream(ranks: list[dict[str, Any]]) -> list[tuple[int, list[tuple[int, int]]]]:
    """Per training step, its epoch and the rows of every rank's batch, padding dropped."""
    counts = {len(rank["seen"]) for rank in ranks}
    assert len(counts) == 1, f"the ranks ran {counts} steps"
    steps = []
    for step in range(counts.pop()):
        epochs = {rank["seen"][step][0] for rank in ranks}
        assert len(epochs) == 1
        rows = sorted(tuple(row) for rank in ranks for row in rank["seen"][step][1])
        steps.append((epochs.pop(), rows))
    return steps


def real(steps: list[tuple[int, list[tuple[int, int]]]]) -> list[Any]:
    """The steps without repeats within an epoch (the padding of its last global batch)."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for epoch, rows in steps:
        fresh = [row for row in rows if (epoch, row[0]) not in seen]
        seen.update((epoch, row[0]) for row in rows)
        kept.append((epoch, fresh))
    return kept


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Any]]:
    root = str(tmp_path_factory.mktemp("elastic"))
    ranks = run_ranks(SCRIPT, [root, "2"], 2, timeout=300)
    return root, global_stream(ranks)


def test_ddp_ranks_share_each_global_batch(uninterrupted: tuple[str, list[Any]]) -> None:
    _, steps = uninterrupted
    assert len(steps) == 12
    for epoch in (0, 1):
        indices = [row[0] for e, rows in steps if e == epoch for row in rows]
        assert sorted(indices) == list(range(36))
    assert [rows for e, rows in steps if e == 0] != [rows for e, rows in steps if e == 1]


def test_a_ddp_checkpoint_resumes_on_one_rank(uninterrupted: tuple[str, list[Any]]) -> None:
    root, steps = uninterrupted
    ckpt = os.path.join(root, "ckpt", f"step={CUT}.ckpt")
    ranks = [run_child(SCRIPT, [os.path.join(root, "again"), "1", ckpt], timeout=300)]
    assert ranks[0]["world"] == 1
    resumed = global_stream(ranks)
    assert real(steps[:CUT] + resumed) == real(steps)
