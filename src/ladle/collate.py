"""Collation: a list of samples in, one batch out, with torch's structure rules.

NumPy arrays stack into an array, Python ints/floats/bools become int64/float64/bool arrays,
str and bytes stay lists, and Mapping, namedtuple, tuple and list recurse (tuples come back as
lists, as in torch). torch tensors stay torch tensors. Types ladle does not know can be taught with
:func:`register_collate`. Errors name the place in the sample (``sample['image'][1]``) and the
values that clashed.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from typing import Any

import numpy as np

from ladle._runtime.context import current_allocator
from ladle._runtime.slab_writer import carries_tensor
from ladle._runtime.tree import is_namedtuple, rebuild_mapping
from ladle.errors import CollateError, CollateSizeError
from ladle.gathered import GatheredBatch
from ladle.validation import check_callable

__all__ = [
    "Collater",
    "default_collate",
    "default_convert",
    "format_path",
    "register_collate",
]

Path = tuple[Any, ...]
CollateFn = Callable[[list[Any]], Any]

_HANDLERS: dict[type, CollateFn] = {}


def register_collate(cls: type, fn: CollateFn | None) -> CollateFn | None:
    """Collate values of type ``cls`` (and its subclasses) with ``fn(values) -> batch``.

    ``fn=None`` removes the handler. Returns the handler it replaced, if any. Registered types
    take precedence over the built-in rules.
    """
    if not isinstance(cls, type):
        raise TypeError(
            f"register_collate needs a type, but got cls={cls!r}; pass the class, e.g. "
            f"register_collate(MyRecord, fn)"
        )
    check_callable(fn, "fn", optional=True, fix="pass fn(values) -> batch, or None to remove it")
    previous = _HANDLERS.pop(cls, None)
    if fn is not None:
        _HANDLERS[cls] = fn
    return previous


def format_path(path: Path) -> str:
    """``("image", 1)`` -> ``sample['image'][1]``."""
    return "sample" + "".join(f"[{key!r}]" for key in path)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _registered(cls: type) -> CollateFn | None:
    if not _HANDLERS:
        return None
    for base in cls.__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            return handler
    return None


_NUMBER_DTYPES: dict[type, type] = {bool: np.bool_, int: np.int64, float: np.float64}
_UNSUPPORTED = (
    "ladle can collate NumPy arrays and scalars, torch tensors, Python numbers, str, bytes, "
    "and Mappings, namedtuples, tuples and lists of these; register other types with "
    "ladle.register_collate(cls, fn)"
)


class Collater:
    """The collation rules as an object, so that variants (padding) can override one step."""

    def __call__(self, batch: Sequence[Any]) -> Any:
        if isinstance(batch, GatheredBatch):
            if len(batch) == 0:
                raise IndexError("cannot collate an empty batch: the batch holds no samples")
            return batch.collate(self.collate)
        if not hasattr(batch, "__len__") or isinstance(batch, str | bytes | Mapping):
            raise TypeError(
                f"collate takes a batch: a list of samples, but got batch={batch!r:.60} "
                f"({type(batch).__name__}); pass [sample, ...], or set batch_size=None to load "
                f"single samples"
            )
        if len(batch) == 0:
            # IndexError, as torch raises for an empty batch
            raise IndexError("cannot collate an empty batch: the batch holds no samples")
        return self.collate(batch if isinstance(batch, list | tuple) else list(batch), ())

    def collate(self, values: Sequence[Any], path: Path) -> Any:
        """Collate ``values``: the entries at ``path`` of every sample in the batch.

        ``values`` is a list, or a tuple where it comes from transposing sequence samples;
        str and bytes come back in that same container, as torch returns them.
        """
        first = values[0]
        cls = type(first)
        handler = _registered(cls)
        if handler is not None:
            return handler(values if isinstance(values, list) else list(values))
        if cls is np.ndarray or isinstance(first, np.ndarray):
            return self.stack_arrays(values, path)
        if _is_tensor(first):
            return self.stack_tensors(values, path)
        if cls in _NUMBER_DTYPES or isinstance(first, int | float):
            return self.numbers(values, path)
        if isinstance(first, np.generic) and not isinstance(first, np.str_ | np.bytes_):
            self.check_uniform(values, path, (np.number, np.bool_, int, float))
            return np.asarray(values)
        if isinstance(first, str | bytes):
            return values
        if isinstance(first, Mapping):
            return self.mapping(values, path)
        if is_namedtuple(first):
            columns = self.transpose(values, path)
            return cls(*(self.collate(c, (*path, i)) for i, c in enumerate(columns)))
        if isinstance(first, Sequence):
            return self.sequence(values, path)
        raise self.unsupported(first, path)

    def unsupported(self, value: Any, path: Path) -> Exception:
        """The error for a value no rule collates."""
        return CollateError(
            f"cannot collate {format_path(path)}: values of type {type(value).__name__} are "
            f"not supported; {_UNSUPPORTED}"
        )

    def check_uniform(
        self, values: Sequence[Any], path: Path, kind: type | tuple[type, ...]
    ) -> None:
        first_type = type(values[0])
        if len(set(map(type, values))) == 1:  # the usual case, found at C speed
            return
        for position, value in enumerate(values):
            if type(value) is not first_type and not isinstance(value, kind):
                raise CollateError(
                    f"cannot collate {format_path(path)}: sample 0 holds "
                    f"{type(values[0]).__name__} but sample {position} holds "
                    f"{type(value).__name__}; every sample must hold the same kind of value here"
                )

    def stack_arrays(self, values: Sequence[Any], path: Path) -> np.ndarray:
        self.check_uniform(values, path, np.ndarray)
        if values[0].dtype == object:
            raise CollateError(
                f"cannot collate {format_path(path)}: arrays of dtype object have no fixed "
                f"layout; convert them to a numeric dtype or to lists"
            )
        try:
            allocate = current_allocator()
            if allocate is not None:  # in a worker process: collate straight into its slab
                first = values[0]
                if all(v.dtype == first.dtype for v in values):
                    out = allocate((len(values), *first.shape), first.dtype)
                    if out is not None:
                        return np.stack(values, out=out)
            # np.array copies a list of equal arrays about twice as fast as np.stack
            return np.array(values)
        except ValueError:
            raise self.size_error(values, path, [v.shape for v in values]) from None

    def stack_tensors(self, values: Sequence[Any], path: Path) -> Any:
        import torch

        self.check_uniform(values, path, torch.Tensor)
        try:
            out = _slab_tensor(values)
            if out is not None:  # in a worker process: stack straight into its slab
                return torch.stack(list(values), out=out)
            return torch.stack(list(values))
        except RuntimeError:
            raise self.size_error(values, path, [tuple(v.shape) for v in values]) from None

    def size_error(self, values: Sequence[Any], path: Path, shapes: list[Any]) -> CollateSizeError:
        position = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
        return CollateSizeError(
            f"cannot collate {format_path(path)}: sample 0 has shape {shapes[0]} but sample "
            f"{position} has shape {shapes[position]}; stacking needs equal shapes (pad them, "
            f"e.g. with ladle.PadCollate, or resize them in a transform)"
        )

    def numbers(self, values: Sequence[Any], path: Path) -> np.ndarray:
        kinds = set(map(type, values))
        if kinds <= {bool}:
            return np.array(values, dtype=np.bool_)
        self.check_uniform(values, path, (int, float, np.number, np.bool_))
        if all(issubclass(kind, int) for kind in kinds):
            dtype: type = np.int64
        elif isinstance(values[0], float):
            dtype = np.float64
        else:
            # torch.tensor infers its default float32 when an int comes first and floats follow
            dtype = np.float32
        try:
            return np.array(values, dtype=dtype)
        except OverflowError:
            raise ValueError(
                f"cannot collate {format_path(path)}: a value does not fit in "
                f"{np.dtype(dtype).name} (range {np.iinfo(np.int64).min}..{np.iinfo(np.int64).max})"
            ) from None

    def mapping(self, values: Sequence[Any], path: Path) -> Any:
        self.check_uniform(values, path, Mapping)
        first = values[0]
        keys = first.keys()
        for position, value in enumerate(values):
            if value.keys() != keys:
                raise CollateError(
                    f"cannot collate {format_path(path)}: sample 0 has keys "
                    f"{sorted(keys, key=str)} but sample {position} has keys "
                    f"{sorted(value.keys(), key=str)}; every "
                    f"sample must have the same keys"
                )
        collated = {key: self.collate([v[key] for v in values], (*path, key)) for key in keys}
        return rebuild_mapping(first, collated)

    def transpose(self, values: Sequence[Any], path: Path) -> list[tuple[Any, ...]]:
        self.check_uniform(values, path, Sequence)
        size = len(values[0])
        if len(set(map(len, values))) == 1:
            return list(zip(*values, strict=True))
        for position, value in enumerate(values):
            if len(value) != size:
                raise CollateSizeError(
                    f"each element in list of batch should be of equal size: at "
                    f"{format_path(path)} sample 0 has {size} elements but sample {position} "
                    f"has {len(value)}; pad them (ladle.PadCollate) or write a collate_fn"
                )
        return list(zip(*values, strict=True))

    def sequence(self, values: Sequence[Any], path: Path) -> Any:
        first = values[0]
        collated = [self.collate(c, (*path, i)) for i, c in enumerate(self.transpose(values, path))]
        return _rebuild_sequence(first, collated)


def _slab_tensor(values: Sequence[Any]) -> Any:
    """A tensor over an array of the worker's slab to stack ``values`` into, or None (not in a
    worker, or tensors the slab does not carry: see the slab writer)."""
    allocate = current_allocator()
    if allocate is None:
        return None
    import torch

    first = values[0]
    shape, dtype = first.shape, first.dtype
    for value in values:
        # the others go through torch.stack: differing shapes or dtypes get its own error or
        # type promotion
        if not carries_tensor(value, torch) or value.shape != shape or value.dtype != dtype:
            return None
    numpy_dtype = _numpy_dtype(dtype)
    if numpy_dtype is None:
        return None
    out = allocate((len(values), *shape), numpy_dtype)
    return None if out is None else torch.from_numpy(out)


@functools.cache
def _numpy_dtype(dtype: Any) -> np.dtype[Any] | None:
    import torch

    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 and the other dtypes NumPy lacks
        return None


def _rebuild_sequence(template: Sequence[Any], items: list[Any]) -> Any:
    """``items`` in the sequence type of ``template``; tuples become lists, as in torch."""
    if isinstance(template, tuple) or type(template) is list:
        return items
    try:
        if isinstance(template, MutableSequence):
            clone = copy.copy(template)
            for i, item in enumerate(items):
                clone[i] = item
            return clone
        return type(template)(items)  # type: ignore[call-arg]
    except TypeError:
        return items


_DEFAULT = Collater()


def default_collate(batch: Sequence[Any]) -> Any:
    """Collate a list of samples into a batch (torch's ``default_collate`` rules, NumPy leaves)."""
    return _DEFAULT(batch)


def default_convert(data: Any) -> Any:
    """Convert one unbatched sample: NumPy scalars become 0-d arrays; structures recurse.

    Used when ``batch_size=None`` disables batching. Tuples come back as lists, as in torch.
    """
    if isinstance(data, np.ndarray) or _is_tensor(data):
        return data
    if isinstance(data, np.generic) and not isinstance(data, np.str_ | np.bytes_):
        return np.asarray(data)
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, Mapping):
        return rebuild_mapping(data, {k: default_convert(v) for k, v in data.items()})
    if is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, Sequence):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
