"""Reading shards: ``ShardDataset`` (random access) and ``ShardStream`` (sequential).

Shards are memory-mapped, so a dataset far larger than memory costs only the pages a batch
touches, and those live in the shared page cache, not in any process. Pickling a ShardDataset
(for spawned workers) sends its paths; the receiving process maps the files again. A directory
at a URL (``s3://bucket/prefix``) is read through the node cache (:mod:`ladle.formats.remote`):
each shard is downloaded once per node, verified, and then mapped like a local one.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ladle._runtime.context import get_worker_info
from ladle.dataset import Dataset, IterableDataset
from ladle.errors import FormatError
from ladle.formats.cache import DEFAULT_LIMIT, NodeCache
from ladle.formats.index import INDEX_NAME, Index
from ladle.formats.opening import LocalShards, load_local, open_shard
from ladle.formats.remote import CachedShards, read_remote_index
from ladle.formats.schema import Kind, Schema, Structure
from ladle.formats.shardread import ShardFile
from ladle.formats.storage import STORE_TIMEOUT, Store, is_url, local_path
from ladle.gathered import GatheredBatch
from ladle.indexing import as_index_array, batched, check_index, first_out_of_range, out_of_range
from ladle.seeding import each_sample
from ladle.validation import check_bool, check_callable, check_int, check_path

__all__ = ["ShardDataset", "ShardStream", "open_shard"]

_PATH_FIX = (
    "pass a shard directory written by write_shards or `ladle pack` (a local path or a URL "
    "such as s3://bucket/prefix), or one of its files"
)

_PYTHON_SCALARS = (Kind.INT, Kind.FLOAT, Kind.BOOL)


class ShardDataset(Dataset[Any]):
    """The samples ``write_shards`` wrote, by index: ``ShardDataset(path)[i]``.

    ``path`` is a shard directory (or its ``index.json``), or one shard file; or a directory at
    a URL (``s3://bucket/prefix``, ``gs://...``, ``file://...``), read through fsspec with
    ``storage_options`` (credentials and endpoint; the environment's are used otherwise) and
    cached on this node in ``cache_dir`` (default ``$LADLE_CACHE`` or ``~/.cache/ladle``), which
    holds at most ``cache_limit`` bytes. A call to the store that gets no complete answer within
    ``store_timeout`` seconds (plus one per MiB it moves), its retries included, raises
    StorageError naming the URL: a store that stops answering fails the job, never stalls it.
    Samples come back with the structure and types they were written with; arrays are read-only,
    zero-copy views of the mapped file (copy one to write into it). ``__getitems__`` gathers a
    whole batch with one NumPy gather per field and shard. Each record is checked against its
    checksum the first time the dataset reads it (in any process forked from this one: workers
    share what was checked); ``verify=False`` skips that for data already verified (``ladle
    inspect``), though offsets and sizes are still checked, so a damaged file raises FormatError
    either way. Downloads are always checked in full. ``transform`` is applied to each sample;
    it makes ``__getitems__`` return a list.
    """

    accepts_index_array = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Callable[[Any], Any] | None = None,
        verify: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int = DEFAULT_LIMIT,
        store_timeout: float = STORE_TIMEOUT,
    ) -> None:
        location = check_path(path, "path", fix=_PATH_FIX)
        self.transform = check_callable(transform, "transform", optional=True)
        self.verify = check_bool(verify, "verify", fix="pass verify=False to skip checksums")
        self._source: LocalShards | CachedShards
        local = local_path(location) if is_url(location) else Path(location)
        if local is not None:
            if storage_options is not None:
                raise ValueError(
                    f"storage_options are for object stores, but path {location!r} is local; "
                    f"drop storage_options, or pass a URL such as s3://bucket/prefix"
                )
            self.path: Path | str = local
            index, opened = load_local(local)
            self._source = LocalShards(local, index, opened)
        else:
            location = location.rstrip("/")
            if location.endswith(f"/{INDEX_NAME}"):  # the index names its directory
                location = location[: -len(INDEX_NAME) - 1]
            self.path = location
            store = Store(location, storage_options, timeout=store_timeout)
            cache = NodeCache(cache_dir, cache_limit)
            self._source = CachedShards(store, read_remote_index(store), cache)
        self._index: Index = self._source.index
        self._starts = [0]
        for entry in self._index.shards:
            self._starts.append(self._starts[-1] + entry.records)
        self._start_array = np.asarray(self._starts)  # for the batch path's searchsorted

    # -- files ----------------------------------------------------------------------------------

    def shard(self, number: int) -> ShardFile:
        """Shard file ``number``, mapped (from the node cache, fetched first, for a URL)."""
        return self._source.shard(number)

    def _open(self) -> list[ShardFile]:
        """Every shard, mapped (for a URL: all of them fetched into the cache)."""
        return [self._source.shard(i) for i in range(len(self._source))]

    def prefetch(self, shards: Iterable[int]) -> None:
        """Reading will need ``shards`` next, in this order: for a URL, fetch as many of them
        as the cache holds in the background (replacing the plan before). Local: nothing."""
        self._source.prefetch(shards)

    @property
    def cache(self) -> NodeCache | None:
        """The node cache a dataset at a URL reads through (None for a local one)."""
        return self._source.cache if isinstance(self._source, CachedShards) else None

    @property
    def cache_capacity(self) -> int:
        """How many shards the node cache holds at once (all of them for a local dataset)."""
        source = self._source
        return source.capacity if isinstance(source, CachedShards) else len(source)

    # -- introspection --------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        return self._index.schema

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``metadata`` given to write_shards (a JSON dict)."""
        return self._index.metadata

    @property
    def shard_files(self) -> list[Path] | list[str]:
        """The shard files: local paths, or URLs for a dataset at a URL."""
        source = self._source
        return source.urls if isinstance(source, CachedShards) else list(source.files)

    @property
    def shard_sizes(self) -> list[int]:
        return [entry.records for entry in self._index.shards]

    @property
    def shard_bytes(self) -> list[int]:
        return [entry.bytes for entry in self._index.shards]

    def check(self, shard: int, record: int) -> None:
        """Raise FormatError unless record ``record`` of shard ``shard`` passes its checksum."""
        shard, record = check_int(shard, "shard"), check_int(record, "record")
        count = len(self._index.shards)
        if not 0 <= shard < count:
            raise IndexError(
                f"shard {shard} is out of range: the dataset has {count} shards, numbered from 0"
            )
        self.shard(shard).check(record)

    def stream(self) -> ShardStream:
        """A ShardStream over the same shards, with the same transform and verification."""
        return ShardStream.over(self)

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.path)!r}, records={len(self)})"

    # -- samples --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._index.records

    def __getitem__(self, index: int) -> Any:
        index = check_index(index, len(self), "ShardDataset")
        shard = bisect.bisect_right(self._starts, index) - 1
        record = index - self._starts[shard]
        mapped = self.shard(shard)
        try:
            values = mapped.record(record, self.verify)
        except FormatError:
            values = self._refetched(shard, mapped).record(record, self.verify)
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
        starts = self._start_array
        owner = np.searchsorted(starts, idx, side="right") - 1
        first = int(owner[0]) if idx.size else 0
        parts: list[tuple[np.ndarray | None, list[Any]]]
        if not idx.size or (owner == first).all():
            parts = [(None, self._gather_from(first, idx - starts[first]))]
        else:
            parts = []
            for shard in np.unique(owner).tolist():
                positions = np.flatnonzero(owner == shard)
                parts.append((positions, self._gather_from(shard, idx[positions] - starts[shard])))
        columns = []
        for position, field in enumerate(schema.fields):
            pieces = [(where, part[position]) for where, part in parts]
            column = _merge(pieces, len(idx))
            if field.kind in _PYTHON_SCALARS:
                column = column.tolist()  # the same Python types __getitem__ gives
            columns.append(column)
        return columns

    def _gather_from(self, number: int, records: np.ndarray) -> list[Any]:
        mapped = self._source.shard(number)
        try:
            return mapped.gather(records, self.verify)
        except FormatError:
            return self._refetched(number, mapped).gather(records, self.verify)

    def _refetched(self, number: int, damaged: ShardFile) -> ShardFile:
        """Called while the FormatError of reading ``damaged`` is handled: shard ``number``
        fetched again if it came from the node cache (a cached copy damaged on this node's
        disk since its download was verified); a local file's error stands (re-raised)."""
        if not isinstance(self._source, CachedShards):
            raise  # the FormatError the caller is handling
        return self._source.refetch(number, damaged)


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
    records, so each reads its files front to back; from a URL, each worker fetches its next
    shard into the node cache while it reads the current one. It implements the resume protocol
    (``iter_from``), so ``DataLoader.state_dict()`` can save a position mid-epoch. The arguments
    are ShardDataset's.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Callable[[Any], Any] | None = None,
        verify: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int = DEFAULT_LIMIT,
        store_timeout: float = STORE_TIMEOUT,
    ) -> None:
        self.dataset = ShardDataset(
            path,
            transform=transform,
            verify=verify,
            storage_options=storage_options,
            cache_dir=cache_dir,
            cache_limit=cache_limit,
            store_timeout=store_timeout,
        )

    @classmethod
    def over(cls, dataset: ShardDataset) -> ShardStream:
        """A stream of ``dataset``'s samples (sharing its files and cache)."""
        stream = cls.__new__(cls)
        stream.dataset = dataset
        return stream

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
        starts = dataset._starts
        index = start + position
        last = bisect.bisect_right(starts, stop - 1) - 1  # the last shard of this share
        while index < stop:
            shard = bisect.bisect_right(starts, index) - 1
            # the current shard and the next of this share: one download ahead, per worker
            dataset.prefetch(range(shard, min(shard + 1, last) + 1))
            end = min(stop, starts[shard + 1])
            for record in range(index, end):
                yield dataset[record]
            index = end
