"""The shards of a directory in an object store, read through the node cache: ``CachedShards``.

A shard is downloaded into the node cache when first needed (or ahead of need, by
``prefetch``), checked in full against its checksums and its index entry before it is renamed
into place, and then read by memory map like a local one. A download that fails its checks
(truncated, corrupted) is fetched again, up to ``attempts`` times; it is never served.
Each process keeps at most as many shards mapped as the cache holds, so that files the cache
evicted do not stay pinned on disk by old maps. The shards of the latest ``prefetch`` plan are
pinned in the cache (see :mod:`ladle.formats.cache`) until the next plan, and the background
thread skips a shard that is no longer planned by the time it gets the shard's lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ladle._runtime.background import Background
from ladle.errors import FormatError
from ladle.formats.cache import NodeCache
from ladle.formats.index import INDEX_NAME, Index, parse_index
from ladle.formats.opening import check_entry, entry_differences, open_shard
from ladle.formats.shardread import ShardFile
from ladle.formats.storage import DamagedDownload, MissingBucket, Store

__all__ = ["DOWNLOAD_ATTEMPTS", "CachedShards", "read_remote_index"]

DOWNLOAD_ATTEMPTS = 3


def read_remote_index(store: Store) -> Index:
    """The index of the directory ``store`` names; FileNotFoundError naming it if absent."""
    url = store.url_of(INDEX_NAME)
    try:
        raw = store.read_bytes(INDEX_NAME)
    except MissingBucket:
        raise  # it says what is missing already
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{url}: no such object: {store.url} is not a ladle shard directory, or writing it "
            f"was interrupted; check the URL, or write it with write_shards or `ladle pack`"
        ) from None
    return parse_index(raw, url)


class CachedShards:
    """The shards of ``index`` at ``store``, through ``cache``."""

    def __init__(
        self, store: Store, index: Index, cache: NodeCache, *, attempts: int = DOWNLOAD_ATTEMPTS
    ) -> None:
        self.store, self.index, self.cache, self.attempts = store, index, cache, attempts
        # the header crc in the name: a dataset written again under the same URL gets new keys
        digest = hashlib.sha256(store.url.encode()).hexdigest()[:16]
        self.keys = [f"{digest}/{e.header_crc:08x}-{e.file}" for e in index.shards]
        biggest = max((e.bytes for e in index.shards), default=1)
        if biggest > cache.limit:
            raise ValueError(
                f"cache_limit={cache.limit} is smaller than the biggest shard of {store.url} "
                f"({biggest} bytes); pass a cache_limit of several shards, e.g. "
                f"cache_limit={8 * biggest}"
            )
        #: how many shards fit in the cache at once
        self.capacity = cache.limit // biggest
        self._reset()

    def _reset(self) -> None:
        self._maps: OrderedDict[int, ShardFile] = OrderedDict()
        #: the shards the latest ``prefetch`` asked for, pinned in the cache by this process
        #: (replaced whole: the thread reads it)
        self._plan = _Plan(self.cache, self.keys)
        weakref.finalize(self, self._plan.release)
        self._background: Background[int] = Background(self._warm, "ladle-prefetch")

    def __len__(self) -> int:
        return len(self.index.shards)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_maps"], state["_background"], state["_plan"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def urls(self) -> list[str]:
        return [self.store.url_of(e.file) for e in self.index.shards]

    def shard(self, number: int) -> ShardFile:
        """Shard ``number``, mapped from the cache (fetched first if absent)."""
        # a forked process keeps the maps it inherited (the same pages, and the same shared
        # flags of verified records); the Background resets itself there
        mapped = self._maps.get(number)
        if mapped is not None:
            # the order of use decides which map to drop, when not all of them fit (a batch
            # drawn across many shards asks for each: this path is kept short)
            if self.capacity < len(self.keys):
                try:  # noqa: SIM105 (suppress() costs a context manager a call)
                    self._maps.move_to_end(number)
                except KeyError:
                    pass  # thread workers share the maps: another just dropped it, still valid
            return mapped
        return self._map(number)

    def refetch(self, number: int, damaged: ShardFile) -> ShardFile:
        """Shard ``number`` fetched again, after reading ``damaged`` (this process's map of it)
        failed a record's checksum: downloads are verified in full, so the cached copy was
        damaged on this node's disk since. If another process fetched it again meanwhile, its
        copy is mapped as it is."""
        self._maps.pop(number, None)
        if _identity(self.cache.path_of(self.keys[number])) == damaged.identity:
            url = self.store.url_of(self.index.shards[number].file)
            warnings.warn(
                f"{damaged.path}: the cached copy of {url} failed a record's checksum; "
                f"fetching it again (if this recurs, check the disk that holds the cache)",
                RuntimeWarning,
                stacklevel=3,
            )
        return self._map(number, stale=lambda path: _identity(path) == damaged.identity)

    def _map(self, number: int, stale: Callable[[Path], bool] | None = None) -> ShardFile:
        entry = self.index.shards[number]
        shard = self.cache.get(
            self.keys[number],
            entry.bytes,
            lambda partial: self._fill(number, partial),
            lambda path: check_entry(open_shard(path), entry, self.index, str(path)),
            damaged=(FormatError,),
            stale=stale,
        )
        self._maps[number] = shard
        with contextlib.suppress(KeyError):
            while len(self._maps) > self.capacity:
                self._maps.popitem(last=False)
        return shard

    def prefetch(self, shards: Iterable[int]) -> None:
        """Reading will need ``shards`` next, in this order: fetch as many of them as the cache
        holds into it, in the background, instead of what was planned before. Those already
        cached are mapped here and now, so that worker processes forked from this one later
        inherit the maps and the records already verified, as they do for local shards."""
        wanted: list[int] = []
        for number in shards:
            if len(wanted) >= self.capacity:
                break
            if number not in wanted:
                wanted.append(number)
        missing = []
        held = self._plan.replace(wanted)
        for number in wanted:
            # planned shards are pinned, and the most recently used, so that making room for
            # the next evicts shards already read, never the ones about to be. One this process
            # pinned in its last plan is pinned again without the lock a new pin takes (a pass
            # over a cached dataset pins every shard)
            key = self.keys[number]
            cached = self.cache.repin(key) if number in held else self.cache.pin(key)
            if not cached:
                missing.append(number)
                continue
            mapped = self._maps.get(number)
            if mapped is not None and _identity(self.cache.path_of(key)) not in (
                None,
                mapped.identity,
            ):
                # the cached copy was fetched again (the one mapped here was damaged): workers
                # forked from now on inherit the new one
                self._maps.pop(number, None)
            if number not in self._maps:
                self.shard(number)
        self._background.plan(missing)

    def _warm(self, number: int) -> None:
        # the thread may have taken ``number`` from a plan since replaced, and then waited for
        # the reader's own fetch of it; by the time it holds the lock the shard may have been
        # read and evicted: fetching it again then would be a second download in one epoch
        entry = self.index.shards[number]
        self.cache.warm(
            self.keys[number],
            entry.bytes,
            lambda p: self._fill(number, p),
            lambda: number in self._plan.shards,
        )

    def _fill(self, number: int, partial: Path) -> None:
        """Download shard ``number`` to ``partial`` and verify all of it, or raise."""
        entry = self.index.shards[number]
        url = self.store.url_of(entry.file)
        failure: Exception | None = None
        for _ in range(self.attempts):
            try:
                self.store.download(entry.file, partial, entry.bytes)
            except FileNotFoundError:
                raise FormatError(
                    f"{url}: the index lists this shard, but the object is missing; write the "
                    f"dataset again (upload the whole directory, index.json last)",
                    url,
                ) from None
            except DamagedDownload as error:
                failure = error  # the client's own checksum caught it: fetch it again
                continue
            try:
                shard = open_shard(partial)
                shard.check_all()
            except FormatError as error:
                failure = error  # truncated or corrupted on the way: fetch it again
                continue
            differ = entry_differences(shard, entry, self.index)
            if not differ:
                return
            # whole (its own checksums pass), but another shard than the index lists: fetching
            # it again brings the same object
            raise FormatError(
                f"{url}: the object does not match {INDEX_NAME}: its {', '.join(differ)} differ; "
                f"the dataset was probably written again while being read: read it again (a new "
                f"ShardDataset reads the new {INDEX_NAME})",
                url,
            )
        raise FormatError(
            f"{url}: {self.attempts} downloads in a row failed their checks, the last with: "
            f"{failure}; if the object itself is damaged, write the dataset again",
            url,
        )


class _Plan:
    """The shards a process plans to read next, pinned in the cache under its pid; a forked
    child starts with none (the parent's pins are the parent's)."""

    def __init__(self, cache: NodeCache, keys: list[str]) -> None:
        self.cache, self.keys = cache, keys
        self.shards: frozenset[int] = frozenset()
        self._pid = os.getpid()

    def replace(self, shards: Iterable[int]) -> frozenset[int]:
        """Plan ``shards`` instead: unpin those no longer planned (the caller pins the new).
        Returns those of ``shards`` this process has pinned already."""
        new = frozenset(shards)
        if self._pid != os.getpid():
            self.shards, self._pid = frozenset(), os.getpid()
        for number in self.shards - new:
            self.cache.unpin(self.keys[number])
        held = self.shards & new
        self.shards = new
        return held

    def release(self) -> None:
        if self._pid == os.getpid():
            self.replace(())


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None if it is gone."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
