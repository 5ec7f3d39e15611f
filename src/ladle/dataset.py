"""Datasets: the map-style and iterable-style bases, their combinators, and random_split.

Map-style datasets may define ``__getitems__(indices)`` to fetch a whole batch at once; the loader
calls it with a list of ints (torch's contract), or with an int64 NumPy array when the class sets
``accepts_index_array = True``, which saves converting indices on the hot path.
"""

from __future__ import annotations

import bisect
import math
import operator
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from ladle.gathered import GatheredBatch
from ladle.seeding import check_seed, draw_seed, fresh_seed, keyed_rng

__all__ = [
    "ChainDataset",
    "ConcatDataset",
    "Dataset",
    "IterableDataset",
    "StackDataset",
    "Subset",
    "TensorDataset",
    "random_split",
]

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class Dataset(Generic[T_co]):
    """A map-style dataset: ``__getitem__(index)`` and, usually, ``__len__``."""

    #: Set on classes whose ``__getitems__`` takes an int64 NumPy array as well as a list.
    accepts_index_array: bool = False

    def __getitem__(self, index: int) -> T_co:
        raise NotImplementedError(
            f"{type(self).__name__} must implement __getitem__(index) to be a map-style dataset"
        )

    def __add__(self, other: Dataset[T_co]) -> ConcatDataset[T_co]:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co], Iterable[T_co]):
    """An iterable-style dataset: ``__iter__`` yields the samples.

    **Resume protocol.** To let ``DataLoader.state_dict()`` save a position inside an epoch,
    also define ``iter_from(position)``: the same stream as ``iter(self)``, from its sample
    ``position`` (0-based) on, without reading the samples before it where the storage allows.
    With workers, ``position`` counts the samples of the calling worker's own stream (the one
    ``__iter__`` yields under that ``get_worker_info()``), so a stream split across workers
    resumes with the same number of workers. Positions between epochs need no protocol::

        class Lines(ladle.IterableDataset):
            def __iter__(self):
                return self.iter_from(0)

            def iter_from(self, position):
                with open(self.path) as lines:
                    yield from itertools.islice(lines, position, None)

    Inside ``__iter__``, ``ladle.sample_rng()`` is keyed by the position in the stream.
    """

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(
            f"{type(self).__name__} must implement __iter__() to be an iterable dataset"
        )

    def __add__(self, other: Dataset[T_co]) -> ChainDataset:  # type: ignore[override]
        return ChainDataset([self, other])


def _out_of_range(index: object, size: int, owner: str) -> IndexError:
    return IndexError(
        f"index {index} is out of range for {owner} of size {size}; "
        f"valid indices are {-size}..{size - 1}"
    )


def _check_index(index: int, size: int, owner: str) -> int:
    if not -size <= index < size:
        raise _out_of_range(index, size, owner)
    return index + size if index < 0 else index


def _as_index_array(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(indices, np.ndarray) and indices.dtype == np.int64:
        return indices
    return np.asarray(indices, dtype=np.int64).reshape(-1)


def _first_out_of_range(indices: np.ndarray, size: int) -> int:
    bad = indices[(indices < -size) | (indices >= size)]
    return int(bad[0]) if len(bad) else int(indices[0])


def _gather(array: Any, indices: np.ndarray) -> Any:
    if isinstance(array, np.ndarray):
        return array[indices]
    import torch

    return array[torch.from_numpy(indices)]


class TensorDataset(Dataset[tuple[Any, ...]]):
    """Samples are the rows of equally long arrays (NumPy arrays or torch tensors).

    ``__getitems__`` gathers a whole batch with one fancy-index per array.
    """

    accepts_index_array = True

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one array, e.g. TensorDataset(x, y)")
        for position, tensor in enumerate(tensors):
            if not hasattr(tensor, "shape") or len(tensor.shape) == 0:
                raise TypeError(
                    f"TensorDataset argument {position} should be an array or tensor with at "
                    f"least one dimension, but got {type(tensor).__name__}"
                )
        self.tensors = tensors
        self._size = int(tensors[0].shape[0])
        for position, tensor in enumerate(tensors[1:], start=1):
            if int(tensor.shape[0]) != self._size:
                raise ValueError(
                    f"TensorDataset arrays must have the same length: argument 0 has "
                    f"{self._size} rows but argument {position} has {int(tensor.shape[0])}"
                )

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        try:
            position = operator.index(index)
        except TypeError:  # slices, lists and arrays index every array, as in torch
            if isinstance(index, list | np.ndarray):
                return self.__getitems__(index).columns  # type: ignore[no-any-return]
            return tuple(tensor[index] for tensor in self.tensors)
        position = _check_index(position, self._size, "TensorDataset")
        return tuple(tensor[position] for tensor in self.tensors)

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> GatheredBatch:
        idx = _as_index_array(indices)
        try:
            columns = tuple(_gather(tensor, idx) for tensor in self.tensors)
        except IndexError:
            bad = _first_out_of_range(idx, self._size)
            raise _out_of_range(bad, self._size, "TensorDataset") from None
        return GatheredBatch(columns, len(idx))


class Subset(Dataset[T_co]):
    """The samples of ``dataset`` at ``indices``, in that order."""

    accepts_index_array = True

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices
        self._index_array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int | list[int]) -> Any:
        if isinstance(index, list):  # forwarded in one call, as torch does
            parents = [self.indices[_check_index(i, len(self), "Subset")] for i in index]
            return self.dataset[parents]  # type: ignore[index]
        index = _check_index(index, len(self.indices), "Subset")
        return self.dataset[self.indices[index]]

    def _parent_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        if self._index_array is None:
            self._index_array = _as_index_array(self.indices)
        idx = _as_index_array(indices)
        try:
            parent: np.ndarray = self._index_array[idx]
        except IndexError:
            bad = _first_out_of_range(idx, len(self._index_array))
            raise _out_of_range(bad, len(self._index_array), "Subset") from None
        return parent

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        parent = self._parent_indices(indices)
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is None:
            return [self.dataset[i] for i in parent.tolist()]
        if getattr(self.dataset, "accepts_index_array", False):
            return getitems(parent)
        return getitems(parent.tolist())


