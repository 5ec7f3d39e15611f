"""Lightning scenarios: ``lightning_child.py single|ddp TMPDIR LOADER...``.

LOADER is ``torch``, ``ladle`` (ladle.torch.DataLoader) or, single only, ``ladle-seed``
(ladle.torch.DataLoader with ``seed=``, 0 workers only).

single: ``Trainer.fit`` with a train and a val loader, 3 epochs, a checkpoint after every step
(ModelCheckpoint), with 0 and with 2 workers; then fits resumed (``ckpt_path=``) from a
checkpoint in the middle of epoch 0 and of epoch 1, each in a fresh Trainer, model and loader
after ``seed_everything`` as a new process would. ddp: the same model under
``strategy="ddp"`` on 2 CPU processes (this script is one rank; the test starts both), 2 epochs
uninterrupted, then a fit resumed from a checkpoint in the middle of epoch 1.

single also fits on a stream (an IterableDataset, 0 workers, 2 epochs) with the same
checkpoints: one without a length or ladle's resume protocol (``iter_from``), one with both,
resumed from its checkpoint 2 batches into epoch 0.

Every run reports, per training step, ``[epoch, batch_idx, sample indices]``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import fw_common as fw
import torch
import torch.utils.data as tud

warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

N_TRAIN, N_VAL, BATCH, EPOCHS = 28, 8, 4, 3  # 7 steps an epoch
# checkpoints resumed from: (global step, its epoch); step 2 is 2 batches into epoch 0,
# step 11 is 4 batches into epoch 1
RESUMES = [(2, 0), (11, 1)]
STREAM_RESUME = 2  # the checkpoint the resumable stream resumes from: 2 batches into epoch 0
SEED = 7  # of the loader "ladle-seed": ladle.torch.DataLoader(..., seed=SEED)
DDP_EPOCHS, DDP_RESUME = 2, 5  # ddp: 28 / 2 ranks / 4 = 4 steps an epoch; step 5 is in epoch 1


class Counting(fw.Indexed):
    """Counts the samples loaded in this process (with 0 workers: every one)."""

    calls = 0

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        self.calls += 1
        return super().__getitem__(i)


class Stream(tud.IterableDataset[tuple[int, torch.Tensor]]):
    """The samples of Indexed as a stream, without a length and without ladle's resume
    protocol (``iter_from``); counts the samples it yields."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        return self.samples(0)

    def samples(self, start: int) -> Iterator[tuple[int, torch.Tensor]]:
        for i in range(start, self.n):
            fw.note_pid()
            self.calls += 1
            yield i, torch.full((3,), i / self.n)


class ResumableStream(Stream):
    """A Stream with a length and ladle's resume protocol."""

    def __len__(self) -> int:
        return self.n

    def iter_from(self, position: int) -> Iterator[tuple[int, torch.Tensor]]:
        return self.samples(position)


STREAMS = {"plain": Stream, "resumable": ResumableStream}


class Model(pl.LightningModule):
    def __init__(self, loader: Any, workers: int, stream: str | None = None) -> None:
        super().__init__()
        self.loader, self.workers, self.stream = loader, workers, stream
        self.layer = torch.nn.Linear(3, 1)
        self.train_data: Any = STREAMS[stream](N_TRAIN) if stream else Counting(N_TRAIN)
        self.val_data = Counting(N_VAL)
        self.calls_before_step: list[int] = []  # samples the train dataset had loaded
        self.seen: list[list[Any]] = []
        self.val_seen: list[list[int]] = []
        self.types: set[str] = set()

    def train_dataloader(self) -> Any:
        if self.stream:
            return self.loader(self.train_data, batch_size=BATCH, num_workers=self.workers)
        return self.loader(
            self.train_data, batch_size=BATCH, shuffle=True, num_workers=self.workers
        )

    def val_dataloader(self) -> Any:
        return self.loader(self.val_data, batch_size=BATCH, num_workers=self.workers)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        index, features = batch
        self.types.add(fw.describe(batch))
        self.seen.append([self.current_epoch, batch_idx, index.tolist()])
        self.calls_before_step.append(self.train_data.calls)
        loss: torch.Tensor = self.layer(features).pow(2).mean()
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        index, _ = batch
        if not self.trainer.sanity_checking:
            self.val_seen.append(index.tolist())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(root: str, epochs: int, ddp: bool, checkpoints: bool) -> pl.Trainer:
    callbacks = []
    if checkpoints:
        callbacks.append(
            ModelCheckpoint(
                dirpath=os.path.join(root, "ckpt"),
                filename="{step}",
                every_n_train_steps=1,
                save_top_k=-1,
            )
        )
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=2 if ddp else 1,
        strategy="ddp" if ddp else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )


