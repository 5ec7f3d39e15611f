"""Shared-memory slabs: how batches cross from worker processes without being pickled.

Ownership rule: the main process creates every slab (a file in /dev/shm named
``ladle-<main pid>-<n>``), lends one to a worker per task, and is the only one that unlinks.
A worker maps the slab, collates the batch's arrays into it and sends back only descriptors
(:class:`ShmArray`). The main process hands out NumPy views of the slab; the slab returns to
the pool when the last view of that batch is garbage, so a batch stays valid for as long as
you hold it, and memory is recycled as soon as you let go. Slabs left behind by a main process
that was killed are swept by the next pool created on the machine.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import mmap
import os
import re
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle._runtime.messages import SlabRef
from ladle.interop import map_leaves

__all__ = ["PREFIX", "ShmArray", "SlabPool", "SlabWriter", "shm_directory"]

PREFIX = "ladle-"
_ALIGN = 64
_INLINE_LIMIT = 16 * 1024  # smaller arrays travel inside the pickled message
_GROWTH = 1.25
_MIN_SLAB = 1 << 16
_SERIAL = itertools.count()  # one sequence per process: several pools may be alive at once
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


def shm_directory() -> str:
    """Where slabs live: /dev/shm on Linux, else the temporary directory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class ShmArray:
    """An array that lives in the batch's slab at ``offset``."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(directory: str) -> int:
    """Unlink slabs whose creating process is gone (it was killed before it could clean up)."""
    removed = 0
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class _Slab:
    __slots__ = ("__weakref__", "buffer", "name", "path", "size", "worker")

    def __init__(self, directory: str, name: str, size: int, worker: int) -> None:
        self.name, self.size, self.worker = name, size, worker
        self.path = os.path.join(directory, name)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.buffer = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)

    @property
    def ref(self) -> SlabRef:
        return SlabRef(self.name, self.size)

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class SlabPool:
    """The main process's slabs: lent to tasks, viewed by batches, recycled, unlinked at close."""

    def __init__(self, directory: str, workers: int, keep: int) -> None:
        self.directory = directory
        self.keep = keep  # free slabs kept per worker; more are unlinked when they come back
        self.size = 0  # slab size for new loans; 0 until a batch has told how much it needs
        self.largest = 0  # the most bytes one batch has needed
        self.closed = False
        self._slabs: dict[str, _Slab] = {}
        # One free list per worker: a worker keeps writing into the slabs it has mapped already,
        # since mapping a slab (and faulting its pages in) costs more than filling it.
        self._free: list[list[_Slab]] = [[] for _ in range(workers)]
        self._returned: collections.deque[_Slab] = collections.deque()
        sweep_orphans(directory)

    def lend(self, worker: int) -> SlabRef | None:
        """A slab for ``worker``'s next task, or None while no batch has reported its size."""
        self._collect_returned()
        if self.size == 0:
            return None
        free = self._free[worker]
        while free:
            slab = free.pop()
            if slab.size >= self.size:
                return slab.ref
            self._destroy(slab)
        name = f"{PREFIX}{os.getpid()}-{next(_SERIAL)}"
        slab = _Slab(self.directory, name, self.size, worker)
        self._slabs[name] = slab
        return slab.ref

    def need(self, nbytes: int) -> None:
        """A batch needed ``nbytes`` of slab: make future loans at least that big."""
        self.largest = max(self.largest, nbytes)
        if nbytes > self.size:
            self.size = max(_MIN_SLAB, _align(int(nbytes * _GROWTH)))

    def give_back(self, ref: SlabRef | None) -> None:
        """The task's slab holds no batch (unused, failed or stale): free it now."""
        if ref is not None and ref.name in self._slabs:
            self._release(self._slabs[ref.name])

    def views(self, ref: SlabRef, payload: Any) -> Any:
        """``payload`` with each :class:`ShmArray` replaced by a view into the slab."""
        slab = self._slabs[ref.name]
        lease = np.frombuffer(slab.buffer, np.uint8, count=slab.size)
        # Every view's .base is `lease`; when the last view dies, the slab comes back.
        weakref.finalize(lease, self._returned.append, slab)

        def leaf(value: Any) -> Any:
            if isinstance(value, ShmArray):
                dtype = np.dtype(value.dtype)
                count = int(np.prod(value.shape, dtype=np.int64)) * dtype.itemsize
                return lease[value.offset : value.offset + count].view(dtype).reshape(value.shape)
            return value

        return map_leaves(payload, leaf)

    def _collect_returned(self) -> None:
        while self._returned:
            self._release(self._returned.popleft())

    def _release(self, slab: _Slab) -> None:
        free = self._free[slab.worker]
        if self.closed or len(free) >= self.keep or slab.size < self.size:
            self._destroy(slab)
        else:
            free.append(slab)

    def _destroy(self, slab: _Slab) -> None:
        slab.unlink()
        self._slabs.pop(slab.name, None)

    def mappings(self) -> dict[str, mmap.mmap]:
        """The slabs mapped in this process now: forked workers inherit them as they are."""
        return {name: slab.buffer for name, slab in self._slabs.items()}

    def end_pass(self) -> None:
        """Unlink every slab's name but keep the memory mapped here for the next pass, whose
        forked workers inherit the mappings: nothing stays in /dev/shm between passes, and the
        next pass writes into pages that already exist instead of faulting in new ones."""
        self._collect_returned()
        for slab in self._slabs.values():
            slab.unlink()

    def close(self) -> None:
        """Unlink every slab. Views still held stay valid: their mapping outlives the name."""
        self.closed = True
        for slab in list(self._slabs.values()):
            slab.unlink()
        self._slabs.clear()
        for free in self._free:
            free.clear()
        self._returned.clear()


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
        if inherited is not None:
            return inherited
        buffer = self._maps.get(ref.name)
        if buffer is None:
            fd = os.open(os.path.join(self.directory, ref.name), os.O_RDWR)
            try:
                buffer = mmap.mmap(fd, ref.size, flags=mmap.MAP_SHARED | _POPULATE)
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
        self._slab = self._map(ref) if ref is not None else None
        self._offset = 0
        self._placed = {}

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """An uninitialised array in the current slab, or None when it does not fit."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self._slab is None or nbytes < _INLINE_LIMIT:
            return None
        offset = _align(self._offset)
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
            if not isinstance(value, np.ndarray) or value.dtype.hasobject:
                return value
            placed = self._placed.get(id(value))
            if placed is not None and placed[1] is value:
                needed = _align(needed) + value.nbytes
                return ShmArray(placed[0], value.shape, value.dtype.str)
            if value.nbytes < _INLINE_LIMIT:
                return value
            needed = _align(needed) + value.nbytes
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
