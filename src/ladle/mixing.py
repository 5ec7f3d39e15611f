"""Mixing: weighted interleaving of several map-style datasets.

:class:`MixingSampler` draws the indices of ``ConcatDataset(sources)``: each epoch, source ``s``
gives ``counts[s]`` samples, the counts apportioned to the weights (largest remainder, so they
match the weights to within one sample), at random positions of the epoch, each source's samples
in a random order. All of it is a pure function of ``(seed, epoch)``, so the sampler is an epoch
sampler: the loader saves its position as two integers and resumes it exactly.

When a source runs out (``stop_on``):

- ``"first"`` (the default): the epoch ends as the first source runs out; no sample repeats
  within an epoch, and the larger sources give a different part of themselves each epoch.
- ``"all"``: the epoch goes on until every source has given every sample; a source that runs out
  before starts over with a fresh shuffle (it is cycled, so its samples repeat).
- ``num_samples=N`` instead: the epoch has exactly N samples, a source cycled (a fresh shuffle
  each time round) whenever it runs out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Sized
from typing import Any

import numpy as np

from ladle.random_sampler import _SeededSampler
from ladle.sampler import check_positive_int
from ladle.validation import check_choice

__all__ = ["MixingSampler"]


def _check_sizes(sources: Any) -> np.ndarray:
    if not isinstance(sources, Sequence | np.ndarray) or isinstance(sources, str | bytes):
        sources = None
    if sources is None or len(sources) == 0:
        raise TypeError(
            f"sources should be a non-empty list of datasets (or of their sizes), but got "
            f"sources={sources!r}; pass e.g. MixingSampler([books, web], weights=[0.3, 0.7])"
        )
    sizes = []
    for position, source in enumerate(sources):
        if isinstance(source, bool | str | bytes) or not isinstance(
            source, int | np.integer | Sized
        ):
            raise TypeError(
                f"sources[{position}] should be a map-style dataset with a length or a size, "
                f"but got {type(source).__name__} {source!r}"
            )
        size = int(source) if isinstance(source, int | np.integer) else len(source)
        if size <= 0:
            raise ValueError(
                f"sources[{position}] is empty (size {size}); a source must have samples to "
                f"mix in: drop it, or give it weight by adding samples"
            )
        sizes.append(size)
    return np.array(sizes, dtype=np.int64)


def _check_weights(weights: Any, count: int) -> np.ndarray:
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.array([np.nan])
    if array.shape != (count,):
        raise ValueError(
            f"weights should hold one number per source ({count}), but got weights={weights!r}"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
        raise ValueError(
            f"weights should be finite and non-negative with a positive sum, but got "
            f"weights={array.tolist()}; they need not sum to 1 (they are normalised)"
        )
    normalised: np.ndarray = array / array.sum()
    return normalised


def _apportion(total: int, p: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``p`` by largest remainder (ties: the lower source)."""
    exact = total * p
    counts: np.ndarray = np.floor(exact).astype(np.int64)
    left = total - int(counts.sum())
    if left > 0:
        order = np.lexsort((np.arange(len(p)), -(exact - counts)))
        counts[order[:left]] += 1
    return counts


# n / q nudged so that 3000 / 0.3 (9999.999... in floating point) gives 10000; the loops
# below correct a nudge too far.
_UP, _DOWN = 1 + 1e-12, 1 - 1e-12


def _epoch_length(sizes: np.ndarray, p: np.ndarray, stop_on: str) -> int:
    """``"first"``: ``floor(min size / p)`` draws, when the first source runs out (fewer if
    rounding makes a count exceed its size); ``"all"``: the fewest draws whose counts cover
    every source of positive weight."""
    used = p > 0
    if stop_on == "first":
        total = int(min(math.floor(n / q * _UP) for n, q in zip(sizes[used], p[used], strict=True)))
        while np.any(_apportion(total, p) > sizes):
            total -= 1  # the nudge overshot; total stays >= 1 as n >= 1 >= q
        return total
    total = int(max(math.ceil(n / q * _DOWN) for n, q in zip(sizes[used], p[used], strict=True)))
    while np.any(_apportion(total, p)[used] < sizes[used]):
        total += 1  # the nudge undershot
    return total


