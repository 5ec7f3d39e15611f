"""random_split: non-overlapping random subsets of a dataset, by lengths or fractions."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from ladle.dataset import Dataset, Subset, check_map_style
from ladle.seeding import check_seed, draw_seed, fresh_seed, keyed_rng

__all__ = ["random_split"]

T = TypeVar("T")


def _is_count(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _split_lengths(total: int, lengths: Sequence[int | float]) -> list[int]:
    for where, length in enumerate(lengths):
        if isinstance(length, bool | np.bool_) or not isinstance(length, numbers.Real):
            raise TypeError(
                f"random_split lengths should be ints (counts) or floats (fractions summing to "
                f"1), but got lengths[{where}]={length!r} ({type(length).__name__})"
            )
        if math.isnan(length) or math.isinf(length):
            raise ValueError(
                f"random_split lengths should be finite, but got lengths[{where}]={length!r}; "
                f"pass counts summing to {total} or fractions summing to 1"
            )
    # Unlike torch, all-int lengths are always counts: [1, 0] is not read as fractions.
    integral = all(map(_is_count, lengths))
    if not integral and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = []
        for where, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(
                    f"random_split fraction at index {where} is {fraction}; fractions must "
                    f"lie between 0 and 1 and sum to 1"
                )
            sizes.append(math.floor(total * fraction))
        for i in range(total - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for where, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"random_split: split at index {where} is empty", UserWarning, stacklevel=3
                )
        return sizes
    for where, length in enumerate(lengths):
        if not _is_count(length) or length < 0:
            raise ValueError(
                f"random_split lengths must be non-negative ints or fractions summing to 1, "
                f"but lengths[{where}]={length!r}"
            )
    if sum(lengths) != total:
        raise ValueError(
            f"random_split lengths {list(lengths)} sum to {sum(lengths)}, but the dataset has "
            f"{total} samples; make them sum to {total} or pass fractions summing to 1"
        )
    return [int(length) for length in lengths]


def random_split(
    dataset: Dataset[T],
    lengths: Sequence[int | float],
    generator: Any = None,
    *,
    seed: int | None = None,
) -> list[Subset[T]]:
    """Split ``dataset`` into non-overlapping random subsets of the given lengths or fractions.

    The permutation comes from ``seed`` (reproducible), else from ``generator`` (a NumPy or torch
    generator, advanced once), else from fresh entropy.
    """
    if seed is not None and generator is not None:
        raise ValueError("random_split takes seed or generator, not both; pass one of them")
    check_map_style(dataset, "dataset", "random_split", sized=True)
    if isinstance(lengths, str | bytes) or not isinstance(lengths, Sequence | np.ndarray):
        raise TypeError(
            f"random_split lengths should be a sequence of counts or fractions, but got "
            f"lengths={lengths!r:.60} ({type(lengths).__name__}); e.g. [800, 200] or [0.8, 0.2]"
        )
    total = len(dataset)  # type: ignore[arg-type]
    sizes = _split_lengths(total, list(lengths))
    if seed is not None:
        base = check_seed(seed)
    elif generator is not None:
        base = draw_seed(generator)
    else:
        base = fresh_seed()
    permutation = keyed_rng(base).permutation(total)
    order = permutation.tolist()
    subsets = []
    offset = 0
    for size in sizes:
        subset = Subset.__new__(Subset)  # indices known to be valid: skip checking them again
        subset.dataset = dataset
        subset._indices = order[offset : offset + size]
        subset._index_array = permutation[offset : offset + size]
        subsets.append(subset)
        offset += size
    return subsets
