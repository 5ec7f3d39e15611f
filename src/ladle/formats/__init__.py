"""Data on disk: class folders of images or other files, memory-mapped .npy arrays and ladle's
packed shard format, on a local disk or in an object store (through a node-local cache)."""

from ladle.formats.imagefolder import DatasetFolder, ImageFolder
from ladle.formats.images import decode_image, load_bytes, load_image
from ladle.formats.npy import NpyDataset
from ladle.formats.parts import PartError, PartManifest, commit_parts, write_part
from ladle.formats.reader import ShardDataset, ShardStream
from ladle.formats.sources import open_dataset, pack
from ladle.formats.writer import write_shards
from ladle.window_sampler import ShardWindowSampler

__all__ = [
    "DatasetFolder",
    "ImageFolder",
    "NpyDataset",
    "PartError",
    "PartManifest",
    "ShardDataset",
    "ShardStream",
    "ShardWindowSampler",
    "commit_parts",
    "decode_image",
    "load_bytes",
    "load_image",
    "open_dataset",
    "pack",
    "write_part",
    "write_shards",
]
