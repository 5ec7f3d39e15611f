"""ladle.torch.DataLoader under transformers' Trainer, against torch's DataLoader.

transformers_child.py trains a 2-layer BERT built from a config with a Trainer subclass whose
``get_train_dataloader`` returns the loader (``direct``), or ``accelerator.prepare(loader)`` as
Trainer's own does (``prepared``; with ``recipe``, after the accelerate recipe, ladle only).
To resume mid-epoch, Trainer calls accelerate's ``skip_first_batches(loader, n)`` for the
interrupted epoch: for a direct loader, a new torch ``DataLoader(dataset,
batch_sampler=SkipBatchSampler(loader.batch_sampler), collate_fn=loader.collate_fn, ...)``
(ladle's loader gave NumPy there before ladle.torch); for a prepared one, a new
``DataLoaderShard`` (see test_accelerate).
"""

from __future__ import annotations

from typing import Any

import pytest
from fw_support import by_epoch, first_difference, is_ladle, run_child
from fw_support import scenario as pick

VARIANTS = [("torch", "direct"), ("torch", "prepared")]
VARIANTS += [("ladle", "direct"), ("ladle", "prepared"), ("ladle", "recipe")]
TYPES = ["dict[input_ids: Tensor(int64), labels: Tensor(int64), idx: Tensor(int64)]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("transformers")
    return run_child("transformers_child.py", [str(root), "torch", "ladle"], timeout=300)


def check_engine(loader: str, variant: str, made: Any) -> None:
    """Which loader iterated: the one returned (direct), a torch one accelerate built around
    it (prepared), a ladle one accelerate built (recipe)."""
    if variant == "direct":
        assert made == {"torch": "torch.utils.data.dataloader.DataLoader"}.get(loader, made)
        assert loader == "torch" or is_ladle(made), made
        return
    assert made["prepared"] == "accelerate.data_loader.DataLoaderShard", made
    if variant == "recipe":
        assert is_ladle(made["base"]), f"the recipe lost ladle's engine: {made}"
    else:
        assert made["base"] == "torch.utils.data.dataloader.DataLoader", made


@pytest.mark.parametrize(("loader", "variant"), VARIANTS)
def test_trainer_trains_on_every_sample_each_epoch_in_a_new_order(
    trained: dict[str, Any], loader: str, variant: str
) -> None:
    config = trained["config"]
    run = pick(trained, loader, f"{variant}-fit")
    check_engine(loader, variant, run["engine"])
    assert run["types"] == TYPES
    orders = by_epoch(run["seen"])
    assert sorted(orders) == list(range(config["epochs"]))
    for epoch, batches in orders.items():
        assert sorted(i for b in batches for i in b) == list(range(config["n"])), (epoch, batches)
    assert orders[0] != orders[1], f"both epochs in one order: {orders}"


def resumes() -> list[Any]:
    # a direct loader resumed in epoch 1 is left out: see transformers_child's docstring
    cases = [(loader, variant, "e0") for loader, variant in VARIANTS]
    return cases + [(loader, variant, "e1") for loader, variant in VARIANTS if variant != "direct"]


@pytest.mark.parametrize(("loader", "variant", "resume"), resumes())
def test_trainer_resumes_a_mid_epoch_checkpoint_exactly(
    trained: dict[str, Any], loader: str, variant: str, resume: str
) -> None:
    """``train(resume_from_checkpoint=...)`` trains on exactly the uninterrupted run's batches
    after the checkpoint's step, in tensors as before."""
    step = trained["config"]["resumes"][resume]
    full = pick(trained, loader, f"{variant}-fit")["seen"]
    run = pick(trained, loader, f"{variant}-resume-{resume}")
    assert run["types"] == TYPES
    assert run["seen"] == full[step:], first_difference(run["seen"], full[step:])
    (skipped,) = run["skipped"]  # Trainer skipped the trained batches once
    if variant == "direct":
        assert skipped == "torch.utils.data.dataloader.DataLoader", skipped
    else:
        check_engine(loader, variant, skipped)
