"""torch's TensorDataset, fetched a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data as torch_data

from ladle.gathered import GatheredBatch

__all__ = ["TensorDataset"]


class TensorDataset(torch_data.TensorDataset):
    """``torch.utils.data.TensorDataset``, whose ``__getitems__`` gathers a whole batch with
    one index per tensor instead of one ``__getitem__`` per sample (torch's loader and ladle's
    both call it; to a custom ``collate_fn`` the batch is the usual list of samples).

    On the CPU NumPy gathers the rows in the calling thread, as ladle.TensorDataset does:
    torch's index_select is a little faster on an idle machine but spreads over torch's
    intra-op threads, which stall (by 2-3x) when the other cores are busy. Elsewhere, and for
    dtypes NumPy lacks, index_select; indices it cannot take (negative or out of range ones,
    nested lists) go to ``tensor[index]``, which gives torch's result or torch's error."""

    accepts_index_array = True  # ladle's loader hands over its batches of indices as arrays

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> GatheredBatch:
        array = np.asarray(indices, dtype=np.int64)
        columns = self._gathered(array) if array.ndim == 1 else None
        if columns is None:
            index = torch.from_numpy(array)
            columns = tuple(tensor[index] for tensor in self.tensors)
        return GatheredBatch(columns, len(array))

    def _gathered(self, array: np.ndarray) -> tuple[torch.Tensor, ...] | None:
        columns = []
        try:
            for tensor, view in zip(self.tensors, self._views(), strict=True):
                if view is not None:
                    columns.append(torch.from_numpy(np.take(view, array, axis=0)))
                else:
                    index = torch.from_numpy(array).to(tensor.device)
                    columns.append(tensor.index_select(0, index))
        except (IndexError, RuntimeError):
            return None
        return tuple(columns)

    def _views(self) -> tuple[np.ndarray | None, ...]:
        """NumPy views of the CPU tensors (None where there is none), made once per tuple of
        tensors: asking a tensor for its view costs more than gathering a small batch."""
        cached = self.__dict__.get("_ladle_views")
        if cached is not None and cached[0] is self.tensors:
            return cached[1]  # type: ignore[no-any-return]
        views = tuple(_view(tensor) for tensor in self.tensors)
        self.__dict__["_ladle_views"] = (self.tensors, views)
        return views

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_ladle_views", None)  # views of the tensors: pickled, they would copy them
        return state


def _view(tensor: torch.Tensor) -> np.ndarray | None:
    if tensor.device.type != "cpu" or tensor.requires_grad:
        return None
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):  # bfloat16, a conjugate or negative view
        return None
