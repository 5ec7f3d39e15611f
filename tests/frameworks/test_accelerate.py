"""ladle.torch.DataLoader through Hugging Face accelerate on 2 processes (gloo, 127.0.0.1).

``prepare_data_loader`` does not keep the loader it is given: it reads the torch constructor
arguments off it (``_PYTORCH_DATALOADER_KWARGS``, so not ``seed`` or ``worker_type``), wraps
its ``batch_sampler`` in a ``BatchSamplerShard`` and builds a ``DataLoaderShard``, whose
``DataLoaderAdapter.__init__`` makes the loader that really iterates, ``base_dataloader``, by
calling the name ``DataLoader`` of ``accelerate.data_loader`` (torch's); so does
``skip_first_batches``. Three routes are compared:

- ``torch``: torch's DataLoader, the reference;
- ``ladle``: ladle.torch.DataLoader handed to ``prepare`` as it is. ladle's engine is gone
  after ``prepare`` (a torch DataLoader iterates), but the batches must still be right;
- ``ladle-recipe``: the same after ``accelerate.data_loader.DataLoader = ladle.torch.DataLoader``
  (fw_common.keep_ladle_engine): the loaders accelerate builds are ladle's, and must be.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from fw_support import by_epoch, first_difference, is_ladle, run_ranks
from fw_support import scenario as pick

ROUTES = ["torch", "ladle", "ladle-recipe"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("accelerate")
    return run_ranks("accelerate_child.py", [str(root), *ROUTES], 2, timeout=240)


def check_engine(route: str, engine: dict[str, str]) -> None:
    """The prepared loader is accelerate's; what it wraps is ladle's exactly on the recipe."""
    assert engine["prepared"] == "accelerate.data_loader.DataLoaderShard", engine
    if route == "ladle-recipe":
        assert is_ladle(engine["base"]), f"the recipe lost ladle's engine: {engine}"
        assert "iter" not in engine or is_ladle(engine["iter"]), engine
    else:
        assert engine["base"] == "torch.utils.data.dataloader.DataLoader", engine


@pytest.mark.parametrize("route", ROUTES)
def test_prepare_shards_the_loader_across_processes(
    ranks: list[dict[str, Any]], route: str
) -> None:
    config = ranks[0]["config"]
    runs = [pick(rank, route, "shard") for rank in ranks]
    for run in runs:
        assert run["types"] == ["list[Tensor(int64), Tensor(float32)]"]
        check_engine(route, run["engine"])
    shares = [by_epoch(run["seen"]) for run in runs]
    per_rank = config["n"] // config["batch"] // len(ranks)
    for epoch in range(config["epochs"]):
        parts = [[i for b in share[epoch] for i in b] for share in shares]
        assert [len(share[epoch]) for share in shares] == [per_rank] * len(ranks)
        assert not set(parts[0]) & set(parts[1]), f"epoch {epoch}: ranks overlap: {parts}"
        assert sorted(parts[0] + parts[1]) == list(range(config["n"])), parts
    for share in shares:
        assert share[0] != share[1], f"both epochs in one order: {share}"


@pytest.mark.parametrize("route", ROUTES)
def test_gradient_accumulation_syncs_at_every_kth_batch_and_at_the_epoch_end(
    ranks: list[dict[str, Any]], route: str
) -> None:
    """``sync_gradients`` inside ``accumulate()``: every k-th batch, and the last batch of an
    epoch (accelerate's ``end_of_dataloader``, from DataLoaderShard's one-batch look-ahead),
    as for torch's loader."""
    config = ranks[0]["config"]
    k, per_rank = config["accumulate"], config["n"] // config["batch"] // len(ranks)
    epoch = [(i + 1) % k == 0 or i + 1 == per_rank for i in range(per_rank)]
    for rank in ranks:
        run = pick(rank, route, "accumulate")
        check_engine(route, run["engine"])
        assert run["syncs"] == epoch * config["epochs"], run["syncs"]
        assert run["syncs"] == pick(rank, "torch", "accumulate")["syncs"]


@pytest.mark.parametrize("resume", ["e0", "e1"])
@pytest.mark.parametrize("route", ROUTES)
def test_save_state_load_state_and_skip_first_batches_resume_exactly(
    ranks: list[dict[str, Any]], route: str, resume: str
) -> None:
    """accelerate's documented resume (``use_seedable_sampler=True``, ``load_state``, then
    ``skip_first_batches`` for the interrupted epoch) gives the uninterrupted run's batches."""
    for rank in ranks:
        run = pick(rank, route, f"resume-{resume}")
        check_engine(route, run["engine"]["prepared"])
        check_engine(route, run["engine"]["skipped"])
        full, head, tail = run["full"], run["head"], run["tail"]
        assert head == full[: len(head)], first_difference(head, full[: len(head)])
        assert tail == full[len(head) :], first_difference(tail, full[len(head) :])


@pytest.mark.parametrize("resume", ["e0", "e1"])
@pytest.mark.parametrize(
    "route",
    [
        pytest.param(
            "torch",
            marks=pytest.mark.xfail(
                raises=AssertionError, strict=True, reason="torch's DataLoader has no state_dict"
            ),
        ),
        "ladle-recipe",
    ],
)
def test_the_prepared_loaders_own_state_resumes_exactly(
    ranks: list[dict[str, Any]], route: str, resume: str
) -> None:
    """Without ``skip_first_batches``: ``prepared.state_dict()`` after the interrupted run's
    last batch, ``load_state_dict()`` on the fresh run's prepared loader, which hands both to
    the ladle loader it wraps (DataLoaderAdapter)."""
    for rank in ranks:
        run = pick(rank, route, f"state-{resume}")
        check_engine(route, run["engine"]["prepared"])
        full, head, tail = run["full"], run["head"], run["tail"]
        assert tail == full[len(head) :], first_difference(tail, full[len(head) :])


@pytest.mark.skipif(
    importlib.util.find_spec("torchdata") is not None, reason="torchdata is installed"
)
@pytest.mark.parametrize("route", ROUTES)
def test_use_stateful_dataloader_needs_torchdata(ranks: list[dict[str, Any]], route: str) -> None:
    """``DataLoaderConfiguration(use_stateful_dataloader=True)`` is accelerate's route to
    loader state in ``save_state``; it builds torchdata's StatefulDataLoader, whatever the class
    given, and fails at ``prepare`` without torchdata."""
    for rank in ranks:
        outcome = pick(rank, route, "stateful")
        assert outcome.startswith("ImportError: StatefulDataLoader is not available"), outcome
