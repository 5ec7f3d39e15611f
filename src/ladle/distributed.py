"""Sharding across ranks: each rank of a data-parallel job reads its own share of every epoch.

``DistributedSampler`` is torch's: each rank takes every ``num_replicas``-th index of a padded
epoch. ``DistributedBatchSampler`` is what ``DataLoader(distributed=True)`` uses: it cuts the
epoch into *global* batches and gives each rank its share of each, so the sequence of global
batches does not depend on the number of ranks, and a job can resume on more or fewer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np

from ladle.ranks import Ranks, process_group
from ladle.sampler import EpochSampler, Sampler, check_flag, check_positive_int, check_sized
from ladle.seeding import check_seed, keyed_rng
from ladle.validation import check_int

__all__ = ["DistributedBatchSampler", "DistributedSampler", "check_agreed_order"]


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
            group = process_group()
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


def check_agreed_order(sampler: object) -> None:
    """``sampler`` gives every rank the same epoch order, unsharded: one of ladle's epoch
    samplers, seeded (not drawing from a generator), not a DistributedSampler."""
    if isinstance(sampler, DistributedSampler):
        raise ValueError(
            "sampler=DistributedSampler already takes one rank's share, and distributed=True "
            "would share that again; use one of them (distributed=True keeps the global "
            "stream the same on any number of ranks)"
        )
    if not isinstance(sampler, EpochSampler) or getattr(sampler, "generator", None) is not None:
        raise ValueError(
            f"distributed=True needs an order every rank computes alike, but got "
            f"sampler={sampler!r} ({type(sampler).__name__}); use shuffle=True with seed=, or "
            f"one of ladle's samplers built with seed= (not generator=)"
        )
    if getattr(sampler, "window_follows_cache", False):
        window = getattr(sampler, "window", None)
        raise ValueError(
            f"distributed=True needs an order every rank computes alike, but "
            f"{type(sampler).__name__}'s default window={window} follows this node's "
            f"cache_limit, which other nodes may not share (their ranks would then cut the "
            f"epoch otherwise, losing and repeating records); pass window= explicitly"
        )
    if getattr(sampler, "seed", 0) is None:
        raise ValueError(
            f"distributed=True needs an order every rank computes alike, but "
            f"sampler={type(sampler).__name__} has no seed, so each rank would shuffle its "
            f"own way; build it with seed=<int>"
        )


class DistributedBatchSampler(Sampler[list[int]]):
    """This rank's share of each global batch of ``sampler``'s epoch.

    The epoch order (one order, the same on every rank: ``sampler`` must be one of ladle's
    epoch samplers, seeded) is cut into global batches of ``global_batch_size``; rank ``r`` of
    ``W`` takes every ``W``-th index of each, from the ``r``-th. A short last global batch is
    dropped with ``drop_last``, else padded with the epoch's first indices up to a multiple of
    ``W``, so every rank yields the same number of batches. With ``global_batch_size = W * b``
    this is exactly torch's ``DistributedSampler`` (padding or dropping alike) under a
    ``BatchSampler`` of ``b``; any global batch of at least ``W`` works, the ranks' shares then
    differing by at most one index.

    The global batches are a pure function of the epoch order and ``global_batch_size``: the
    same for any world size, but for the padding of the last one. The state is the epoch
    sampler's (an epoch and a position counted in the epoch's own indices), so a state saved on
    one world size resumes on another.
    """

    def __init__(
        self, sampler: EpochSampler, global_batch_size: int, drop_last: bool, ranks: Ranks
    ) -> None:
        check_agreed_order(sampler)
        self.sampler = sampler
        self.global_batch_size = check_positive_int(global_batch_size, "global_batch_size")
        self.drop_last = check_flag(drop_last, "drop_last")
        self.ranks = ranks
        if self.global_batch_size < ranks.world_size:
            raise ValueError(
                f"global_batch_size={global_batch_size} is smaller than the world size "
                f"{ranks.world_size}, so some ranks would get no sample in a step; use a "
                f"global batch of at least {ranks.world_size}"
            )

    @property
    def batch_size(self) -> int:
        """The most indices this rank's batches hold."""
        world, rank = self.ranks.world_size, self.ranks.rank
        return len(range(rank, self.global_batch_size, world))

    def __len__(self) -> int:
        count = len(self.sampler)
        if self.drop_last:
            return count // self.global_batch_size
        return -(-count // self.global_batch_size)

    def batches_from(self, epoch: int, position: int) -> Iterator[tuple[np.ndarray, int]]:
        """This rank's batches of ``epoch`` from global position ``position`` on, each with
        the position after its global batch. A pure function of its arguments."""
        order = self.sampler.epoch_order(epoch)
        total, size = len(order), self.global_batch_size
        world, rank = self.ranks.world_size, self.ranks.rank
        while position < total:
            end = position + size
            self.sampler.will_read(epoch, min(end, total) - 1)
            if end > total:
                if self.drop_last:
                    return
                batch = order[position:]
                batch = np.concatenate([batch, np.resize(order, -len(batch) % world)])
                yield batch[rank::world], total
                return
            yield order[position + rank : end : world], end
            position = end

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler.run(self.batches_from):
            yield batch.tolist()

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
