"""``ladle.cache(dataset, max_bytes=...)``: decoded samples kept in shared memory, so that
epochs after the first read them instead of decoding them again.

Put the cache between the deterministic part of loading (read the file, decode it) and the
random part (crop, flip: anything that draws from ``sample_rng()``), which goes on top::

    decoded = ladle.cache(DecodedImages(paths), max_bytes=8 * 2**30)
    train = RandomCrop(decoded, 224)           # reads decoded[i], then draws its crop

What it returns: the first read of sample i computes ``dataset[i]`` and stores it; every later
read, by any process of the job, returns the stored sample. Stored arrays come back as
read-only NumPy views of the shared memory (no copy, in the first epoch as in the others): a
transform that writes into its input fails loudly instead of corrupting the cache, and one
that makes new arrays (crop, astype, collate) is unaffected.

Who shares it: the main process and every worker of every loader over it, forked or spawned,
persistent or fresh each epoch, processes or threads. The store is one file in /dev/shm (see
``ladle._runtime.sample_store``) that this process owns and removes when the cache is closed
(``close()``, ``with``), garbage, at interpreter exit or on SIGTERM; pickled, the cache is the
dataset plus a handle that re-attaches to the file.

When it is full: the first samples stored stay; a sample that does not fit in what is left of
``max_bytes`` is not cached and is computed again whenever it is read (one warning per
process). Values never depend on which samples were cached, only speed does; which ones were
depends on the order the workers reached them.

Never served to the wrong dataset: a cache's memory is its own (each ``ladle.cache(...)`` makes
a new file, with a random identity that a re-attaching copy checks) and belongs to the dataset
it wraps; nothing is reused across runs.

What it stores: trees (tuple, list, dict, namedtuple) of NumPy arrays, NumPy scalars, int,
float, complex, bool, str, bytes and None; arrays come back as views, str and bytes as copies.
Not cached (computed each read, with one warning per process): samples holding anything else
(object arrays, other objects), samples whose computation drew from ``sample_rng()``, since
caching would freeze that draw, and indices other than 0 <= i < len(dataset) (passed to the
dataset as they are). The dataset under the cache must give the same sample every time it is
asked: a draw is seen only when it is the sample's first (a transform above that draws before
reading the cache hides one below), and no other randomness (``np.random``, the time) can be
seen at all.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import warnings
from typing import Any, Generic, TypeVar

import numpy as np

from ladle._runtime.context import sample_slot
from ladle._runtime.sample_store import MISSING, SampleStore, file_size
from ladle._runtime.shm import more_room, shm_directory, space
from ladle._runtime.tree import is_namedtuple, map_leaves
from ladle.dataset import Dataset, IterableDataset
from ladle.validation import check_int

__all__ = ["CachedDataset", "cache"]

T = TypeVar("T")

_SCALARS = (int, float, complex, bool, str, bytes, type(None))
_MAPPINGS = (dict, collections.OrderedDict)
_KINDS = (
    "tuple, list, dict or namedtuple trees of NumPy arrays (not of dtype object), NumPy "
    "scalars, int, float, complex, bool, str, bytes and None"
)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _problem(value: Any, where: str) -> str | None:
    """Why ``value`` cannot be stored (naming the part of the sample), or None if it can."""
    cls = type(value)
    if cls is np.ndarray or isinstance(value, np.generic):
        return f"{where} has dtype {value.dtype}" if value.dtype.hasobject else None
    if cls in _SCALARS:
        return None
    if cls in (tuple, list) or is_namedtuple(value):
        for k, item in enumerate(value):
            problem = _problem(item, f"{where}[{k}]")
            if problem:
                return problem
        return None
    if cls in _MAPPINGS:
        for key, item in value.items():
            problem = _problem(key, f"a key of {where}") or _problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    return f"{where} is a {cls.__module__}.{cls.__qualname__}"


def _contiguous(value: Any) -> Any:
    """Arrays as one block each: the store keeps an array's bytes, not its strides."""
    if type(value) is np.ndarray and not (value.flags.c_contiguous or value.flags.f_contiguous):
        return np.ascontiguousarray(value)
    return value


