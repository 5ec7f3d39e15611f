"""Reading shards: ``ShardDataset`` (random access) and ``ShardStream`` (sequential).

Shards are memory-mapped, so a dataset far larger than memory costs only the pages a batch
touches, and those live in the shared page cache, not in any process. Pickling a ShardDataset
(for spawned workers) sends its paths; the receiving process maps the files again.
"""

from __future__ import annotations

import bisect
import mmap
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ladle._runtime.context import get_worker_info
from ladle.dataset import Dataset, IterableDataset
from ladle.errors import FormatError
from ladle.formats.index import INDEX_NAME, Index, ShardEntry, read_index
from ladle.formats.schema import Kind, Schema, Structure
from ladle.formats.shardread import ShardFile
from ladle.gathered import GatheredBatch
from ladle.indexing import as_index_array, batched, check_index, first_out_of_range, out_of_range
from ladle.seeding import each_sample
from ladle.validation import check_bool, check_callable, check_int, check_path

__all__ = ["ShardDataset", "ShardStream", "open_shard"]

_PATH_FIX = "pass a shard directory written by write_shards or `ladle pack`, or one of its files"

_PYTHON_SCALARS = (Kind.INT, Kind.FLOAT, Kind.BOOL)


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
    return ShardFile(buffer, name)


class ShardDataset(Dataset[Any]):
    """The samples ``write_shards`` wrote, by index: ``ShardDataset(path)[i]``.

    ``path`` is a shard directory (or its ``index.json``), or one shard file. Samples come back
    with the structure and types they were written with; arrays are read-only, zero-copy views
    of the mapped file (copy one to write into it). ``__getitems__`` gathers a whole batch with
    one NumPy gather per field and shard. Each record is checked against its checksum the first
    time the dataset reads it (in any process forked from this one: workers share what was
    checked); ``verify=False`` skips that for data already verified (``ladle inspect``), though
    offsets and sizes are still checked, so a damaged file raises FormatError either way.
    ``transform`` is applied to each sample; it makes ``__getitems__`` return a list.
    """

    accepts_index_array = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Callable[[Any], Any] | None = None,
        verify: bool = True,
    ) -> None:
        self.path = Path(check_path(path, "path", fix=_PATH_FIX))
        self.transform = check_callable(transform, "transform", optional=True)
        self.verify = check_bool(verify, "verify", fix="pass verify=False to skip checksums")
        self._index, self._shards = _load_index(self.path)
        self.directory = self.path if self.path.is_dir() else self.path.parent
        self._starts = [0]
        for entry in self._index.shards:
            self._starts.append(self._starts[-1] + entry.records)
        self._start_array = np.asarray(self._starts)  # for the batch path's searchsorted
        self._open()

    # -- files ----------------------------------------------------------------------------------

    def _open(self) -> list[ShardFile]:
        if self._shards is None:
            shards = [
                _open_entry(self.directory, e, self._index, self.path) for e in self._index.shards
            ]
            self._shards = shards
        return self._shards

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_shards"] = None  # maps are reopened by the process that unpickles
        return state

    # -- introspection --------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        return self._index.schema

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``metadata`` given to write_shards (a JSON dict)."""
        return self._index.metadata

    @property
    def shard_files(self) -> list[Path]:
        return [self.directory / e.file if e.file else self.path for e in self._index.shards]

    @property
    def shard_sizes(self) -> list[int]:
        return [entry.records for entry in self._index.shards]

    def check(self, shard: int, record: int) -> None:
        """Raise FormatError unless record ``record`` of shard ``shard`` passes its checksum."""
        shards = self._open()
        shard, record = check_int(shard, "shard"), check_int(record, "record")
        if not 0 <= shard < len(shards):
            raise IndexError(
                f"shard {shard} is out of range: the dataset has {len(shards)} shards, "
                f"numbered from 0"
            )
        shards[shard].check(record)

    def stream(self) -> ShardStream:
        """A ShardStream over the same shards, with the same transform and verification."""
        return ShardStream(self.path, transform=self.transform, verify=self.verify)

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.path)!r}, records={len(self)})"

    # -- samples --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._index.records

    def __getitem__(self, index: int) -> Any:
        index = check_index(index, len(self), "ShardDataset")
        shard = bisect.bisect_right(self._starts, index) - 1
        values = self._open()[shard].record(index - self._starts[shard], self.verify)
        schema = self._index.schema
        assert schema is not None  # a non-empty dataset has one
        sample = schema.join(values)
        return sample if self.transform is None else self.transform(sample)

    @batched
    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        idx = as_index_array(indices, "ShardDataset")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise out_of_range(first_out_of_range(idx, n), n, "ShardDataset")
        idx = np.where(idx < 0, idx + n, idx)
        schema = self._index.schema
        if self.transform is not None or schema is None or schema.structure is Structure.LIST:
            return [self[i] for i in each_sample(idx.tolist())]
        columns = self._gather(idx, schema)
        if schema.structure is Structure.DICT:
            return GatheredBatch(dict(zip(schema.names, columns, strict=True)), len(idx))
        if schema.structure is Structure.TUPLE:
            return GatheredBatch(tuple(columns), len(idx))
        return GatheredBatch(columns[0], len(idx))

    def _gather(self, idx: np.ndarray, schema: Schema) -> list[Any]:
        shards = self._open()
        starts = self._start_array
        owner = np.searchsorted(starts, idx, side="right") - 1
        first = int(owner[0]) if idx.size else 0
        parts: list[tuple[np.ndarray | None, list[Any]]]
        if not idx.size or (owner == first).all():
            parts = [(None, shards[first].gather(idx - starts[first], self.verify))]
        else:
            parts = []
            for shard in np.unique(owner).tolist():
                positions = np.flatnonzero(owner == shard)
                local = idx[positions] - starts[shard]
                parts.append((positions, shards[shard].gather(local, self.verify)))
        columns = []
        for position, field in enumerate(schema.fields):
            pieces = [(where, part[position]) for where, part in parts]
            column = _merge(pieces, len(idx))
            if field.kind in _PYTHON_SCALARS:
                column = column.tolist()  # the same Python types __getitem__ gives
            columns.append(column)
        return columns


def _merge(pieces: list[tuple[np.ndarray | None, Any]], length: int) -> Any:
    """One column from per-shard pieces placed at their positions in the batch."""
    if pieces[0][0] is None:
        return pieces[0][1]
    arrays = [piece for _, piece in pieces]
    if (
        all(isinstance(a, np.ndarray) for a in arrays)
        and len({(a.shape[1:], a.dtype) for a in arrays}) == 1
    ):
        out = np.empty((length, *arrays[0].shape[1:]), arrays[0].dtype)
        for where, piece in pieces:
            out[where] = piece
        return out
    merged: list[Any] = [None] * length
    for where, piece in pieces:
        assert where is not None
        for position, value in zip(where.tolist(), piece, strict=True):
            merged[position] = value
    return merged


class ShardStream(IterableDataset[Any]):
    """The samples of a shard directory in order, for sequential reading.

    With ``num_workers`` workers, worker ``w`` streams the ``w``-th contiguous share of the
    records, so each reads its files front to back. It implements the resume protocol
    (``iter_from``), so ``DataLoader.state_dict()`` can save a position mid-epoch.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Callable[[Any], Any] | None = None,
        verify: bool = True,
    ) -> None:
        self.dataset = ShardDataset(path, transform=transform, verify=verify)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_from(0)

    def iter_from(self, position: int) -> Iterator[Any]:
        """This worker's share of the records, from its ``position``-th on."""
        position = check_int(position, "position", minimum=0, fix="pass a sample count")
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        n = len(self.dataset)
        start, stop = worker * n // workers, (worker + 1) * n // workers
        dataset = self.dataset
        for index in range(start + position, stop):
            yield dataset[index]