class MixingSampler(_SeededSampler):
    """Indices into ``ConcatDataset(sources)`` mixing the sources in proportion to ``weights``.

    ``sources``: the datasets (or their sizes), in the order given to ConcatDataset.
    ``weights``: one non-negative number per source, normalised to sum to 1. Each epoch has
    ``len(self)`` indices, ``counts[s]`` of them from source ``s`` (``counts`` apportioned to the
    weights), at random positions; a source's samples come in a random order, without repeats
    until all of them were given. ``stop_on`` (``"first"`` or ``"all"``) or ``num_samples``
    decides the epoch's length and what happens when a source runs out (see the module's notes).

    The epoch advances at each iteration, as RandomSampler's does; ``set_epoch(e)`` fixes it.
    ``seed=None`` picks a fresh seed, which the saved state carries.
    """

    def __init__(
        self,
        sources: Sequence[Sized | int],
        weights: Sequence[float] | np.ndarray,
        *,
        stop_on: str | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.sizes = _check_sizes(sources)
        self.p = _check_weights(weights, len(self.sizes))
        if stop_on is not None and num_samples is not None:
            raise ValueError(
                f"MixingSampler takes stop_on= or num_samples=, not both: num_samples fixes the "
                f"epoch's length (sources cycled as needed), stop_on derives it from the sizes; "
                f"drop stop_on={stop_on!r} or num_samples={num_samples!r}"
            )
        if num_samples is not None:
            self.num_samples = check_positive_int(num_samples, "num_samples")
            self.stop_on: str | None = None
        else:
            self.stop_on = check_choice(
                "first" if stop_on is None else stop_on,
                "stop_on",
                ("first", "all"),
                fix="'first' ends the epoch when a source runs out, 'all' cycles the sources "
                "until each ran out once; or pass num_samples=N",
            )
            self.num_samples = _epoch_length(self.sizes, self.p, self.stop_on)
        self.counts: tuple[int, ...] = tuple(_apportion(self.num_samples, self.p).tolist())
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        super().__init__(None, seed)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def fractions(self) -> tuple[float, ...]:
        """The effective mixture: each source's share of an epoch (``counts / len(self)``)."""
        return tuple(count / self.num_samples for count in self.counts)

    @property
    def passes(self) -> tuple[float, ...]:
        """How many times each source is gone through in an epoch (``counts / sizes``): below
        1, a part of it; above 1, it repeats."""
        return tuple(c / int(n) for c, n in zip(self.counts, self.sizes, strict=True))

    def source_of(self, index: int) -> tuple[int, int]:
        """``(source, index in that source)`` of an index this sampler yields."""
        source = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return source, int(index) - int(self.offsets[source])

    def epoch_counts(self, epoch: int | None = None) -> dict[str, list[int]]:
        """Measured on ``epoch``'s order (default: the next epoch): per source, the samples
        drawn (``"drawn"``, which is ``counts``) and the distinct ones among them
        (``"distinct"``)."""
        order = self.epoch_order(self.epoch if epoch is None else epoch)
        sources = np.searchsorted(self.offsets, order, side="right") - 1
        drawn = np.bincount(sources, minlength=len(self.sizes))
        distinct = np.bincount(
            np.searchsorted(self.offsets, np.unique(order), side="right") - 1,
            minlength=len(self.sizes),
        )
        return {"drawn": drawn.tolist(), "distinct": distinct.tolist()}

    def _compute_order(self, epoch: int) -> np.ndarray:
        rng = self._rng(epoch)
        # Where each source's samples go, then which samples they are.
        slots = rng.permutation(np.repeat(np.arange(len(self.sizes)), self.counts))
        order = np.empty(self.num_samples, dtype=np.int64)
        for source, (size, count) in enumerate(zip(self.sizes, self.counts, strict=True)):
            if count == 0:
                continue
            rounds = -(-count // int(size))
            drawn = np.concatenate([rng.permutation(int(size)) for _ in range(rounds)])
            order[slots == source] = drawn[:count] + self.offsets[source]
        return order

    def __repr__(self) -> str:
        policy = f"stop_on={self.stop_on!r}" if self.stop_on else f"num_samples={len(self)}"
        return (
            f"MixingSampler(sizes={self.sizes.tolist()}, weights={self.p.round(6).tolist()}, "
            f"{policy}, counts={list(self.counts)}, seed={self._base_seed})"
        )
