"""``ladle.DataLoader(distributed=...)`` under Lightning: a DDP fit on 2 ranks checkpoints
mid-epoch, each rank's batches its share of the global batch (lightning_elastic_child.py does
the training; with a checkpoint path as its third argument it resumes a fit on any number of
devices). Resuming on other world sizes is tested under torchrun in tests/test_ranks.py; here
it would cost the suite another 17-35 s, past its 10 minutes."""

from __future__ import annotations

from typing import Any

import pytest
from fw_support import run_ranks

SCRIPT = "lightning_elastic_child.py"


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
