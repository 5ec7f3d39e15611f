"""``ShardWindowSampler``: a shuffle that reads only a window of shards at a time.

For datasets larger than the node cache (shards at a URL): each epoch shuffles the order of the
shards, cuts it into windows of ``window`` shards, and yields each window's records in a random
order, window after window. Only the current window and the next (fetched ahead) need to be in
the cache. The order is a pure function of (seed, epoch), so the position is two integers and
resume is exact, as for RandomSampler.

How far from a full shuffle: every record still appears exactly once per epoch, each window's
records are uniformly permuted, and the windows are a uniform random partition of the shards.
But records of one shard always land in the same window, so two records of one shard are at
most ``window * records_per_shard`` positions apart, where a full shuffle spreads them over the
whole epoch; and a batch of ``B`` draws from at most ``window`` shards (about
``window * (1 - (1 - 1/window) ** B)`` distinct ones), where a full shuffle draws from about
``B`` shards when there are many. With ``window`` equal to the number of shards, it *is* a full
shuffle. Data written in a meaningful order (by class, by source) should be mixed across shards
when packed, or read with a large window.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import numpy as np

from ladle.random_sampler import _SeededSampler
from ladle.sampler import check_positive_int

__all__ = ["ShardWindowSampler"]


class ShardWindowSampler(_SeededSampler):
    """Indices of ``data_source`` (a ShardDataset) shuffled within windows of ``window`` shards.

    ``window`` defaults to half the shards the dataset's node cache holds (all shards for a
    local dataset: a full shuffle), so that the window being read and the next both fit.
    ``seed`` or ``generator`` fix the order, as for RandomSampler. While it yields, it tells the
    dataset (``prefetch``) which shards come next, so they are downloaded ahead of need.
    """

    def __init__(
        self,
        data_source: Any,
        window: int | None = None,
        generator: Any = None,
        *,
        seed: int | None = None,
    ) -> None:
        sizes = getattr(data_source, "shard_sizes", None)
        if not isinstance(sizes, list) or not sizes:
            raise TypeError(
                f"data_source should be a ShardDataset (with shard_sizes), but got "
                f"data_source={data_source!r:.60} ({type(data_source).__name__}); for other "
                f"datasets use RandomSampler"
            )
        given_window = window
        if window is None:
            if getattr(data_source, "cache", None) is None:
                window = len(sizes)  # every shard is local: nothing to bound
            else:
                window = max(1, data_source.cache_capacity // 2)
        self.window = min(check_positive_int(window, "window"), len(sizes))
        # The default window follows this node's cache (its limit, its shard sizes): another
        # node, or a rerun with another cache_limit, would cut the epoch otherwise.
        self.window_follows_cache = (
            given_window is None and getattr(data_source, "cache", None) is not None
        )
        super().__init__(generator, seed)
        self.data_source = data_source
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._layout: tuple[int, list[int], list[list[int]]] | None = None
        self._announced: tuple[int, int] | None = None  # (epoch, window) will_read announced

    def __len__(self) -> int:
        return int(self._starts[-1])

    def state_at(self, epoch: int, offset: int) -> dict[str, Any]:
        """The position and seed, and the window: the order depends on it too."""
        return {**super().state_at(epoch, offset), "window": self.window}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("window", self.window)
        if saved != self.window:
            raise ValueError(
                f"the state was saved from a ShardWindowSampler with window={saved}, but this "
                f"one has window={self.window}, so the epoch would be cut into other windows "
                f"and records lost or repeated; pass window={saved} (the default follows the "
                f"cache_limit, which differs here)"
            )
        super().load_state_dict(state)

    def _compute_order(self, epoch: int) -> np.ndarray:
        rng = self._rng(epoch)
        shards = rng.permutation(len(self._starts) - 1).tolist()
        starts, groups, parts = [0], [], []
        for first in range(0, len(shards), self.window):
            group = shards[first : first + self.window]
            records = np.concatenate(
                [np.arange(self._starts[s], self._starts[s + 1]) for s in group]
            )
            rng.shuffle(records)
            parts.append(records)
            groups.append(group)
            starts.append(starts[-1] + len(records))
        self._layout = (epoch, starts, groups)
        return np.concatenate(parts)

    def windows(self, epoch: int) -> tuple[list[int], list[list[int]]]:
        """(the position where each window starts, the shards of each window) in ``epoch``."""
        if self._layout is None or self._layout[0] != epoch:
            self._cache = None  # the order and its layout are made together
            self.epoch_order(epoch)
        assert self._layout is not None
        return self._layout[1], self._layout[2]

    def _announce(self, epoch: int, position: int) -> None:
        prefetch = getattr(self.data_source, "prefetch", None)
        if prefetch is None:
            return
        starts, groups = self.windows(epoch)
        window = bisect.bisect_right(starts, position) - 1
        prefetch(shard for group in groups[window:] for shard in group)

    def will_read(self, epoch: int, position: int) -> None:
        """Announce the shards from the window of ``position`` on, once per window (the
        shares of a DistributedBatchSampler read the order through this)."""
        starts, _ = self.windows(epoch)
        window = (epoch, bisect.bisect_right(starts, position) - 1)
        if window != self._announced:
            self._announced = window
            self._announce(epoch, position)

    def indices_from(self, epoch: int, position: int) -> Iterator[int]:
        starts, _ = self.windows(epoch)
        boundary = position  # announce at once, then at each window's start
        for index in super().indices_from(epoch, position):
            if position == boundary:
                self._announce(epoch, position)
                following = bisect.bisect_right(starts, position)
                boundary = starts[following] if following < len(starts) else -1
            position += 1
            yield index

    def batches_from(
        self, epoch: int, position: int, batch_size: int, drop_last: bool
    ) -> Iterator[np.ndarray]:
        starts, _ = self.windows(epoch)
        announced = -1
        for batch in super().batches_from(epoch, position, batch_size, drop_last):
            end = position + len(batch) - 1
            last = bisect.bisect_right(starts, end) - 1
            if last != announced:
                # from the window this batch ends in: the next one is then fetched a whole
                # window ahead. The window before, still in flight for a few batches, is no
                # longer pinned: its shards are the first evicted when the next window's
                # arrive, so a worker process that had not opened one yet by then fetches it
                # again (rare: that worker lags more than a download behind)
                self._announce(epoch, end)
                announced = last
            position += len(batch)
            yield batch
