"""ladle for torch users: ``torch.utils.data``'s names and behaviour, on ladle's engine.

Change ``from torch.utils.data import DataLoader, ...`` to ``from ladle.torch import
DataLoader, ...``. Batches are torch tensors exactly as torch collates them, unseeded
randomness draws from torch's default generator, errors and warnings are torch's, and the loader
is a ``torch.utils.data.DataLoader`` that frameworks accept as one. Datasets and samplers are
torch's own classes; ``TensorDataset`` adds a batched fetch. The NumPy-native ``ladle``
namespace keeps batches in the samples' own types.
"""

from __future__ import annotations

from typing import Any

import torch.utils.data as _torch_data
from torch.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataChunk,
    Dataset,
    DFIterDataPipe,
    DistributedSampler,
    IterableDataset,
    IterDataPipe,
    MapDataPipe,
    RandomSampler,
    Sampler,
    SequentialSampler,
    StackDataset,
    Subset,
    SubsetRandomSampler,
    WeightedRandomSampler,
    argument_validation,
    functional_datapipe,
    guaranteed_datapipes_determinism,
    non_deterministic,
    random_split,
    runtime_validation,
    runtime_validation_disabled,
)

from ladle._runtime.context import get_worker_info as _thread_worker_info
from ladle.torch.collate import default_collate, default_convert
from ladle.torch.datasets import TensorDataset
from ladle.torch.loader import DataLoader

_DatasetKind = _torch_data.dataloader._DatasetKind


def get_worker_info() -> Any:
    """The worker's info (``id``, ``num_workers``, ``seed``, ``dataset``) inside a worker of a
    ladle.torch or torch loader, None in the main process. In a worker process it is torch's
    own ``WorkerInfo``, the object ``torch.utils.data.get_worker_info()`` returns there too."""
    return _torch_data.get_worker_info() or _thread_worker_info()


__all__ = [
    "BatchSampler",
    "ChainDataset",
    "ConcatDataset",
    "DFIterDataPipe",
    "DataChunk",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterDataPipe",
    "IterableDataset",
    "MapDataPipe",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "StackDataset",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "_DatasetKind",
    "argument_validation",
    "default_collate",
    "default_convert",
    "functional_datapipe",
    "get_worker_info",
    "guaranteed_datapipes_determinism",
    "non_deterministic",
    "random_split",
    "runtime_validation",
    "runtime_validation_disabled",
]