class CachedDataset(Dataset[T], Generic[T]):
    """``dataset`` with its samples kept in shared memory after their first read; made by
    :func:`cache`, whose docstring says what it keeps and when. ``stored`` and ``used_bytes``
    say how full it is."""

    def __init__(self, dataset: Any, max_bytes: int, directory: str | None = None) -> None:
        if sys.platform == "win32":
            raise OSError(
                "ladle.cache needs POSIX shared memory (pwrite, flock, mmap with MAP_SHARED), "
                "which Windows does not have; cache on Linux or macOS, or keep decoded samples "
                "in an array of your own"
            )
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"ladle.cache needs a map-style dataset (with __getitem__ and __len__), but got "
                f"dataset={type(dataset).__name__}; cache the map-style dataset that decodes "
                f"the samples, under the iterable one"
            )
        try:
            samples = len(dataset)
        except TypeError:
            raise TypeError(
                f"ladle.cache needs len(dataset) to size its index, but "
                f"{type(dataset).__name__} has no __len__; give the dataset a __len__"
            ) from None
        max_bytes = check_int(
            max_bytes,
            "max_bytes",
            minimum=1,
            fix="pass the most bytes of shared memory the cache may take, e.g. 8 * 2**30",
        )
        directory = shm_directory() if directory is None else directory
        total, free = space(directory)
        needed = file_size(samples, max_bytes)
        if total and needed > free:  # a tmpfs without a size limit reports 0 blocks
            raise ValueError(
                f"max_bytes={max_bytes} ({_mib(max_bytes)}, {_mib(needed)} with the index of "
                f"{samples} samples) does not fit in {directory}, which has {_mib(free)} free "
                f"of {_mib(total)}; pass a smaller max_bytes, or {more_room(directory)}"
            )
        self.dataset = dataset
        self.max_bytes = max_bytes
        self._store = SampleStore.create(directory, samples, max_bytes)
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return self._store.samples

    @property
    def stored(self) -> int:
        """How many samples are cached now (by every process together)."""
        return self._store.stored

    @property
    def used_bytes(self) -> int:
        """Bytes of ``max_bytes`` taken by the cached samples."""
        return self._store.used

    @property
    def closed(self) -> bool:
        return self._store.closed

    def _position(self, index: Any) -> int | None:
        if not isinstance(index, int | np.integer) or isinstance(index, bool | np.bool_):
            return None
        return int(index) if 0 <= index < self._store.samples else None

    def __getitem__(self, index: Any) -> T:
        store = self._store
        if store.closed:
            raise ValueError(
                "this ladle.cache is closed: close() it only once no loader reads it, or make "
                "a new one with ladle.cache(dataset, max_bytes=...)"
            )
        i = self._position(index)
        if i is None:
            return self.dataset[index]  # type: ignore[no-any-return]
        sample = store.lookup(i)
        if sample is not MISSING:
            return sample  # type: ignore[no-any-return]
        slot = sample_slot()
        drawn_before = slot.seeded
        sample = self.dataset[index]
        if slot.seeded and not drawn_before:
            self._warn(
                "random",
                f"the dataset under ladle.cache drew from ladle.sample_rng() for sample {i}: "
                f"caching it would repeat this draw in every later epoch, so samples that draw "
                f"are not cached. Put the random part after the cache: a dataset that reads "
                f"cache[i], then draws",
            )
            return sample  # type: ignore[no-any-return]
        problem = _problem(sample, "the sample")
        if problem is not None:
            self._warn(
                "kind",
                f"ladle.cache cannot store sample {i}: {problem}. It stores {_KINDS}; samples "
                f"it cannot store are computed each time they are read, not cached",
            )
            return sample  # type: ignore[no-any-return]
        try:
            fits = store.put(i, map_leaves(sample, _contiguous))
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            self._warn(
                "pickle",
                f"ladle.cache cannot store sample {i}: pickling its structure failed ({error}); "
                f"a namedtuple or dict type in a sample must be importable by name. Samples it "
                f"cannot store are computed each time they are read, not cached",
            )
            return sample  # type: ignore[no-any-return]
        except OSError as error:
            self._warn(
                "room",
                f"ladle.cache could not store sample {i} in {store.path}: "
                f"{error.strerror or error}. "
                f"Samples that get no room are computed each time they are read; "
                f"{more_room(os.path.dirname(store.path))}",
            )
            return sample  # type: ignore[no-any-return]
        if not fits:
            self._warn(
                "full",
                f"ladle.cache is full: sample {i} does not fit in what is left of "
                f"max_bytes={self.max_bytes} ({_mib(self.max_bytes)}; {store.stored} of "
                f"{store.samples} samples cached, {_mib(store.used)} used). The samples cached "
                f"stay; the others are computed again each time they are read. Raise max_bytes "
                f"to cache them all",
            )
            return sample  # type: ignore[no-any-return]
        cached = store.lookup(i)  # the stored copy: read-only in the first epoch as in later ones
        return sample if cached is MISSING else cached  # type: ignore[no-any-return]

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, UserWarning, stacklevel=3)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if len(self.dataset) != self._store.samples:
            raise ValueError(
                f"this ladle.cache holds {self._store.samples} samples but its dataset now has "
                f"{len(self.dataset)}: a cache belongs to the dataset it was made for; make a "
                f"new one with ladle.cache(dataset, max_bytes=...)"
            )

    def close(self) -> None:
        """Let go of the shared memory (the process that made the cache also removes it from
        /dev/shm). Idempotent. Arrays already read stay valid."""
        self._store.close()

    def __enter__(self) -> CachedDataset[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CachedDataset({self.dataset!r}, max_bytes={self.max_bytes}, "
            f"stored={self.stored if not self.closed else 'closed'})"
        )


def cache(dataset: Any, max_bytes: int, *, directory: str | None = None) -> CachedDataset[Any]:
    """``dataset`` with each sample kept in shared memory once read, for every process of the
    job: see the module docstring of ``ladle.sample_cache`` for what is cached and when.

    ``max_bytes``: the most bytes of samples to keep (an index of 8 bytes per sample comes on
    top); checked against the free space of ``directory`` (/dev/shm by default), but taken only
    as samples are stored. When it is full, the samples stored first stay and the others are
    computed each time they are read. Close the cache (``close()`` or ``with``) once its loaders
    are done; it is also removed when garbage and at exit.
    """
    return CachedDataset(dataset, max_bytes, directory)
