"""``ClassBalancedSampler``: draw the classes of a labelled dataset in chosen proportions.

Built from the label of each sample. Each class gets a share of the draws, equal by default
(so every sample is weighted ``1 / count(its class)``), or as given by ``class_weights``;
within a class, samples are drawn uniformly. With replacement the draws are independent; without
it each class gets a fixed quota of distinct samples (its share of ``num_samples``, rounded),
so the class counts are exact and no sample comes twice in an epoch. The order is a pure
function of (seed, epoch), and the position two integers, as for RandomSampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ladle.random_sampler import _SeededSampler
from ladle.sampler import check_flag, check_positive_int
from ladle.validation import check_number

__all__ = ["ClassBalancedSampler"]


def _check_labels(labels: Any) -> np.ndarray:
    if isinstance(labels, str | bytes) or not hasattr(labels, "__len__"):
        raise TypeError(
            f"labels should be a 1-d sequence of class labels (ints or strings), one per "
            f"sample, but got labels={labels!r:.60} ({type(labels).__name__})"
        )
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"labels should be 1-d, one class label per sample, but got an array of shape "
            f"{array.shape}; for one-hot labels pass labels.argmax(axis=1)"
        )
    if array.size == 0:
        raise ValueError("labels should hold one label per sample, but got labels=[] (empty)")
    kind = array.dtype.kind
    if kind == "O" and all(isinstance(v, str) for v in array.tolist()):
        array = array.astype(str)
        kind = "U"
    if kind not in "iuUS":
        raise TypeError(
            f"labels should be ints or strings, but got labels of dtype {array.dtype} "
            f"(first: {array[0]!r}); convert them, e.g. labels.astype(int)"
        )
    return array


class ClassBalancedSampler(_SeededSampler):
    """``num_samples`` indices per epoch, each class drawn with its share of the draws.

    ``labels``: one class label per sample (ints or strings; 1-d). ``class_weights``: the
    relative share of each class in the draws, as a mapping ``{class: weight}`` (classes it
    does not name weigh 1) or a sequence with one weight per class of :attr:`classes` (the
    sorted distinct labels); the default gives every class an equal share. A class of weight 0
    is never drawn. ``num_samples`` defaults to the number of samples (with replacement).

    ``replacement=True``: each draw picks a class with probability ∝ its weight, then one of its
    samples uniformly, so rare classes are oversampled. ``replacement=False``: each class gets
    a quota, its share of ``num_samples`` (rounded by largest remainder), filled with distinct
    samples drawn uniformly from it, all shuffled together; a quota larger than the class is a
    ValueError that says which ``num_samples`` fits. There ``num_samples`` defaults to the
    largest epoch the smallest class (for its share) allows, ``floor(min(size / share))``: with
    equal shares, every class undersampled to the size of the smallest.

    :meth:`expected_class_frequencies` says what share of the draws each class gets;
    :meth:`class_counts` counts one epoch's actual draw.
    """

    def __init__(
        self,
        labels: Sequence[Any] | np.ndarray,
        num_samples: int | None = None,
        replacement: bool = True,
        class_weights: Mapping[Any, float] | Sequence[float] | None = None,
        *,
        seed: int | None = None,
        generator: Any = None,
    ) -> None:
        self.labels = _check_labels(labels)
        self.replacement = check_flag(replacement, "replacement")
        self.classes, inverse, counts = np.unique(
            self.labels, return_inverse=True, return_counts=True
        )
        self._inverse = inverse.reshape(-1).astype(np.int64)
        self.class_sizes = counts.astype(np.int64)
        weights = self._class_weights(class_weights)
        weights = weights / weights.max()  # no overflow summing weights near 1e308
        self._frequencies = weights / weights.sum()
        # the samples of each class, together: class c's are _members[_firsts[c]:][:size]
        self._members = np.argsort(self._inverse, kind="stable").astype(np.int64)
        self._firsts = (np.cumsum(self.class_sizes) - self.class_sizes).astype(np.int64)
        if num_samples is None:
            num_samples = len(self.labels)
            if not self.replacement:  # as many as the quotas allow, at most every sample
                num_samples = min(num_samples, self._most_without_replacement())
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self._quotas = None if self.replacement else self._quotas_for(self.num_samples)
        super().__init__(generator, seed)

    def _class_weights(self, given: Any) -> np.ndarray:
        count = len(self.classes)
        if given is None:
            return np.ones(count)
        names = [c.item() for c in self.classes]
        if isinstance(given, Mapping):
            weights = np.ones(count)
            position = {name: k for k, name in enumerate(names)}
            for key, value in given.items():
                if key not in position:
                    raise ValueError(
                        f"class_weights names class {key!r}, which no sample has (the classes "
                        f"are {names if count <= 10 else [*names[:10], '...']}); remove it, or "
                        f"check that the keys have the labels' type"
                    )
                weights[position[key]] = check_number(
                    value, f"class_weights[{key!r}]", minimum=0, fix="pass a weight >= 0"
                )
        elif isinstance(given, str | bytes) or not isinstance(given, Sequence | np.ndarray):
            raise TypeError(
                f"class_weights should be a mapping {{class: weight}} or one weight per class, "
                f"but got class_weights={given!r:.60} ({type(given).__name__})"
            )
        else:
            if len(given) != count:
                raise ValueError(
                    f"class_weights has {len(given)} weights but the labels have {count} "
                    f"classes ({names if count <= 10 else [*names[:10], '...']}); pass one "
                    f"weight per class in that order, or a mapping {{class: weight}}"
                )
            weights = np.array(
                [
                    check_number(value, f"class_weights[{k}]", minimum=0, fix="pass a weight >= 0")
                    for k, value in enumerate(given)
                ]
            )
        if not weights.any():
            raise ValueError(
                "class_weights should give at least one class a weight > 0, but all are 0; "
                "pass a positive weight for the classes to draw"
            )
        return weights

    def _most_without_replacement(self) -> int:
        """The ``num_samples`` that the smallest class, for its share, allows: every class's
        exact share of it is at most its size (rounding may fit a few more)."""
        drawn = self._frequencies > 0
        with np.errstate(over="ignore"):  # a share of 1e-308 allows an infinite epoch
            allowed = self.class_sizes[drawn] / self._frequencies[drawn]
        return int(np.floor(np.min(allowed) + 1e-9))

    def _too_many(self, num_samples: int, k: int, needed: int) -> ValueError:
        return ValueError(
            f"num_samples={num_samples} without replacement needs {needed} distinct samples of "
            f"class {self.classes[k].item()!r}, which has {self.class_sizes[k]}; lower "
            f"num_samples to at most {self._most_without_replacement()} (every class's share "
            f"fits there), or set replacement=True"
        )

    def _quotas_for(self, num_samples: int) -> np.ndarray:
        """Each class's share of ``num_samples``, rounded down, then the draws left over one
        each to the classes with the largest remainders that have samples to spare."""
        exact = num_samples * self._frequencies
        quotas: np.ndarray = np.floor(exact + 1e-9).astype(np.int64)
        over = np.flatnonzero(quotas > self.class_sizes)
        if over.size:
            raise self._too_many(num_samples, int(over[0]), int(quotas[over[0]]))
        left = num_samples - int(quotas.sum())
        if left > 0:
            remainder = exact - quotas
            share = remainder > 1e-9
            room = np.flatnonzero(share & (quotas < self.class_sizes))
            if len(room) < left:
                k = int(np.flatnonzero(share & (quotas >= self.class_sizes))[0])
                raise self._too_many(num_samples, k, int(quotas[k]) + 1)
            ranked = room[np.argsort(-remainder[room], kind="stable")]  # ties: the first class
            quotas[ranked[:left]] += 1
        return quotas

    def __len__(self) -> int:
        return self.num_samples

    def expected_class_frequencies(self) -> dict[Any, float]:
        """``{class: share of the draws}``: the probability that a draw is of that class with
        replacement; the quota over ``num_samples`` (exact in every epoch) without it."""
        quotas = self._quotas
        shares = self._frequencies if quotas is None else quotas / self.num_samples
        return {c.item(): float(f) for c, f in zip(self.classes, shares, strict=True)}

    def class_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """``{class: draws}`` in the order of ``epoch`` (default: the epoch the sampler is at,
        the one its next iteration yields or the one it is yielding)."""
        if epoch is None:
            epoch = self.epoch if self._running is None else self._running[0]
        order = self.epoch_order(epoch)
        counts = np.bincount(self._inverse[order], minlength=len(self.classes))
        return {c.item(): int(n) for c, n in zip(self.classes, counts, strict=True)}

    def _compute_order(self, epoch: int) -> np.ndarray:
        rng = self._rng(epoch)
        if self._quotas is None:
            drawn = rng.choice(len(self.classes), size=self.num_samples, p=self._frequencies)
            within = rng.integers(0, self.class_sizes[drawn])
            picked: np.ndarray = self._members[self._firsts[drawn] + within]
            return picked
        # one random key per sample; each class keeps its quota of smallest keys
        keys = rng.random(len(self.labels))
        ranked = np.lexsort((keys, self._inverse))  # by class, then key
        rank = np.arange(len(ranked)) - self._firsts[self._inverse[ranked]]
        chosen = ranked[rank < self._quotas[self._inverse[ranked]]]
        return rng.permutation(chosen).astype(np.int64, copy=False)
