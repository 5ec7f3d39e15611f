"""What the map-style datasets share: index checks, and fetching a batch through ``__getitems__``.

A float is never truncated to a row, a bool never taken for 0 or 1, and an index out of range
names the index, the size and the valid range, whichever dataset it reached.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ladle.seeding import each_sample

__all__ = [
    "as_index_array",
    "batched",
    "check_index",
    "fetch_nested",
    "first_out_of_range",
    "getitems_per_sample",
    "out_of_range",
]

_INT64_MAX = np.iinfo(np.int64).max


def out_of_range(index: object, size: int, owner: str) -> IndexError:
    return IndexError(
        f"index {index} is out of range for {owner} of size {size}; "
        f"valid indices are {-size}..{size - 1}"
    )


def check_index(
    index: Any, size: int, owner: str, *, type_error: type[Exception] = TypeError, fix: str = ""
) -> int:
    """One integer index (an int, a NumPy or torch integer; not a bool) made non-negative;
    ``type_error`` for anything else, IndexError when it is out of range."""
    try:
        if isinstance(index, bool | np.bool_):
            raise TypeError
        number = operator.index(index)
    except TypeError:
        hint = fix or f"pass an int in {-size}..{size - 1}"
        raise type_error(
            f"{owner} index should be an int, but got index={index!r:.60} "
            f"({type(index).__name__}); {hint}"
        ) from None
    if not -size <= number < size:
        raise out_of_range(number, size, owner)
    return number + size if number < 0 else number


def as_index_array(
    indices: Sequence[int] | np.ndarray, owner: str, name: str = "indices"
) -> np.ndarray:
    """``indices`` as a 1-D int64 array; floats, bools and strings are refused, not cast."""
    if type(indices) is np.ndarray and indices.dtype == np.int64 and indices.ndim == 1:
        return indices
    try:
        array = np.asarray(indices)
    except (TypeError, ValueError):  # ragged nesting, or a type NumPy cannot hold
        array = np.asarray(None)
    if array.ndim != 1:
        raise TypeError(
            f"{owner} {name} should be a sequence of ints, but got {name}={indices!r:.60} "
            f"({type(indices).__name__}); pass a list, range or 1-D integer array"
        )
    if not array.size:
        return np.empty(0, np.int64)
    if array.dtype.kind not in "iu":
        hint = "np.flatnonzero(mask) for a boolean mask" if array.dtype.kind == "b" else "ints"
        raise TypeError(
            f"{owner} {name} should be integers, but got an array of {array.dtype} "
            f"({name}={indices!r:.60}); pass {hint}"
        )
    if array.dtype.kind == "u" and array.max() > _INT64_MAX:
        raise IndexError(f"{owner} {name} hold {array.max()}, out of range for any dataset")
    return array.astype(np.int64, copy=False)


def first_out_of_range(indices: np.ndarray, size: int) -> int:
    bad = indices[(indices < -size) | (indices >= size)]
    return int(bad[0]) if len(bad) else int(indices[0])


def batched(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a ``__getitems__`` that gathers a batch without calling ``__getitem__``.

    A subclass that overrides ``__getitem__`` but not ``__getitems__`` would have its
    ``__getitem__`` bypassed by such a method, so :class:`Dataset` gives that subclass
    :func:`getitems_per_sample` instead (see ``Dataset.__init_subclass__``).
    """
    method.__ladle_batched__ = True  # type: ignore[attr-defined]
    return method


def getitems_per_sample(self: Any, indices: Sequence[int] | np.ndarray) -> list[Any]:
    """``[self[i] for i in indices]``, with ``sample_rng()`` keyed to each sample in turn."""
    listed = indices.tolist() if isinstance(indices, np.ndarray) else list(indices)
    return [self[index] for index in each_sample(listed)]


def fetch_nested(
    dataset: Any, indices: np.ndarray, keys: Sequence[int] | np.ndarray, owner: str, name: object
) -> Any:
    """The samples of ``dataset`` at ``indices``: one ``__getitems__`` call where it has one,
    else one ``dataset[i]`` each, with ``sample_rng()`` keyed by ``keys`` (the indices the
    loader asked ``owner`` for), as the loader's per-sample path keys them."""
    getitems = getattr(dataset, "__getitems__", None)
    if getitems is None:
        parents = indices.tolist()
        listed = keys.tolist() if isinstance(keys, np.ndarray) else keys
        return [dataset[parent] for parent, _ in zip(parents, each_sample(listed), strict=True)]
    got = getitems(indices if getattr(dataset, "accepts_index_array", False) else indices.tolist())
    count = len(got) if hasattr(got, "__len__") else None
    if count != len(indices):
        raise ValueError(
            f"Nested dataset's output size mismatch. Expected {len(indices)}, got {count}: "
            f"{owner} asked dataset {name!r} ({type(dataset).__name__}) for {len(indices)} "
            f"samples, and its __getitems__ returned {count}; make it return one sample per index"
        )
    return got