class ConcatDataset(Dataset[T_co]):
    """Map-style datasets one after another; negative indices count from the end."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets: list[Dataset[Any]] = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset, but got an empty iterable")
        for position, dataset in enumerate(self.datasets):
            if isinstance(dataset, IterableDataset):
                raise TypeError(
                    f"ConcatDataset joins map-style datasets, but dataset {position} is an "
                    f"IterableDataset ({type(dataset).__name__}); use ChainDataset for those"
                )
        self.cumulative_sizes: list[int] = []
        total = 0
        for dataset in self.datasets:
            total += len(dataset)  # type: ignore[arg-type]
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> T_co:
        index = _check_index(index, len(self), "ConcatDataset")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]  # type: ignore[no-any-return]


class ChainDataset(IterableDataset[Any]):
    """Iterable datasets one after another, chained lazily."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets = list(datasets)

    def __iter__(self) -> Iterator[Any]:
        for position, dataset in enumerate(self.datasets):
            if not isinstance(dataset, IterableDataset):
                raise TypeError(
                    f"ChainDataset only chains IterableDatasets, but dataset {position} is "
                    f"{type(dataset).__name__}; use ConcatDataset for map-style datasets"
                )
            yield from dataset

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)  # type: ignore[arg-type, misc]


class StackDataset(Dataset[Any]):
    """Zips equally long datasets: ``StackDataset(a, b)`` gives tuples, ``(x=a)`` dicts."""

    accepts_index_array = True

    def __init__(self, *args: Dataset[Any], **kwargs: Dataset[Any]) -> None:
        if args and kwargs:
            raise ValueError(
                "StackDataset takes datasets either positionally (samples are tuples) or by "
                "keyword (samples are dicts), not both"
            )
        if not args and not kwargs:
            raise ValueError("StackDataset needs at least one dataset")
        self.datasets: tuple[Dataset[Any], ...] | dict[str, Dataset[Any]]
        self.datasets = args if args else dict(kwargs)
        named = enumerate(args) if args else kwargs.items()
        lengths = {name: len(dataset) for name, dataset in named}  # type: ignore[arg-type]
        self._length = next(iter(lengths.values()))
        for name, length in lengths.items():
            if length != self._length:
                first = next(iter(lengths))
                raise ValueError(
                    f"StackDataset datasets must have the same length: dataset {first!r} has "
                    f"{self._length} samples but dataset {name!r} has {length}"
                )

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Any:
        if isinstance(self.datasets, dict):
            return {key: dataset[index] for key, dataset in self.datasets.items()}
        return tuple(dataset[index] for dataset in self.datasets)

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> GatheredBatch:
        idx = _as_index_array(indices)
        as_list = idx.tolist()

        def fetch(dataset: Dataset[Any]) -> Any:
            getitems = getattr(dataset, "__getitems__", None)
            if getitems is None:
                return [dataset[i] for i in as_list]
            if getattr(dataset, "accepts_index_array", False):
                return getitems(idx)
            return list(getitems(as_list))

        columns: Any
        if isinstance(self.datasets, dict):
            columns = {key: fetch(dataset) for key, dataset in self.datasets.items()}
        else:
            columns = tuple(fetch(dataset) for dataset in self.datasets)
        return GatheredBatch(columns, len(idx))


def _split_lengths(total: int, lengths: Sequence[int | float]) -> list[int]:
    # Unlike torch, all-int lengths are always counts: [1, 0] is not read as fractions.
    integral = all(isinstance(n, int | np.integer) for n in lengths)
    if not integral and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = []
        for position, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(
                    f"random_split fraction at index {position} is {fraction}; fractions must "
                    f"lie between 0 and 1 and sum to 1"
                )
            sizes.append(math.floor(total * fraction))
        for i in range(total - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for position, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"random_split: split at index {position} is empty", UserWarning, stacklevel=3
                )
        return sizes
    for position, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
            raise ValueError(
                f"random_split lengths must be non-negative ints or fractions summing to 1, "
                f"but lengths[{position}]={length!r}"
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
    total = len(dataset)  # type: ignore[arg-type]
    sizes = _split_lengths(total, lengths)
    if seed is not None:
        base = check_seed(seed)
    elif generator is not None:
        base = draw_seed(generator)
    else:
        base = fresh_seed()
    order = keyed_rng(base).permutation(total).tolist()
    subsets = []
    offset = 0
    for size in sizes:
        subsets.append(Subset(dataset, order[offset : offset + size]))
        offset += size
    return subsets
