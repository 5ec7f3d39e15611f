"""The worker's side of the shared-memory transport: map the slab lent for a task, collate the
batch's arrays into it, and describe what is where (see shm.py for the ownership rule)."""

from __future__ import annotations

import contextlib
import mmap
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from ladle._runtime.messages import SlabRef
from ladle._runtime.shm import INLINE_LIMIT, POPULATE, ShmArray, align, map_fd
from ladle._runtime.tree import map_leaves

__all__ = ["SlabWriter"]


def _plain_dtype(dtype: np.dtype[Any]) -> bool:
    """A dtype that its ``str`` rebuilds exactly: no fields, no sub-arrays, no objects."""
    return dtype.fields is None and dtype.subdtype is None and not dtype.hasobject


class SlabWriter:
    """The worker's side: map lent slabs, collate into them, describe what is where."""

    def __init__(
        self, directory: str, inherited: Mapping[str, mmap.mmap] | None = None, cache: int = 32
    ) -> None:
        self.directory = directory
        self.inherited = inherited or {}  # mappings present in the main process at fork
        self.cache = cache
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._slab: mmap.mmap | None = None
        self._offset = 0
        self._placed: dict[int, tuple[int, np.ndarray]] = {}

    def _map(self, ref: SlabRef) -> mmap.mmap:
        inherited = self.inherited.get(ref.name)
        if inherited is not None and not inherited.closed:
            return inherited
        buffer = self._maps.get(ref.name)
        if buffer is None:
            fd = os.open(os.path.join(self.directory, ref.name), os.O_RDWR)
            try:
                buffer = map_fd(fd, ref.size, mmap.MAP_SHARED | POPULATE)
            finally:
                os.close(fd)
            self._maps[ref.name] = buffer
            while len(self._maps) > self.cache:
                _, old = self._maps.popitem(last=False)
                with contextlib.suppress(BufferError):  # still viewed: the GC unmaps it later
                    old.close()
        else:
            self._maps.move_to_end(ref.name)
        return buffer

    def begin(self, ref: SlabRef | None) -> None:
        self._slab = None
        if ref is not None:
            # A slab that cannot be mapped (its name gone with a read-only or remounted
            # /dev/shm, the file cut short) only means that this batch travels pickled.
            with contextlib.suppress(OSError, ValueError):
                self._slab = self._map(ref)
        self._offset = 0
        self._placed = {}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """An uninitialised array in the current slab, or None when it does not fit."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self._slab is None or nbytes < INLINE_LIMIT or not _plain_dtype(dtype):
            return None
        offset = align(self._offset)
        if offset + nbytes > len(self._slab):
            return None
        self._offset = offset + nbytes
        count = nbytes // dtype.itemsize
        array = np.frombuffer(self._slab, dtype, count=count, offset=offset).reshape(shape)
        self._placed[id(array)] = (offset, array)
        return array

    def encode(self, payload: Any) -> tuple[Any, bool, int]:
        """(payload with slab arrays as descriptors, whether the slab was used, bytes needed)."""
        needed = 0

        def leaf(value: Any) -> Any:
            nonlocal needed
            # Only plain arrays: a subclass (MaskedArray, memmap) or a structured dtype would
            # come back as a bare ndarray of its bytes; those travel pickled, intact.
            if type(value) is not np.ndarray or not _plain_dtype(value.dtype):
                return value
            placed = self._placed.get(id(value))
            if placed is not None and placed[1] is value:
                needed = align(needed) + value.nbytes
                return ShmArray(placed[0], value.shape, value.dtype.str)
            if value.nbytes < INLINE_LIMIT:
                return value
            needed = align(needed) + value.nbytes
            target = self.allocate(value.shape, value.dtype)
            if target is None:
                return value  # too big for this slab: pickled this once, the next slab grows
            target[...] = value
            return ShmArray(self._placed[id(target)][0], value.shape, value.dtype.str)

        encoded = map_leaves(payload, leaf)
        used = bool(self._placed)
        self._placed = {}
        return encoded, used, needed

    def close(self) -> None:
        for buffer in self._maps.values():
            with contextlib.suppress(BufferError):
                buffer.close()
        self._maps.clear()
