"""torch's collate rules on ladle's collater: torch tensors out, torch's errors.

Workers collate into NumPy (straight into shared memory); the loader turns the leaves into
tensors in the main process, without copying. Called directly, the functions do both steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ladle.collate import Collater, Path, format_path
from ladle.collate import default_convert as numpy_convert
from ladle.errors import CollateError, CollateKeyError, CollateSizeError
from ladle.interop import to_torch

__all__ = ["TorchCollater", "default_collate", "default_convert"]

_NONE = object()
# torch's own words, which code and tests match on
_UNSUPPORTED = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


class TorchCollater(Collater):
    """ladle's collation with torch's refusals: arrays of strings or objects, and any type
    outside torch's rules, raise TypeError with torch's message; the other errors open with
    torch's words and keep ladle's account of where in the sample the trouble is."""

    def __call__(self, batch: Sequence[Any]) -> Any:
        if hasattr(batch, "__len__") and len(batch) == 0:
            raise IndexError("list index out of range: cannot collate an empty batch")
        return super().__call__(batch)

    def numbers(self, values: Sequence[Any], path: Path) -> np.ndarray:
        try:
            return super().numbers(values, path)
        except ValueError as error:  # a Python int beyond int64
            raise ValueError(f"Overflow when unpacking long long: {error}") from None

    def stack_tensors(self, values: Sequence[Any], path: Path) -> Any:
        if getattr(values[0], "is_sparse", False):
            raise RuntimeError(
                "Batches of sparse tensors are not currently supported by the default "
                "collate_fn; please provide a custom collate_fn to handle them appropriately."
            )
        return super().stack_tensors(values, path)

    def mapping(self, values: Sequence[Any], path: Path) -> Any:
        keys = values[0].keys() if isinstance(values[0], Mapping) else ()
        for position, value in enumerate(values):
            missing = next((key for key in keys if key not in value), _NONE)
            if isinstance(value, Mapping) and missing is not _NONE:
                error = CollateKeyError(missing)
                error.add_note(
                    f"at {format_path(path)}: sample 0 has the key {missing!r}, sample "
                    f"{position} lacks it; every sample must have the same keys"
                )
                raise error
        return super().mapping(values, path)

    def stack_arrays(self, values: Sequence[Any], path: Path) -> np.ndarray:
        dtype = values[0].dtype
        if dtype.kind in "SaUO":
            raise CollateError(_UNSUPPORTED.format(dtype))
        return super().stack_arrays(values, path)

    def unsupported(self, value: Any, path: Path) -> Exception:
        return CollateError(_UNSUPPORTED.format(type(value)))

    def size_error(self, values: Sequence[Any], path: Path, shapes: list[Any]) -> CollateSizeError:
        position = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
        return CollateSizeError(
            f"stack expects each tensor to be equal size, but got {list(shapes[0])} at entry 0 "
            f"and {list(shapes[position])} at entry {position} (at {format_path(path)}: pad "
            f"the samples or resize them in a transform)"
        )


COLLATER = TorchCollater()


def default_collate(batch: Any) -> Any:
    """Collate a list of samples into a batch of torch tensors, as torch's default_collate."""
    return to_torch(COLLATER(batch))


def default_convert(data: Any) -> Any:
    """Convert one unbatched sample's NumPy arrays and scalars to tensors, as torch's."""
    return to_torch(numpy_convert(data))
