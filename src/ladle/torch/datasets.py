"""torch's TensorDataset, fetched a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.utils.data as torch_data

from ladle.gathered import GatheredBatch

__all__ = ["TensorDataset"]


class TensorDataset(torch_data.TensorDataset):
    """``torch.utils.data.TensorDataset``, whose ``__getitems__`` gathers a whole batch with
    one index per tensor instead of one ``__getitem__`` per sample (torch's loader and ladle's
    both call it; to a custom ``collate_fn`` the batch is the usual list of samples)."""

    accepts_index_array = True  # ladle's loader hands over its batches of indices as arrays

    def __getitems__(self, indices: Sequence[int]) -> GatheredBatch:
        array = np.asarray(indices, dtype=np.int64)  # torch.as_tensor walks a list slower
        index = torch.from_numpy(array)
        # as unsigned, a negative index is past any length: negative indices (counted from the
        # end), out-of-range ones (torch's IndexError) and nested lists take t[index] itself
        if array.ndim != 1 or (len(array) and int(array.view(np.uint64).max()) >= len(self)):
            columns = tuple(tensor[index] for tensor in self.tensors)
        else:
            columns = tuple(_rows(tensor, array, index) for tensor in self.tensors)
        return GatheredBatch(columns, len(array))


def _rows(tensor: torch.Tensor, array: np.ndarray, index: torch.Tensor) -> torch.Tensor:
    """The rows of ``tensor[index]``. On the CPU NumPy gathers them in the calling thread, as
    ladle.TensorDataset does: torch's index_select is a little faster on an idle machine but
    spreads over torch's intra-op threads, which stall (by 2-3x) when the other cores are busy.
    Elsewhere, and for dtypes NumPy lacks, index_select (faster than advanced indexing)."""
    if tensor.device.type == "cpu" and not tensor.requires_grad:
        try:
            source = tensor.numpy()
        except (TypeError, RuntimeError):  # bfloat16, a conjugate or negative view
            pass
        else:
            return torch.from_numpy(np.take(source, array, axis=0))
    return tensor.index_select(0, index.to(tensor.device))
