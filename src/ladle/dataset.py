"""Datasets: the map-style and iterable-style bases, their combinators, and random_split.

Map-style datasets may define ``__getitems__(indices)`` to fetch a whole batch at once; the loader
calls it with a list of ints (torch's contract), or with an int64 NumPy array when the class sets
``accepts_index_array = True``, which saves converting indices on the hot path.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from ladle.errors import ArgumentError, ArgumentTypeError
from ladle.gathered import GatheredBatch
from ladle.indexing import (
    as_index_array,
    batched,
    check_index,
    fetch_nested,
    first_out_of_range,
    getitems_per_sample,
    out_of_range,
)

__all__ = [
    "ChainDataset",
    "ConcatDataset",
    "Dataset",
    "IterableDataset",
    "StackDataset",
    "Subset",
    "TensorDataset",
    "is_iterable_dataset",
]

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class Dataset(Generic[T_co]):
    """A map-style dataset: ``__getitem__(index)`` and, usually, ``__len__``."""

    #: Set on classes whose ``__getitems__`` takes an int64 NumPy array as well as a list.
    accepts_index_array: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass that overrides __getitem__ but inherits a @batched __getitems__ (written
        # for another __getitem__) gets its samples from its own __getitem__, one by one.
        super().__init_subclass__(**kwargs)
        owner = next((c for c in cls.__mro__ if "__getitems__" in vars(c)), None)
        if owner is None or owner is cls:
            return
        inherited = vars(owner)["__getitems__"]
        if getattr(inherited, "__ladle_batched__", False) and cls.__getitem__ is not getattr(
            owner, "__getitem__", None
        ):
            cls.__getitems__ = getitems_per_sample  # type: ignore[attr-defined]

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


def is_iterable_dataset(dataset: Any) -> bool:
    """``dataset`` is iterable-style: a ladle IterableDataset, or one of torch's (which
    Hugging Face's ``datasets.IterableDataset`` becomes once torch is imported)."""
    if isinstance(dataset, IterableDataset):
        return True
    torch_data = sys.modules.get("torch.utils.data")
    return torch_data is not None and isinstance(dataset, torch_data.IterableDataset)


def _gather(array: Any, indices: np.ndarray) -> Any:
    if isinstance(array, np.ndarray):
        return array[indices]
    import torch

    return array[torch.from_numpy(indices)]


def check_map_style(dataset: Any, name: str, owner: str, *, sized: bool = False) -> None:
    if is_iterable_dataset(dataset):
        raise TypeError(
            f"{owner} takes map-style datasets, but {name} is an IterableDataset "
            f"({type(dataset).__name__}); use ChainDataset for iterable datasets"
        )
    needs = ("__getitem__", "__len__") if sized else ("__getitem__",)
    if not all(hasattr(type(dataset), method) for method in needs):
        what = "with __getitem__ and __len__" if sized else "with __getitem__"
        raise TypeError(
            f"{owner} {name} should be a map-style dataset {what}, but got "
            f"{name}={dataset!r:.60} ({type(dataset).__name__}); pass a ladle.Dataset, or any "
            f"sequence such as a list"
        )


def _check_datasets(datasets: Any, owner: str) -> list[Any]:
    if isinstance(datasets, str | bytes) or not isinstance(datasets, Iterable):
        raise TypeError(
            f"{owner} datasets should be an iterable of datasets, but got "
            f"datasets={datasets!r:.60} ({type(datasets).__name__}); pass a list, e.g. "
            f"{owner}([a, b])"
        )
    return list(datasets)


class TensorDataset(Dataset[tuple[Any, ...]]):
    """Samples are the rows of equally long arrays (NumPy arrays or torch tensors).

    ``__getitems__`` gathers a whole batch with one fancy-index per array.
    """

    accepts_index_array = True

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one array, e.g. TensorDataset(x, y)")
        for position_, tensor in enumerate(tensors):
            if not hasattr(tensor, "shape") or len(tensor.shape) == 0:
                raise TypeError(
                    f"TensorDataset argument {position_} should be an array or tensor with at "
                    f"least one dimension, but got {type(tensor).__name__} {tensor!r:.60}; "
                    f"convert it with np.asarray, or np.atleast_1d for a scalar"
                )
        self.tensors = tensors
        self._size = int(tensors[0].shape[0])
        for position_, tensor in enumerate(tensors[1:], start=1):
            if int(tensor.shape[0]) != self._size:
                raise ArgumentError(
                    f"Size mismatch between tensors: TensorDataset arrays must have the same "
                    f"length, but argument 0 has {self._size} rows and argument {position_} "
                    f"has {int(tensor.shape[0])}"
                )

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        if isinstance(index, list) or (
            isinstance(index, np.ndarray) and index.ndim and index.dtype.kind != "b"
        ):
            return TensorDataset.__getitems__(self, index).columns  # type: ignore[no-any-return]
        several = getattr(index, "ndim", 0) > 0  # a boolean mask, or a torch tensor of indices
        if several or isinstance(index, slice | tuple) or index is None or index is Ellipsis:
            return tuple(tensor[index] for tensor in self.tensors)  # as in torch
        # one row; a float or a bool is refused with torch's IndexError, never truncated
        row = check_index(index, self._size, "TensorDataset", type_error=IndexError)
        return tuple(tensor[row] for tensor in self.tensors)

    @batched
    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> GatheredBatch:
        idx = as_index_array(indices, "TensorDataset")
        try:
            columns = tuple(_gather(tensor, idx) for tensor in self.tensors)
        except IndexError:
            bad = first_out_of_range(idx, self._size)
            raise out_of_range(bad, self._size, "TensorDataset") from None
        return GatheredBatch(columns, len(idx))


