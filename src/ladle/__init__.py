"""ladle: shuffled, batched arrays for training loops.

torch.utils.data's API and semantics for NumPy, PyTorch and JAX; switch by changing one import.
"""

from ladle import formats, testing, transforms
from ladle._runtime.context import WorkerInfo, get_worker_info
from ladle.balanced import ClassBalancedSampler
from ladle.bucketing import BucketBatchSampler, PaddingStats, padding_stats
from ladle.collate import default_collate, default_convert, register_collate
from ladle.dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    StackDataset,
    Subset,
    TensorDataset,
)
from ladle.distributed import DistributedBatchSampler, DistributedSampler
from ladle.errors import (
    ArgumentError,
    ArgumentTypeError,
    CollateError,
    CollateSizeError,
    FormatError,
    LadleError,
    LoaderBrokenError,
    LoaderClosedError,
    LoaderTimeoutError,
    WorkerDiedError,
)
from ladle.formats import ImageFolder, NpyDataset, ShardDataset, ShardStream, write_shards
from ladle.gathered import GatheredBatch
from ladle.iterator import IteratorState, LoaderIterator
from ladle.loader import DataLoader
from ladle.mixing import MixingSampler
from ladle.padding import PadCollate, PaddedBatch
from ladle.random_sampler import RandomSampler, SubsetRandomSampler, WeightedRandomSampler
from ladle.ranks import Ranks, detect_ranks
from ladle.records import RecordArray
from ladle.sample_cache import CachedDataset, cache
from ladle.sampler import BatchSampler, EpochSampler, Sampler, SequentialSampler
from ladle.seeding import sample_rng
from ladle.split import random_split
from ladle.stats import DataWaitWarning, LoaderStats, PassStats, StageTimes
from ladle.strings import StringArray
from ladle.timeseries import ChunkShuffleSampler, WindowedDataset
from ladle.tracing import trace
from ladle.window_sampler import ShardWindowSampler

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "BatchSampler",
    "BucketBatchSampler",
    "CachedDataset",
    "ChainDataset",
    "ChunkShuffleSampler",
    "ClassBalancedSampler",
    "CollateError",
    "CollateSizeError",
    "ConcatDataset",
    "DataLoader",
    "DataWaitWarning",
    "Dataset",
    "DistributedBatchSampler",
    "DistributedSampler",
    "EpochSampler",
    "FormatError",
    "GatheredBatch",
    "ImageFolder",
    "IterableDataset",
    "IteratorState",
    "LadleError",
    "LoaderBrokenError",
    "LoaderClosedError",
    "LoaderIterator",
    "LoaderStats",
    "LoaderTimeoutError",
    "MixingSampler",
    "NpyDataset",
    "PadCollate",
    "PaddedBatch",
    "PassStats",
    "PaddingStats",
    "RandomSampler",
    "Ranks",
    "RecordArray",
    "Sampler",
    "SequentialSampler",
    "ShardDataset",
    "ShardStream",
    "ShardWindowSampler",
    "StackDataset",
    "StageTimes",
    "StringArray",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "WindowedDataset",
    "WorkerDiedError",
    "WorkerInfo",
    "cache",
    "default_collate",
    "default_convert",
    "detect_ranks",
    "formats",
    "get_worker_info",
    "padding_stats",
    "random_split",
    "register_collate",
    "sample_rng",
    "testing",
    "trace",
    "transforms",
    "write_shards",
    "__version__",
]
