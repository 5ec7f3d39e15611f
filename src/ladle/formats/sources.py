"""Datasets on disk named by a path: what ``ladle pack``, ``ladle bench`` and ``open_dataset`` take.

A path is a shard directory (or one of its files), a ``.npy`` file, a folder of ``.npy`` files
(one field each, named by the file's stem) or an image folder (``root/<class>/<image>``).
Packing an image folder stores each file's encoded bytes as they are, with its class index, and
marks the shards as images so that ``open_dataset`` decodes them.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ladle._runtime.context import sample_slot
from ladle.dataset import Dataset
from ladle.formats.cache import DEFAULT_LIMIT
from ladle.formats.imagefolder import ImageFolder
from ladle.formats.images import decode_image
from ladle.formats.index import INDEX_NAME
from ladle.formats.npy import NpyDataset
from ladle.formats.reader import ShardDataset
from ladle.formats.storage import STORE_TIMEOUT, is_url, local_path
from ladle.formats.writer import DEFAULT_SHARD_BYTES, write_shards
from ladle.transforms import RandomCrop
from ladle.validation import check_int, check_path

__all__ = ["IMAGES", "Crop", "DecodeCrop", "Source", "open_dataset", "pack", "source_of"]

_PATH_FIX = "pass a shard directory, a .npy file, a folder of .npy files or an image folder"

#: ``metadata["kind"]`` of shards packed from an image folder: samples are (encoded, label)
IMAGES = "images"


class Source(enum.Enum):
    SHARDS = "shard directory"
    NPY = ".npy file"
    NPY_FOLDER = "folder of .npy files"
    IMAGE_FOLDER = "image folder"


def source_of(path: str | os.PathLike[str]) -> Source:
    """What kind of dataset ``path`` holds; ValueError (or FileNotFoundError) if none. A URL
    (other than ``file://``) names a shard directory in an object store."""
    location = check_path(path, "path", fix=_PATH_FIX)
    if is_url(location):
        if local_path(location) is None:
            return Source.SHARDS
        raise ValueError(
            f"path {location!r}: a file:// URL names a shard directory only; pass other "
            f"local datasets as plain paths"
        )
    where = Path(location)
    if not where.exists():
        raise FileNotFoundError(
            f"path {os.fspath(path)!r} does not exist; pass a shard directory, a .npy file, a "
            f"folder of .npy files or an image folder"
        )
    if where.is_file():
        if where.suffix == ".npy":
            return Source.NPY
        if where.suffix == ".ladle" or where.name == INDEX_NAME:
            return Source.SHARDS
    elif (where / INDEX_NAME).exists():
        return Source.SHARDS
    elif any(child.suffix == ".npy" and child.is_file() for child in where.iterdir()):
        return Source.NPY_FOLDER
    elif any(child.is_dir() for child in where.iterdir()):
        return Source.IMAGE_FOLDER
    raise ValueError(
        f"path {os.fspath(path)!r} is not a dataset ladle reads: expected a shard directory "
        f"(with {INDEX_NAME}), a .npy file, a folder of .npy files, or an image folder "
        f"(one subdirectory of images per class)"
    )


def _npy_files(folder: Path) -> dict[str, str]:
    return {p.stem: str(p) for p in sorted(folder.iterdir()) if p.suffix == ".npy" and p.is_file()}


class Crop:
    """A random ``size`` x ``size`` crop of an HWC image, padding smaller images.

    Inside a ladle loader it draws from ``ladle.sample_rng()``; anywhere else (indexing the
    dataset, or torch's DataLoader in ``ladle bench``) from NumPy's global generator, which
    torch reseeds in each of its workers.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._crop = RandomCrop(size, pad_if_needed=True)

    def __call__(self, image: Any) -> Any:
        rng = None
        if sample_slot().key is None:  # not loading for a ladle loader
            rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))
        return self._crop(image, rng=rng)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size})"


class DecodeCrop(Crop):
    """``(encoded image, label)`` to ``(HWC uint8 array cropped as Crop does, label)``."""

    def __call__(self, sample: tuple[Any, Any]) -> tuple[Any, Any]:
        encoded, label = sample
        return super().__call__(decode_image(encoded)), label


def open_dataset(
    path: str | os.PathLike[str],
    *,
    crop: int = 224,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_limit: int = DEFAULT_LIMIT,
    store_timeout: float = STORE_TIMEOUT,
) -> Dataset[Any]:
    """The map-style dataset at ``path``; images are decoded and randomly cropped to ``crop``
    so that batches stack (image folders, and shards packed from one). A URL is a shard
    directory in an object store, read as ShardDataset reads it (``storage_options``,
    ``cache_dir``, ``cache_limit``, ``store_timeout``)."""
    crop = check_int(crop, "crop", minimum=1, fix="pass the crop's side in pixels, e.g. 224")
    source = source_of(path)
    if storage_options is not None and not is_url(os.fspath(path)):
        raise ValueError(
            f"storage_options are for object stores, but path {os.fspath(path)!r} is local; "
            f"drop storage_options, or pass a URL such as s3://bucket/prefix"
        )
    if source is Source.SHARDS:
        shards = ShardDataset(
            path,
            storage_options=storage_options,
            cache_dir=cache_dir,
            cache_limit=cache_limit,
            store_timeout=store_timeout,
        )
        if shards.metadata.get("kind") == IMAGES:
            shards.transform = DecodeCrop(crop)
        return shards
    if source is Source.NPY:
        return NpyDataset(path)
    if source is Source.NPY_FOLDER:
        return NpyDataset(_npy_files(Path(path)))
    return ImageFolder(path, transform=Crop(crop))


class _EncodedImages(Dataset[tuple[bytes, int]]):
    """An image folder's files as (encoded bytes, class index): nothing is decoded."""

    def __init__(self, folder: ImageFolder) -> None:
        self.samples = folder.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        path, label = self.samples[index]
        return Path(path).read_bytes(), label


def pack(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    storage_options: Mapping[str, Any] | None = None,
) -> Path | str:
    """Write the dataset at ``src`` (an image folder or .npy arrays) into shards at ``out``, a
    local directory or a URL (written through fsspec with ``storage_options``); ``jobs``
    processes give the same files as one."""
    check_path(src, "src", fix=_PATH_FIX)
    check_path(out, "out", fix="name the directory to write, e.g. ./shards")
    source = source_of(src)
    dataset: Any
    if source is Source.IMAGE_FOLDER:
        folder = ImageFolder(src)
        dataset = _EncodedImages(folder)
        metadata: dict[str, Any] = {"kind": IMAGES, "classes": folder.classes}
    elif source is Source.NPY:
        dataset, metadata = NpyDataset(src), {"kind": "arrays"}
    elif source is Source.NPY_FOLDER:
        dataset, metadata = NpyDataset(_npy_files(Path(src))), {"kind": "arrays"}
    else:
        raise ValueError(
            f"src {os.fspath(src)!r} is already a shard directory; pack reads an image folder, "
            f"a .npy file or a folder of .npy files"
        )
    metadata["source"] = os.path.abspath(src)
    return write_shards(
        dataset,
        out,
        shard_bytes=shard_bytes,
        metadata=metadata,
        progress=progress,
        overwrite=overwrite,
        jobs=jobs,
        storage_options=storage_options,
    )
