"""ladle.torch.DataLoader inside PyTorch Lightning, against torch's DataLoader in the same runs.

lightning_child.py does the training (one child for every single-process fit, one 2-rank DDP
job); the tests here read what each training step saw. Lightning calls ``state_dict()`` on the
train loader when it saves a checkpoint (``FitLoop.on_save_checkpoint``, in
``on_train_batch_end`` for ModelCheckpoint's ``every_n_train_steps``) and ``load_state_dict()``
on the new one before its first ``iter()`` (``FitLoop.setup_data``), for loaders that have
both; torch's has neither, so Lightning restarts the interrupted epoch from its first batch:
the resume tests are expected to fail for torch's class, and must pass for ladle's.

Lightning's one-batch prefetch (``_PrefetchDataFetcher``) is skipped for loaders with a
length: at training step k of an epoch the loader has yielded exactly k + 1 batches, so the
state saved after step k must resume at batch k + 1 (test_lightning_asks_for_no_batch_ahead).
Over a stream without a length it asks for batch k + 1 before step k: a state saved after
step k is one batch ahead of training (test_fit_on_an_unsized_stream_...).
"""

from __future__ import annotations

from typing import Any

import pytest
from fw_support import LOADERS, by_epoch, first_difference, is_ladle, run_child, run_ranks
from fw_support import scenario as pick

TORCH_RESUME = pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="torch's DataLoader has no state_dict: Lightning restarts the epoch",
)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lightning")
    loaders = [*LOADERS, "ladle-seed"]
    return run_child("lightning_child.py", ["single", str(root), *loaders], timeout=300)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("lightning-ddp")
    return run_ranks("lightning_child.py", ["ddp", str(root), *LOADERS], 2, timeout=300)


def assert_loader_class(loader: str, qualified: str) -> None:
    """The loader Lightning iterated is of the class the model's hook returned."""
    if loader == "torch":
        assert qualified == "torch.utils.data.dataloader.DataLoader", qualified
    else:
        assert is_ladle(qualified) and qualified.endswith(".DataLoader"), qualified