def fit(
    loader: Any,
    workers: int,
    root: str,
    epochs: int,
    ddp: bool,
    ckpt: str | None = None,
    stream: str | None = None,
) -> dict[str, Any]:
    pl.seed_everything(0, verbose=False)
    model = Model(loader, workers, stream)
    run = trainer(root, epochs, ddp, checkpoints=ckpt is None)
    run.fit(model, ckpt_path=ckpt)
    train_loader = run.train_dataloader
    out: dict[str, Any] = {
        "seen": model.seen,
        "val": model.val_seen,
        "types": sorted(model.types),
        "calls_before_step": model.calls_before_step if workers == 0 else None,
        "train_loader": fw.qualname(train_loader),
        "sampler": fw.qualname(train_loader.sampler),
        "val_loader": fw.qualname(run.val_dataloaders),
    }
    if ckpt is not None:
        state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]
        out["loader_states"] = state.get("combined_loader")
    return out


def single(
    loader: Any, root: str, workers_tried: tuple[int, ...] = (0, 2), streams: bool = True
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for workers in workers_tried:
        base = os.path.join(root, f"w{workers}")

        def run(workers: int = workers, base: str = base) -> dict[str, Any]:
            return fit(loader, workers, base, EPOCHS, ddp=False)

        fw.attempt(results, f"fit-w{workers}", run)
        for step, epoch in RESUMES:
            ckpt = os.path.join(base, "ckpt", f"step={step}.ckpt")
            again = os.path.join(root, f"r{workers}-{step}")

            def resume(workers: int = workers, again: str = again, ckpt: str = ckpt) -> Any:
                return fit(loader, workers, again, EPOCHS, ddp=False, ckpt=ckpt)

            fw.attempt(results, f"resume-w{workers}-e{epoch}", resume)
    if streams:
        ckpt = os.path.join(root, "resumable", "ckpt", f"step={STREAM_RESUME}.ckpt")
        for name, run in [
            (
                "stream-fit",
                lambda: fit(loader, 0, os.path.join(root, "plain"), 2, False, stream="plain"),
            ),
            (
                "resumable-fit",
                lambda: fit(
                    loader, 0, os.path.join(root, "resumable"), 2, False, stream="resumable"
                ),
            ),
            (
                "resumable-resume",
                lambda: fit(
                    loader,
                    0,
                    os.path.join(root, "resumed"),
                    2,
                    False,
                    ckpt=ckpt,
                    stream="resumable",
                ),
            ),
        ]:
            fw.attempt(results, name, run)
    return results


def ddp(loader: type, root: str) -> dict[str, Any]:
    results: dict[str, Any] = {"rank": int(os.environ["RANK"])}
    base = os.path.join(root, "ddp")  # the ranks share it: rank 0 writes the checkpoints
    ckpt = os.path.join(base, "ckpt", f"step={DDP_RESUME}.ckpt")
    again = os.path.join(root, f"ddp-again-{results['rank']}")
    fw.attempt(results, "fit", lambda: fit(loader, 0, base, DDP_EPOCHS, ddp=True))
    fw.attempt(results, "resume", lambda: fit(loader, 0, again, DDP_EPOCHS, True, ckpt))
    return results


def main() -> None:
    mode, root, *loaders = sys.argv[1:]
    results: dict[str, Any] = {
        "config": {
            "n": N_TRAIN,
            "n_val": N_VAL,
            "batch": BATCH,
            "epochs": EPOCHS,
            "resumes": RESUMES,
            "ddp_epochs": DDP_EPOCHS,
            "ddp_resume": DDP_RESUME,
            "stream_resume": STREAM_RESUME,
        }
    }
    for name in loaders:
        folder = os.path.join(root, name)
        if name == "ladle-seed":  # ladle's own seed=, without workers
            seeded = functools.partial(fw.loader_class("ladle"), seed=SEED)
            fw.attempt(results, name, lambda: single(seeded, folder, (0,), False))  # noqa: B023
        elif mode == "single":
            fw.attempt(results, name, lambda: single(fw.loader_class(name), folder))  # noqa: B023
        else:
            fw.attempt(results, name, lambda: ddp(fw.loader_class(name), folder))  # noqa: B023
    fw.emit(results)


if __name__ == "__main__":
    main()