class Subset(Dataset[T_co]):
    """The samples of ``dataset`` at ``indices``, in that order.

    ``indices`` is a sequence of ints (a list, a range, an integer array or tensor); it is
    checked when set, and may be replaced later (``subset.indices = ...``), not changed in
    place.
    """

    accepts_index_array = True

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        check_map_style(dataset, "dataset", "Subset")
        self.dataset = dataset
        self.indices = indices

    @property
    def indices(self) -> Sequence[int]:
        return self._indices

    @indices.setter
    def indices(self, indices: Sequence[int]) -> None:
        self._index_array: np.ndarray | None = as_index_array(indices, "Subset")
        self._indices = indices

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_index_array"] = None  # rebuilt from the indices where it is needed
        return state

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int | list[int] | slice) -> Any:
        size = len(self._indices)
        if isinstance(index, slice):  # the parent's samples at those positions, as torch
            return self.dataset[self._indices[index]]  # type: ignore[index]
        if isinstance(index, list):  # forwarded in one call, as torch does
            parents = [self._indices[check_index(i, size, "Subset")] for i in index]
            return self.dataset[parents]  # type: ignore[index]
        return self.dataset[self._indices[check_index(index, size, "Subset")]]

    def _parent_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        if self._index_array is None:
            self._index_array = as_index_array(self._indices, "Subset")
        idx = as_index_array(indices, "Subset")
        try:
            parent: np.ndarray = self._index_array[idx]
        except IndexError:
            bad = first_out_of_range(idx, len(self._index_array))
            raise out_of_range(bad, len(self._index_array), "Subset") from None
        return parent

    @batched
    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        parents = self._parent_indices(indices)
        return fetch_nested(self.dataset, parents, indices, "Subset", "dataset")


class ConcatDataset(Dataset[T_co]):
    """Map-style datasets one after another; negative indices count from the end."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets: list[Dataset[Any]] = _check_datasets(datasets, "ConcatDataset")
        if not self.datasets:
            raise ArgumentError(
                "datasets should not be an empty iterable: ConcatDataset needs at least one dataset"
            )
        for where, dataset in enumerate(self.datasets):
            if is_iterable_dataset(dataset):
                raise ArgumentTypeError(
                    f"ConcatDataset does not support IterableDataset: dataset {where} is one "
                    f"({type(dataset).__name__}); use ChainDataset for those"
                )
            check_map_style(dataset, f"datasets[{where}]", "ConcatDataset", sized=True)
        self.cumulative_sizes: list[int] = []
        total = 0
        for dataset in self.datasets:
            total += len(dataset)  # type: ignore[arg-type]
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> T_co:
        index = check_index(index, len(self), "ConcatDataset")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]  # type: ignore[no-any-return]


class ChainDataset(IterableDataset[Any]):
    """Iterable datasets one after another, chained lazily."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets = _check_datasets(datasets, "ChainDataset")
        for where, dataset in enumerate(self.datasets):
            _check_iterable(dataset, where)

    def __iter__(self) -> Iterator[Any]:
        for where, dataset in enumerate(self.datasets):
            _check_iterable(dataset, where)  # .datasets may have been changed since
            yield from dataset

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)


def _check_iterable(dataset: Any, where: int) -> None:
    if not is_iterable_dataset(dataset):
        raise ArgumentTypeError(
            f"ChainDataset only supports IterableDataset, but dataset {where} is "
            f"{type(dataset).__name__}; use ConcatDataset for map-style datasets"
        )


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
        named: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
        for name, dataset in named:
            label = f"args[{name}]" if isinstance(name, int) else name
            check_map_style(dataset, label, "StackDataset", sized=True)
        lengths = {name: len(dataset) for name, dataset in named}
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
        if not isinstance(index, list | slice | np.ndarray):  # those go to each dataset, as torch
            index = check_index(index, self._length, "StackDataset")
        if isinstance(self.datasets, dict):
            return {key: dataset[index] for key, dataset in self.datasets.items()}
        return tuple(dataset[index] for dataset in self.datasets)

    @batched
    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> GatheredBatch:
        idx = as_index_array(indices, "StackDataset")
        if idx.size and (idx.min() < -self._length or idx.max() >= self._length):
            bad = first_out_of_range(idx, self._length)
            raise out_of_range(bad, self._length, "StackDataset")
        columns: Any
        if isinstance(self.datasets, dict):
            columns = {
                key: _listed(fetch_nested(dataset, idx, idx, "StackDataset", key))
                for key, dataset in self.datasets.items()
            }
        else:
            columns = tuple(
                _listed(fetch_nested(dataset, idx, idx, "StackDataset", where))
                for where, dataset in enumerate(self.datasets)
            )
        return GatheredBatch(columns, len(idx))


def _listed(samples: Any) -> Any:
    """A nested dataset's batch as a GatheredBatch column: gathered columns stay as they are."""
    return samples if isinstance(samples, GatheredBatch | list) else list(samples)