@pytest.mark.parametrize("loader", LOADERS)
def test_fit_trains_on_every_sample_each_epoch_in_a_new_order(
    single: dict[str, Any], loader: str
) -> None:
    config = single["config"]
    n, batch, epochs = config["n"], config["batch"], config["epochs"]
    for workers in (0, 2):
        run = pick(single, loader, f"fit-w{workers}")
        assert run["types"] == ["list[Tensor(int64), Tensor(float32)]"]
        assert_loader_class(loader, run["train_loader"])
        assert_loader_class(loader, run["val_loader"])
        assert run["sampler"] == "torch.utils.data.sampler.RandomSampler"
        orders = by_epoch(run["seen"])
        assert sorted(orders) == list(range(epochs))
        for epoch, batches in orders.items():
            assert [len(b) for b in batches] == [batch] * (n // batch), (epoch, batches)
            assert sorted(i for b in batches for i in b) == list(range(n)), (epoch, batches)
        flat = [tuple(i for b in batches for i in b) for batches in orders.values()]
        assert len(set(flat)) == epochs, f"an epoch repeats another's order: {flat}"
        assert [s[1] for s in run["seen"]] == list(range(n // batch)) * epochs
        val = list(range(config["n_val"]))
        assert run["val"] == [val[i : i + batch] for i in range(0, len(val), batch)] * epochs


@pytest.mark.parametrize("loader", LOADERS)
def test_workers_do_not_change_the_batches(single: dict[str, Any], loader: str) -> None:
    inline, workers = pick(single, loader, "fit-w0"), pick(single, loader, "fit-w2")
    assert workers["seen"] == inline["seen"], first_difference(workers["seen"], inline["seen"])


@pytest.mark.parametrize("loader", LOADERS)
def test_lightning_asks_for_no_batch_ahead(single: dict[str, Any], loader: str) -> None:
    """With 0 workers, the samples loaded by training step k of an epoch: (k + 1) batches."""
    config = single["config"]
    steps = config["n"] // config["batch"]
    run = pick(single, loader, "fit-w0")
    loaded = [
        calls - config["n"] * (k // steps) for k, calls in enumerate(run["calls_before_step"])
    ]
    assert loaded == [config["batch"] * (k % steps + 1) for k in range(len(loaded))]


def resume_cases(part: str) -> list[Any]:
    """(loader, workers, epoch of the checkpoint) for the resume tests of ``part``."""
    cases = [(n, w, e) for n in LOADERS for w in (0, 2) for e in (0, 1)]
    cases += [("ladle-seed", 0, e) for e in (0, 1)]
    params = []
    for loader, workers, epoch in cases:
        marks = []
        if loader == "torch" and (part == "interrupted" or epoch == 1):
            marks = [TORCH_RESUME]
        params.append(pytest.param(loader, workers, epoch, marks=marks))
    return params


def resumed_and_expected(
    single: dict[str, Any], loader: str, workers: int, epoch: int
) -> tuple[dict[str, Any], list[Any]]:
    """The resumed fit, and what the uninterrupted one trained on after the checkpoint."""
    step = dict((e, s) for s, e in single["config"]["resumes"])[epoch]
    full = pick(single, loader, f"fit-w{workers}")["seen"]
    return pick(single, loader, f"resume-w{workers}-e{epoch}"), full[step:]


@pytest.mark.parametrize(("loader", "workers", "epoch"), resume_cases("interrupted"))
def test_fit_resumes_the_rest_of_the_interrupted_epoch_exactly(
    single: dict[str, Any], loader: str, workers: int, epoch: int
) -> None:
    """``Trainer.fit(ckpt_path=...)`` from the checkpoint saved after some step of ``epoch``
    trains on exactly the uninterrupted run's batches after that step, to the epoch's end."""
    resumed, expected = resumed_and_expected(single, loader, workers, epoch)
    got = [s for s in resumed["seen"] if s[0] == epoch]
    want = [s for s in expected if s[0] == epoch]
    assert got == want, (
        f"{first_difference(got, want)}; loader states in the checkpoint: "
        f"{str(resumed['loader_states'])[:300]}"
    )


@pytest.mark.parametrize(("loader", "workers", "epoch"), resume_cases("following"))
def test_fit_resumed_mid_epoch_goes_on_into_the_following_epochs_exactly(
    single: dict[str, Any], loader: str, workers: int, epoch: int
) -> None:
    """After the interrupted epoch, the resumed fit trains on the uninterrupted run's epochs.

    Without ``seed=`` each epoch's order is drawn from torch's default generator, which
    Lightning does not checkpoint: the resumed process must leave it where the uninterrupted
    one had it. (torch's loader, restarting epoch 0 from its start, draws from it as the
    uninterrupted run did, so its epochs after epoch 0 match by accident; not after epoch 1.)
    """
    resumed, expected = resumed_and_expected(single, loader, workers, epoch)
    got = [s for s in resumed["seen"] if s[0] > epoch]
    want = [s for s in expected if s[0] > epoch]
    assert got == want, first_difference(got, want)


@pytest.mark.parametrize("loader", LOADERS)
def test_fit_on_an_unsized_stream_saves_mid_epoch_checkpoints(
    single: dict[str, Any], loader: str
) -> None:
    """An IterableDataset without a length or ladle's ``iter_from``: ModelCheckpoint after
    every step must not stop the fit (Lightning asks the loader for its state each time).
    Lightning's fetcher asks for one batch ahead here, having no length to know the last."""
    config = single["config"]
    n, batch = config["n"], config["batch"]
    run = pick(single, loader, "stream-fit")
    order = [list(range(i, i + batch)) for i in range(0, n, batch)]
    assert [s[2] for s in run["seen"]] == order * 2
    loaded = [calls % n or n for calls in run["calls_before_step"]]
    assert loaded == [min(n, batch * (k + 2)) for k in range(n // batch)] * 2


@pytest.mark.parametrize(
    "loader", [pytest.param(n, marks=TORCH_RESUME) if n == "torch" else n for n in LOADERS]
)
def test_fit_resumes_a_resumable_stream_mid_epoch_exactly(
    single: dict[str, Any], loader: str
) -> None:
    """An IterableDataset with a length and ``iter_from``: no fetcher look-ahead, and the
    resumed fit trains on the uninterrupted one's batches after the checkpoint's step."""
    step = single["config"]["stream_resume"]
    full = pick(single, loader, "resumable-fit")["seen"]
    resumed = pick(single, loader, "resumable-resume")
    assert resumed["seen"] == full[step:], (
        f"{first_difference(resumed['seen'], full[step:])}; "
        f"loader states in the checkpoint: {str(resumed['loader_states'])[:300]}"
    )


@pytest.mark.parametrize("loader", LOADERS)
def test_ddp_gives_each_rank_a_disjoint_share_in_a_new_order_each_epoch(
    ddp: list[dict[str, Any]], loader: str
) -> None:
    config = ddp[0]["config"]
    runs = [pick(rank, loader, "fit") for rank in ddp]
    for run in runs:
        # Lightning rebuilt the loader around a DistributedSampler, keeping its class
        assert_loader_class(loader, run["train_loader"])
        assert run["sampler"] == "torch.utils.data.distributed.DistributedSampler"
        assert run["types"] == ["list[Tensor(int64), Tensor(float32)]"]
    shares = [by_epoch(run["seen"]) for run in runs]
    for epoch in range(config["ddp_epochs"]):
        parts = [[i for b in share[epoch] for i in b] for share in shares]
        assert not set(parts[0]) & set(parts[1]), f"epoch {epoch}: ranks overlap: {parts}"
        assert sorted(parts[0] + parts[1]) == list(range(config["n"])), parts
    for share in shares:
        orders = [[i for b in share[e] for i in b] for e in sorted(share)]
        assert orders[0] != orders[1], f"both epochs in one order: {orders}"


@pytest.mark.parametrize(
    "loader", [pytest.param(n, marks=TORCH_RESUME) if n == "torch" else n for n in LOADERS]
)
def test_ddp_fit_resumes_a_mid_epoch_checkpoint_exactly(
    ddp: list[dict[str, Any]], loader: str
) -> None:
    """Rank 0's loader state is the checkpoint's; both ranks resume from it to their own
    remaining batches."""
    step = ddp[0]["config"]["ddp_resume"]
    for rank, results in enumerate(ddp):
        full = pick(results, loader, "fit")["seen"]
        resumed = pick(results, loader, "resume")
        assert resumed["seen"] == full[step:], (
            f"rank {rank}: {first_difference(resumed['seen'], full[step:])}; "
            f"loader states in the checkpoint: {resumed['loader_states']}"
        )
