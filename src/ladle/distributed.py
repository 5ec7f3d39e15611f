"""DistributedSampler: each rank of a data-parallel job reads its own share of every epoch."""

from __future__ import annotations

import math
import sys
from collections.abc import Sized

import numpy as np

from ladle.sampler import EpochSampler, check_flag, check_sized
from ladle.seeding import check_seed, keyed_rng
from ladle.validation import check_int

__all__ = ["DistributedSampler"]


def _process_group() -> tuple[int, int] | None:
    """(world size, rank) from an initialised torch.distributed, else None."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return None


class DistributedSampler(EpochSampler):
    """Rank ``rank`` of ``num_replicas`` takes every ``num_replicas``-th index of the epoch.

    Without ``drop_last`` the epoch is padded by repeating its start so every rank gets the same
    count (torch's rule); with it the tail that does not divide evenly is dropped. The order is a
    pure function of ``(seed, epoch)``: call ``set_epoch`` each epoch to reshuffle.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if num_replicas is None or rank is None:
            group = _process_group()
            if group is None:
                missing = "num_replicas" if num_replicas is None else "rank"
                raise ValueError(
                    f"DistributedSampler got {missing}=None and no torch.distributed process "
                    f"group is initialised; pass num_replicas= and rank= explicitly"
                )
            num_replicas = group[0] if num_replicas is None else num_replicas
            rank = group[1] if rank is None else rank
        num_replicas = check_int(num_replicas, "num_replicas", minimum=1, type_error=ValueError)
        rank = check_int(rank, "rank", type_error=ValueError)
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"Invalid rank {rank!r}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = check_sized(dataset, "dataset")
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = check_flag(shuffle, "shuffle")
        self.drop_last = check_flag(drop_last, "drop_last")
        self.seed = check_seed(seed)
        size = len(dataset)
        if drop_last and size % num_replicas:
            self.num_samples = math.ceil((size - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(size / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def _compute_order(self, epoch: int) -> np.ndarray:
        size = len(self.dataset)
        if self.shuffle:
            order = keyed_rng(self.seed, epoch).permutation(size).astype(np.int64)
        else:
            order = np.arange(size, dtype=np.int64)
        if self.total_size > size:
            order = np.resize(order, self.total_size)  # repeats the start, as torch pads
        else:
            order = order[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas]