def _load_index(path: Path) -> tuple[Index, list[ShardFile] | None]:
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
    entry = ShardEntry("", shard.records, len(shard._view), shard.header_crc)
    return Index(shard.records, (entry,), shard.schema, {}), [shard]


def _open_entry(directory: Path, entry: ShardEntry, index: Index, own_path: Path) -> ShardFile:
    path = directory / entry.file if entry.file else own_path  # "": a shard read on its own
    try:
        shard = open_shard(path)
    except FileNotFoundError:
        raise FormatError(
            f"{path}: the index lists this shard, but the file is missing; copy the whole "
            f"directory, or write it again",
            str(path),
        ) from None
    found = {"records": shard.records, "bytes": len(shard._view), "header crc": shard.header_crc}
    wanted = {"records": entry.records, "bytes": entry.bytes, "header crc": entry.header_crc}
    differ = [
        f"{key} {found[key]} (expected {wanted[key]})" for key in found if found[key] != wanted[key]
    ]
    if differ:
        raise FormatError(
            f"{path}: its {', '.join(differ)} differ from the index: the shard was replaced or "
            f"the index is stale; write the directory again",
            str(path),
        )
    if shard.schema != index.schema:
        raise FormatError(
            f"{path}: its schema differs from the index's: the shard belongs to another dataset",
            str(path),
        )
    return shard
