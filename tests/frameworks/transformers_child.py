"""transformers ``Trainer`` scenarios: ``transformers_child.py TMPDIR LOADER...``.

A 2-layer ``BertForSequenceClassification`` built from a config trains on a
``datasets.Dataset`` of 28 samples in batches of 4 (7 steps an epoch) for 2 epochs, saving a
checkpoint after steps 3 and 9, with a Trainer whose ``get_train_dataloader`` returns a shuffled
loader of class LOADER (``torch``, ``ladle``). Then ``train(resume_from_checkpoint=...)`` in a
fresh Trainer and model from step 3 (3 batches into epoch 0) and step 9 (2 into epoch 1).

Variants of ``get_train_dataloader``: ``direct`` returns the loader itself; ``prepared``
returns ``self.accelerator.prepare(loader)`` as Trainer's own does; ``recipe`` (ladle only) the
same after the accelerate recipe ``fw_common.keep_ladle_engine``, run last as it stays in force.

A direct loader is not resumed in epoch 1: Trainer's skip_first_batches then rebuilds a torch
DataLoader over the loader's batch_sampler, whose RandomSampler draws that epoch's order from
torch's generator before Trainer restores the checkpoint's RNG state (after the skipped
batches), so even torch's own class repeats epoch 0's order there.

Each run reports ``[epoch, sample indices]`` per training batch.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import fw_common as fw

warnings.filterwarnings("ignore")

import datasets  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
datasets.logging.set_verbosity_error()
datasets.disable_progress_bars()
logging.disable(logging.WARNING)

N, BATCH, EPOCHS, SEQ = 28, 4, 2, 6
RESUMES = {"e0": 3, "e1": 9}  # checkpoint steps: 3 batches into epoch 0, 2 into epoch 1
CONFIG = transformers.BertConfig(
    vocab_size=32,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=16,
    num_labels=2,
)


SKIPPED: list[Any] = []  # what Trainer's skip_first_batches made of the loader, when it ran
_skip_first_batches = transformers.trainer.skip_first_batches


def skip_first_batches(loader: Any, num_batches: int = 0) -> Any:
    """Trainer's own, recording what it returns."""
    skipped = _skip_first_batches(loader, num_batches)
    made = fw.engine(skipped, probe=False) if hasattr(skipped, "base_dataloader") else None
    SKIPPED.append(made or fw.qualname(skipped))
    return skipped


transformers.trainer.skip_first_batches = skip_first_batches


def data() -> datasets.Dataset:
    ids = [[1 + (i * 7 + j) % 31 for j in range(SEQ)] for i in range(N)]
    columns = {"input_ids": ids, "labels": [i % 2 for i in range(N)], "idx": list(range(N))}
    return datasets.Dataset.from_dict(columns).with_format("torch")


class SaveAt(transformers.TrainerCallback):
    """Saves a checkpoint after the steps of RESUMES (and no others)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control.should_save = state.global_step in RESUMES.values()
        return control


class Recording(transformers.Trainer):
    def __init__(self, loader: type, variant: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loader, self.variant = loader, variant
        self.seen: list[list[Any]] = []
        self.types: set[str] = set()
        self.made: Any = None

    def get_train_dataloader(self) -> Any:
        loader = self.loader(
            self.train_dataset,
            batch_size=self._train_batch_size,
            shuffle=True,
            num_workers=self.args.dataloader_num_workers,
        )
        self.made = loader if self.variant == "direct" else self.accelerator.prepare(loader)
        return self.made

    def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        self.types.add(fw.describe(inputs))
        index = inputs.pop("idx")
        self.seen.append([int(self.state.epoch or 0), index.tolist()])
        return super().compute_loss(model, inputs, *args, **kwargs)


def train(loader: type, variant: str, root: str, ckpt: str | None = None) -> dict[str, Any]:
    transformers.set_seed(0)
    SKIPPED.clear()
    args = transformers.TrainingArguments(
        output_dir=os.path.join(root, "out"),
        per_device_train_batch_size=BATCH,
        num_train_epochs=EPOCHS,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    model = transformers.BertForSequenceClassification(CONFIG)
    trainer = Recording(
        loader, variant, model=model, args=args, train_dataset=data(), callbacks=[SaveAt()]
    )
    trainer.train(resume_from_checkpoint=ckpt)
    made = trainer.made
    out: dict[str, Any] = {
        "seen": trainer.seen,
        "types": sorted(trainer.types),
        "skipped": list(SKIPPED),
    }
    out["engine"] = fw.engine(made) if hasattr(made, "base_dataloader") else fw.qualname(made)
    return out


def scenarios(name: str, root: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    variants = ["direct", "prepared"] + (["recipe"] if name == "ladle" else [])
    for variant in variants:
        if variant == "recipe":
            fw.keep_ladle_engine()
        loader = fw.loader_class(name)
        base = os.path.join(root, variant)
        fw.attempt(results, f"{variant}-fit", lambda: train(loader, variant, base))  # noqa: B023
        for key, step in RESUMES.items():
            if (variant, key) == ("direct", "e1"):
                continue  # see the module docstring
            ckpt = os.path.join(base, "out", f"checkpoint-{step}")
            again = os.path.join(root, f"{variant}-{key}")
            fw.attempt(
                results,
                f"{variant}-resume-{key}",
                lambda: train(loader, variant, again, ckpt),  # noqa: B023
            )
    return results


def main() -> None:
    root, *loaders = sys.argv[1:]
    results: dict[str, Any] = {
        "config": {"n": N, "batch": BATCH, "epochs": EPOCHS, "resumes": RESUMES}
    }
    for name in loaders:
        fw.attempt(results, name, lambda: scenarios(name, os.path.join(root, name)))  # noqa: B023
    fw.emit(results)


if __name__ == "__main__":
    main()
