"""torch's TensorDataset, fetched a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.data as torch_data

from ladle.gathered import GatheredBatch

__all__ = ["TensorDataset"]


class TensorDataset(torch_data.TensorDataset):
    """``torch.utils.data.TensorDataset``, whose ``__getitems__`` gathers a whole batch with
    one index per tensor instead of one ``__getitem__`` per sample (torch's loader and ladle's
    both call it; to a custom ``collate_fn`` the batch is the usual list of samples)."""

    def __getitems__(self, indices: Sequence[int]) -> GatheredBatch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return GatheredBatch(tuple(tensor[index] for tensor in self.tensors), len(index))
