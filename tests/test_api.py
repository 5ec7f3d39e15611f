"""The facade: ``ladle.__all__`` is the public surface, and every name in it resolves."""

import ladle

CONTRACT = {
    # design.md section 1
    "Dataset",
    "IterableDataset",
    "TensorDataset",
    "Subset",
    "ConcatDataset",
    "ChainDataset",
    "StackDataset",
    "random_split",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
    "DistributedSampler",
    "default_collate",
    "default_convert",
    "DataLoader",
    "get_worker_info",
    "sample_rng",
}
EXTRAS = {
    "DataWaitWarning",
    "LoaderStats",
    "PassStats",
    "StageTimes",
    "trace",
    "CachedDataset",
    "ChunkShuffleSampler",
    "ClassBalancedSampler",
    "WindowedDataset",
    "cache",
    "DistributedBatchSampler",
    "Ranks",
    "RecordArray",
    "StringArray",
    "detect_ranks",
    "FormatError",
    "ImageFolder",
    "NpyDataset",
    "ShardDataset",
    "ShardStream",
    "ShardWindowSampler",
    "write_shards",
    "formats",
    "CollateError",
    "CollateSizeError",
    "EpochSampler",
    "GatheredBatch",
    "IteratorState",
    "LadleError",
    "ArgumentError",
    "ArgumentTypeError",
    "LoaderBrokenError",
    "LoaderClosedError",
    "LoaderIterator",
    "LoaderTimeoutError",
    "PadCollate",
    "PaddedBatch",
    # recipes: length bucketing (docs/recipes/bucketing.md), mixing (docs/recipes/mixing.md)
    "BucketBatchSampler",
    "PaddingStats",
    "padding_stats",
    "MixingSampler",
    "WorkerDiedError",
    "WorkerInfo",
    "__version__",
    "register_collate",
    "testing",
    "transforms",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(ladle.__all__) == CONTRACT | EXTRAS
    assert len(ladle.__all__) == len(set(ladle.__all__))


def test_every_public_name_resolves() -> None:
    for name in ladle.__all__:
        assert getattr(ladle, name) is not None


def test_public_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import ladle, sys; ladle.DataLoader(range(3)); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_get_worker_info_is_none_in_main_process() -> None:
    assert ladle.get_worker_info() is None
