"""Lightning with ``ladle.DataLoader(distributed=...)``: ``lightning_elastic_child.py ROOT
WORLD [CKPT]``, one rank of a ``strategy="ddp"`` job on WORLD CPU processes (the test starts
them), or the one process of a single-device fit when WORLD is 1.

The loader takes the ranks from Lightning (``global_rank``, ``world_size``) and a global batch of
GLOBAL, so each rank's batch is GLOBAL / WORLD. Without CKPT: 2 epochs, a checkpoint after every
step (rank 0 writes it, with rank 0's loader state, as Lightning does). With CKPT: the fit
resumed from it, on this WORLD. Every rank reports, per training step, ``[epoch, rows]``: a row
is a sample's index and its ``sample_rng()`` draw.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import fw_common as fw
import numpy as np
import torch

import ladle

warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

N, GLOBAL, EPOCHS = 36, 6, 2  # 6 global steps an epoch


class Named(ladle.Dataset[np.ndarray]):
    def __len__(self) -> int:
        return N

    def __getitem__(self, index: int) -> np.ndarray:
        fw.note_pid()
        return np.array([index, ladle.sample_rng().integers(1 << 20)], dtype=np.int64)


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[Any] = []

    def train_dataloader(self) -> ladle.DataLoader:
        ranks = ladle.Ranks(self.global_rank, self.trainer.world_size)
        return ladle.DataLoader(
            Named(),
            global_batch_size=GLOBAL,
            shuffle=True,
            seed=5,
            num_workers=1,
            distributed=ranks,
            output="torch",
        )

    def training_step(self, batch: torch.Tensor, index: int) -> torch.Tensor:
        self.seen.append([self.current_epoch, batch.tolist()])
        return self.layer(batch.float()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def main() -> None:
    root, world = sys.argv[1], int(sys.argv[2])
    ckpt = sys.argv[3] if len(sys.argv) > 3 else None
    model = Model()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[
            ModelCheckpoint(
                dirpath=os.path.join(root, "ckpt"),
                filename="{step}",
                every_n_train_steps=1,
                save_top_k=-1,
            )
        ]
        if ckpt is None
        else [],
    )
    trainer.fit(model, ckpt_path=ckpt)
    fw.emit({"rank": trainer.global_rank, "world": trainer.world_size, "seen": model.seen})


if __name__ == "__main__":
    main()
