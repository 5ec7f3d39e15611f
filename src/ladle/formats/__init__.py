"""Data on disk: image folders, memory-mapped .npy arrays and ladle's packed shard format."""

from ladle.formats.reader import ShardDataset, ShardStream
from ladle.formats.writer import write_shards

__all__ = ["ShardDataset", "ShardStream", "write_shards"]
