"""Opening shard files against their index: one file by memory map, or a whole local directory.

``open_shard`` maps one file and validates its header; ``check_entry`` holds the file to what the
index says of it, so that a replaced shard or a stale index is refused. :class:`LocalShards` is
the shard source of a directory on a local disk (or one shard file read on its own); the remote
one is :class:`ladle.formats.remote.CachedShards`.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ladle.errors import FormatError
from ladle.formats.index import INDEX_NAME, Index, ShardEntry, read_index
from ladle.formats.shardread import ShardFile

__all__ = ["LocalShards", "check_entry", "entry_differences", "load_local", "open_shard"]


def open_shard(path: str | os.PathLike[str]) -> ShardFile:
    """Map one shard file read-only and validate its header."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO named by a hostile index must not block the open
        descriptor = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise FormatError(f"{name}: cannot open it as a shard ({error})", name) from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise FormatError(f"{name}: it is not a regular file, so not a ladle shard", name)
        if status.st_size == 0:
            raise FormatError(f"{name}: the file is empty: it is not a ladle shard", name)
        buffer = mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(descriptor)
    return ShardFile(buffer, name, (status.st_dev, status.st_ino))


def entry_differences(shard: ShardFile, entry: ShardEntry, index: Index) -> list[str]:
    """What of ``shard`` differs from what ``index`` says of it in ``entry``, e.g. ``["records
    12 (expected 10)", "schema"]``: none if it is the file the index lists."""
    found = {"records": shard.records, "bytes": shard.size, "header crc": shard.header_crc}
    wanted = {"records": entry.records, "bytes": entry.bytes, "header crc": entry.header_crc}
    differ = [
        f"{key} {found[key]} (expected {wanted[key]})" for key in found if found[key] != wanted[key]
    ]
    return differ + (["schema"] if shard.schema != index.schema else [])


def check_entry(shard: ShardFile, entry: ShardEntry, index: Index, name: str) -> ShardFile:
    """``shard`` if it is the file ``entry`` describes, else FormatError naming ``name``."""
    differ = [d for d in entry_differences(shard, entry, index) if d != "schema"]
    if differ:
        raise FormatError(
            f"{name}: its {', '.join(differ)} differ from the index: the shard was replaced or "
            f"the index is stale; write the directory again",
            name,
        )
    if shard.schema != index.schema:
        raise FormatError(
            f"{name}: its schema differs from the index's: the shard belongs to another dataset",
            name,
        )
    return shard


def load_local(path: Path) -> tuple[Index, list[ShardFile] | None]:
    """The index at ``path``, and the shard already opened when ``path`` is a shard file."""
    if path.is_dir():
        return read_index(path / INDEX_NAME), None
    if path.name == INDEX_NAME:
        return read_index(path), None
    if not path.exists():
        raise FileNotFoundError(
            f"path {path} does not exist; pass a shard directory written by write_shards or "
            f"`ladle pack`, or one of its shard files"
        )
    shard = open_shard(path)
    # one shard file read on its own: an index of one entry ("" marks the file itself)
    entry = ShardEntry("", shard.records, shard.size, shard.header_crc)
    return Index(shard.records, (entry,), shard.schema, {}), [shard]


class LocalShards:
    """Every shard of a local directory, mapped at once (maps cost address space, not memory)."""

    def __init__(self, path: Path, index: Index, opened: list[ShardFile] | None) -> None:
        self.path = path
        self.directory = path if path.is_dir() else path.parent
        self.index = index
        self.files = [self.directory / e.file if e.file else path for e in index.shards]
        self._shards = opened if opened is not None else [self._open(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.index.shards)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_shards": None}  # the unpickling process maps them again

    def _open(self, number: int) -> ShardFile:
        path = self.files[number]
        try:
            shard = open_shard(path)
        except FileNotFoundError:
            raise FormatError(
                f"{path}: the index lists this shard, but the file is missing; copy the whole "
                f"directory, or write it again",
                str(path),
            ) from None
        return check_entry(shard, self.index.shards[number], self.index, str(path))

    def shard(self, number: int) -> ShardFile:
        if self._shards is None:
            self._shards = [self._open(i) for i in range(len(self))]
        return self._shards[number]

    def prefetch(self, shards: Iterable[int]) -> None:
        """Nothing to fetch: the files are local."""
