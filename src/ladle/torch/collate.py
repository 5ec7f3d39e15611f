"""torch's collate rules on ladle's collater: torch tensors out, torch's errors.

Workers collate into NumPy (straight into shared memory); the loader turns the leaves into
tensors in the main process, without copying. Called directly, the functions do both steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ladle.collate import Collater, Path
from ladle.collate import default_convert as numpy_convert
from ladle.errors import CollateError
from ladle.interop import to_torch

__all__ = ["TorchCollater", "default_collate", "default_convert"]

# torch's own words, which code and tests match on
_UNSUPPORTED = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


class TorchCollater(Collater):
    """ladle's collation with torch's refusals: arrays of strings or objects, and any type
    outside torch's rules, raise TypeError with torch's message."""

    def stack_arrays(self, values: Sequence[Any], path: Path) -> np.ndarray:
        dtype = values[0].dtype
        if dtype.kind in "SaUO":
            raise CollateError(_UNSUPPORTED.format(dtype))
        return super().stack_arrays(values, path)

    def collate(self, values: Sequence[Any], path: Path) -> Any:
        if isinstance(values[0], complex):  # torch collates Python numbers but complex
            raise self.unsupported(values[0], path)
        return super().collate(values, path)

    def unsupported(self, value: Any, path: Path) -> Exception:
        return CollateError(_UNSUPPORTED.format(type(value)))


COLLATER = TorchCollater()


def default_collate(batch: Any) -> Any:
    """Collate a list of samples into a batch of torch tensors, as torch's default_collate."""
    return to_torch(COLLATER(batch))


def default_convert(data: Any) -> Any:
    """Convert one unbatched sample's NumPy arrays and scalars to tensors, as torch's."""
    return to_torch(numpy_convert(data))
