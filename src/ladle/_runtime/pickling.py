"""Pickling a batch for the trip from a process worker to the main process.

Plain pickle, except for torch tensors of the dtypes plain pickle cannot bring back (the
float8 types and complex32: torch's legacy storage path fails on them when unpickling, and
torch's own loader never meets that, since it moves tensors through shared memory). Those
travel as their raw bytes, with the dtype's name and the shape, and come back as the same
tensor. torch is looked for, never imported: a batch without it pickles as always.
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any

__all__ = ["dumps"]

_RAW_DTYPES = (
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "complex32",
)


class _BatchPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, torch: Any) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self._tensor = torch.Tensor
        self._uint8 = torch.uint8
        self._raw = {getattr(torch, name) for name in _RAW_DTYPES if hasattr(torch, name)}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._tensor) and obj.dtype in self._raw:
            flat = obj.detach().cpu().contiguous().reshape(-1)
            data = flat.view(self._uint8).numpy().tobytes()
            return _rebuild, (data, str(obj.dtype).removeprefix("torch."), tuple(obj.shape))
        return NotImplemented


def _rebuild(data: bytes, dtype: str, shape: tuple[int, ...]) -> Any:
    import torch

    kind = getattr(torch, dtype)
    if not data:
        return torch.empty(shape, dtype=kind)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(kind).reshape(shape)


def dumps(payload: Any) -> bytes:
    """``payload``'s pickle (the highest protocol)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    _BatchPickler(buffer, torch).dump(payload)
    return buffer.getvalue()
