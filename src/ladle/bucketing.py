"""Length bucketing: batches of samples of similar length, so that padding wastes little.

:class:`BucketBatchSampler` follows the "sort within a pool" recipe (torchtext's
``BucketIterator``, Hugging Face's ``group_by_length``, grain's bucketing): each epoch, the
indices are shuffled from ``(seed, epoch)``, cut into pools of ``pool`` batches, each pool is
sorted by length and cut into batches, and the batches are shuffled. A batch therefore holds
neighbours in the length order of ``pool * batch_size`` random samples, and its padding is bounded
by the spread of lengths between neighbours there: the larger the pool, the less padding and the
less random the batches' composition (``pool=1`` is plain random batching).

Every batch has ``batch_size`` indices except one short batch of the ``len % batch_size`` left
over, which always comes last (``drop_last`` drops it, as BatchSampler does). So the epoch is an
index order cut into slices of ``batch_size``: the sampler is a :class:`~ladle.BatchSampler` over
an epoch sampler, and the loader reads it, saves its position and resumes it exactly as it does a
shuffled ``BatchSampler``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle.random_sampler import _SeededSampler
from ladle.sampler import BatchSampler, check_sized
from ladle.validation import check_int

__all__ = ["BucketBatchSampler", "PaddingStats", "padding_stats"]


@dataclass(frozen=True)
class PaddingStats:
    """How much of a set of padded batches is padding.

    ``tokens``: the real length summed over the samples; ``padded``: what the batches hold once
    each is padded to its longest sample (``len(batch) * max length``, summed)."""

    batches: int
    samples: int
    tokens: float
    padded: float

    @property
    def padding(self) -> float:
        """Padding entries (``padded - tokens``)."""
        return self.padded - self.tokens

    @property
    def waste(self) -> float:
        """The fraction of the padded batches that is padding (0 when nothing is padded)."""
        return self.padding / self.padded if self.padded else 0.0

    def __str__(self) -> str:
        return (
            f"{self.batches} batches, {self.samples} samples: {self.tokens:g} tokens padded "
            f"to {self.padded:g} ({self.waste:.1%} padding)"
        )


def _check_lengths(lengths: Any) -> np.ndarray:
    array = np.asarray(lengths)
    if (
        array.ndim != 1
        or array.dtype == np.bool_
        or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))
    ):
        raise TypeError(
            f"lengths should be a 1-d sequence of numbers (one length per sample), but got "
            f"lengths of dtype {array.dtype} and shape {array.shape}; pass e.g. "
            f"[len(sample['ids']) for sample in dataset], or use "
            f"BucketBatchSampler.from_dataset(dataset, batch_size, length_fn=...)"
        )
    if array.size == 0:
        raise ValueError(
            "lengths should hold one length per sample, but got an empty sequence; a "
            "BucketBatchSampler cannot batch an empty dataset"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        bad = int(np.flatnonzero(~np.isfinite(array) | (array < 0))[0])
        raise ValueError(
            f"lengths should be finite and non-negative, but lengths[{bad}]={array[bad].item()!r}; "
            f"pass each sample's length (its number of tokens, frames, ...)"
        )
    return array


def padding_stats(lengths: Any, batches: Iterable[Sequence[int] | np.ndarray]) -> PaddingStats:
    """The padding of ``batches`` (of indices into ``lengths``) once each is padded to its
    longest sample: e.g. ``padding_stats(lengths, sampler)`` for a batch sampler's next epoch
    (iterating it, which moves a seeded sampler on to the epoch after; a BucketBatchSampler's
    own :meth:`~BucketBatchSampler.padding_stats` does not), or ``padding_stats(lengths,
    BatchSampler(RandomSampler(lengths), 32, False))`` for random batching."""
    array = _check_lengths(lengths)
    count = samples = 0
    tokens = padded = 0.0
    for batch in batches:
        values = array[np.asarray(batch, dtype=np.int64)]
        if len(values) == 0:
            continue
        count += 1
        samples += len(values)
        tokens += float(values.sum())
        padded += float(values.max()) * len(values)
    if array.dtype.kind in "iu":
        return PaddingStats(count, samples, int(tokens), int(padded))
    return PaddingStats(count, samples, tokens, padded)


class BucketOrder(_SeededSampler):
    """The epoch order of a :class:`BucketBatchSampler`: its batches one after another."""

    def __init__(
        self, lengths: np.ndarray, batch_size: int, pool: int, drop_last: bool, seed: int | None
    ) -> None:
        super().__init__(None, seed)
        self.lengths = lengths
        self.batch_size = batch_size
        self.pool = pool
        self.drop_last = drop_last

    def __len__(self) -> int:
        return len(self.lengths)

    def _compute_order(self, epoch: int) -> np.ndarray:
        return self.order(epoch, self.pool)

    def order(self, epoch: int, pool: int) -> np.ndarray:
        """Epoch ``epoch``'s order with pools of ``pool`` batches (``pool=1``: the same
        shuffle cut into batches without sorting, the random batching it is compared with)."""
        n, size = len(self.lengths), self.batch_size
        rng = self._rng(epoch)
        shuffled = rng.permutation(n).astype(np.int64, copy=False)
        full = n // size * size
        # With drop_last the samples dropped are a random few, not the longest of a pool.
        pooled = shuffled[:full] if self.drop_last else shuffled
        pools = np.arange(len(pooled)) // (pool * size)
        grouped = pooled[np.lexsort((self.lengths[pooled], pools))]  # stable: ties stay random
        rows = grouped[:full].reshape(-1, size)
        rows = rows[rng.permutation(len(rows))]
        rest = shuffled[full:] if self.drop_last else grouped[full:]
        return np.concatenate([rows.ravel(), rest])


class BucketBatchSampler(BatchSampler):
    """Batches of indices of similar length, for ``DataLoader(batch_sampler=...)``.

    ``lengths[i]`` is sample ``i``'s length (tokens, frames: any non-negative number). Each
    epoch is a pure function of ``(seed, epoch)``: the indices are shuffled, cut into pools of
    ``pool`` batches, sorted by length within each pool and cut into batches of ``batch_size``,
    and the batches are shuffled (see the module's notes). Every index appears once per epoch;
    the ``len(lengths) % batch_size`` left over form one short last batch, which ``drop_last``
    drops. The epoch advances at each iteration, as RandomSampler's does; ``set_epoch(e)``
    fixes it. ``seed=None`` picks a fresh seed, which the saved state carries.

    ``len()`` is exact, and ``DataLoader.state_dict()`` resumes it mid-epoch exactly, with any
    ``num_workers``. :meth:`padding_stats` reports an epoch's padding, and
    :meth:`random_padding_stats` that of random batches for comparison.
    """

    sampler: BucketOrder

    def __init__(
        self,
        lengths: Sequence[float] | np.ndarray,
        batch_size: int,
        *,
        pool: int = 100,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> None:
        array = _check_lengths(lengths)
        checked_pool = check_int(
            pool,
            "pool",
            minimum=1,
            fix="pass the number of batches sorted together, e.g. pool=100 (more: less "
            "padding, less random batches; 1: no bucketing)",
        )
        # BatchSampler checks batch_size and drop_last (torch's messages) before they are used.
        super().__init__(range(0), batch_size, drop_last)
        self.sampler = BucketOrder(array, self.batch_size, checked_pool, self.drop_last, seed)

    @classmethod
    def from_dataset(
        cls,
        dataset: Sized,
        batch_size: int,
        length_fn: Callable[[Any], float] = len,
        **options: Any,
    ) -> BucketBatchSampler:
        """A BucketBatchSampler over ``length_fn(dataset[i])`` for every ``i``: this reads
        every sample once, so prefer passing stored lengths for a large dataset."""
        check_sized(dataset, "dataset")
        if not callable(length_fn):
            raise TypeError(
                f"length_fn should be a callable taking a sample and returning its length, "
                f"but got length_fn={length_fn!r}; pass e.g. length_fn=lambda s: len(s['ids'])"
            )
        lengths = [length_fn(dataset[i]) for i in range(len(dataset))]  # type: ignore[index]
        return cls(lengths, batch_size, **options)

    @property
    def lengths(self) -> np.ndarray:
        return self.sampler.lengths

    @property
    def pool(self) -> int:
        return self.sampler.pool

    @property
    def seed(self) -> int:
        """The seed of the epoch orders: the one given, or the fresh one picked."""
        return self.sampler._base_seed

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch`` (see EpochSampler.set_epoch)."""
        self.sampler.set_epoch(epoch)

    def epoch_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """The batches of ``epoch`` (default: the next one), without moving the sampler."""
        return self._cut(self.sampler.epoch_order(self._epoch(epoch)))

    def padding_stats(self, epoch: int | None = None) -> PaddingStats:
        """The padding of ``epoch``'s batches (default: the next epoch's)."""
        return padding_stats(self.lengths, self.epoch_batches(epoch))

    def random_padding_stats(self, epoch: int | None = None) -> PaddingStats:
        """The padding of random batches of the same size: ``epoch``'s shuffle cut into
        batches without sorting by length (``pool=1``), the baseline bucketing improves on."""
        order = self.sampler.order(self._epoch(epoch), 1)
        return padding_stats(self.lengths, self._cut(order))

    def _epoch(self, epoch: int | None) -> int:
        if epoch is None:
            return self.sampler.epoch
        return check_int(epoch, "epoch", minimum=0)

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        size = self.batch_size
        end = len(order) // size * size if self.drop_last else len(order)
        return [order[start : start + size] for start in range(0, end, size)]

    def __repr__(self) -> str:
        return (
            f"BucketBatchSampler({len(self.lengths)} lengths, batch_size={self.batch_size}, "
            f"pool={self.pool}, seed={self.seed}, drop_last={self.drop_last})"
        )
