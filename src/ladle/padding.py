"""Padding collate: batches of variable-length sequences (token ids, audio, point sets).

Each padded field becomes a :class:`PaddedBatch` ``(data, lengths, mask)``: ``data`` padded along
its first axis to the longest sample, ``lengths`` the true lengths, ``mask`` True on real entries.
Which fields are padded is decided by ``keys`` (or by the rule below), never by the data, so a
batch whose sequences happen to be equally long has the same structure as any other.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ladle.collate import Collater, Path, _is_tensor, format_path
from ladle.errors import CollateError, CollateSizeError
from ladle.gathered import GatheredBatch
from ladle.validation import check_fits_dtype, check_int

__all__ = ["PadCollate", "PaddedBatch"]


class PaddedBatch(NamedTuple):
    """A padded field: ``data`` (batch, max_length, ...), ``lengths`` (batch,), ``mask``."""

    data: Any
    lengths: Any
    mask: Any


def _check_keys(keys: Any) -> frozenset[Any]:
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        hint = f"keys={{{keys!r}}}" if isinstance(keys, str | bytes | int) else "keys={'ids'}"
        raise TypeError(
            f"keys should be a collection of field names or tuple positions, but got "
            f"keys={keys!r} ({type(keys).__name__}); pass e.g. {hint}"
        )
    try:
        names = frozenset(keys)
    except TypeError:
        raise TypeError(
            f"keys should hold field names or tuple positions (hashable values), but got "
            f"keys={keys!r}; pass e.g. keys={{'ids'}}"
        ) from None
    if not names:
        raise ValueError(
            f"keys should name at least one field, but got keys={keys!r}; pass keys=None to "
            f"pad every variable-length field, or use ladle.default_collate to pad none"
        )
    return names


def _dtype_name(dtype: Any) -> Any:
    """A NumPy dtype for a NumPy or torch dtype; None for one NumPy lacks (bfloat16)."""
    try:
        return np.dtype(str(dtype).removeprefix("torch."))
    except TypeError:
        return None


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int | float | np.number | np.bool_) for v in value
    )


class PadCollate(Collater):
    """default_collate, but variable-length fields are padded to the batch's longest.

    ``keys`` names the fields to pad: mapping keys or tuple positions, matched against the last
    step of a field's place in the sample. With ``keys=None`` every array with at least one
    dimension and every list of numbers is padded (tuples, namedtuples and mappings are structure,
    never padded). ``pad_to_multiple_of`` rounds the padded length up, for kernels that like it.
    """

    def __init__(
        self,
        pad_value: float = 0,
        *,
        keys: Collection[Any] | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        if isinstance(pad_value, bool | np.bool_) or not isinstance(pad_value, numbers.Real):
            raise TypeError(
                f"pad_value should be a number, but got pad_value={pad_value!r} "
                f"({type(pad_value).__name__}); pass e.g. pad_value=0 or pad_value=-1"
            )
        self.pad_value: float = pad_value
        self.keys: frozenset[Any] | None = None if keys is None else _check_keys(keys)
        self.pad_to_multiple_of: int | None = (
            None
            if pad_to_multiple_of is None
            else check_int(
                pad_to_multiple_of,
                "pad_to_multiple_of",
                minimum=1,
                fix="pass a positive int such as 8, or None to pad to the longest sample",
            )
        )
        self._fits: set[Any] = set()  # dtypes pad_value was checked against

    def __call__(self, batch: Sequence[Any]) -> Any:
        if isinstance(batch, GatheredBatch):
            batch = list(batch)  # padding needs the samples one by one
        return super().__call__(batch)

    def __repr__(self) -> str:
        keys = sorted(self.keys, key=repr) if self.keys is not None else None
        return (
            f"PadCollate(pad_value={self.pad_value!r}, keys={keys!r}, "
            f"pad_to_multiple_of={self.pad_to_multiple_of!r})"
        )

    def _pads(self, first: Any, path: Path) -> bool:
        if self.keys is not None:
            return bool(path) and path[-1] in self.keys
        if isinstance(first, np.ndarray) or _is_tensor(first):
            return len(first.shape) >= 1
        return _is_number_list(first)

    def collate(self, values: Sequence[Any], path: Path) -> Any:
        if self._pads(values[0], path):
            return self.pad(values, path)
        return super().collate(values, path)

    def pad(self, values: Sequence[Any], path: Path) -> PaddedBatch:
        if _is_tensor(values[0]):
            return self._pad_tensors(values, path)
        arrays = [np.asarray(v) for v in values]
        for position, array in enumerate(arrays):
            if array.ndim == 0 or array.dtype == object:
                raise CollateError(
                    f"cannot pad {format_path(path)}: sample {position} holds "
                    f"{type(values[position]).__name__} {values[position]!r}, not a sequence "
                    f"of numbers; leave this field out of keys="
                )
        trailing = self._trailing_shape([a.shape for a in arrays], path)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        dtype = np.result_type(*arrays) if arrays else np.float64
        self._check_pad_value(dtype, path)
        shape = (len(arrays), self._padded_length(lengths), *trailing)
        data = np.full(shape, self.pad_value, dtype)
        for row, array in enumerate(arrays):
            data[row, : len(array)] = array
        return PaddedBatch(data, lengths, np.arange(data.shape[1]) < lengths[:, None])

    def _pad_tensors(self, values: Sequence[Any], path: Path) -> PaddedBatch:
        import torch

        self.check_uniform(values, path, torch.Tensor)
        trailing = self._trailing_shape([tuple(v.shape) for v in values], path)
        lengths = torch.tensor([len(v) for v in values], dtype=torch.int64)
        size = self._padded_length(lengths.numpy())
        self._check_pad_value(values[0].dtype, path)
        data = values[0].new_full((len(values), size, *trailing), self.pad_value)
        for row, tensor in enumerate(values):
            data[row, : len(tensor)] = tensor
        return PaddedBatch(data, lengths, torch.arange(size) < lengths[:, None])

    def _check_pad_value(self, dtype: Any, path: Path) -> None:
        """Refuse a pad_value the field's dtype cannot hold: NaN, 1.5 or -1 in uint8..."""
        if dtype in self._fits:
            return
        numpy_dtype = _dtype_name(dtype)
        if numpy_dtype is not None:
            check_fits_dtype(
                self.pad_value,
                "pad_value",
                numpy_dtype,
                fix=f"{format_path(path)} is {numpy_dtype}: pass a pad_value it holds, or cast "
                f"the field",
            )
        self._fits.add(dtype)

    def _trailing_shape(self, shapes: list[tuple[int, ...]], path: Path) -> tuple[int, ...]:
        for position, shape in enumerate(shapes):
            if shape[1:] != shapes[0][1:]:
                raise CollateSizeError(
                    f"cannot pad {format_path(path)}: sample 0 has shape {shapes[0]} but sample "
                    f"{position} has shape {shape}; only the first axis may differ"
                )
        return shapes[0][1:]

    def _padded_length(self, lengths: np.ndarray) -> int:
        longest = int(lengths.max()) if len(lengths) else 0
        multiple = self.pad_to_multiple_of
        if multiple is not None:
            longest = -(-longest // multiple) * multiple
        return longest
