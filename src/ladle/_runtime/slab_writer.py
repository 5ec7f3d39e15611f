"""The worker's side of the shared-memory transport: map the slab lent for a task, collate the
batch's arrays into it, and describe what is where (see shm.py for the ownership rule).

Pages: a slab's pages count in the memory of every process that has them mapped. After writing
a batch the worker unmaps the slab's pages (``MADV_DONTNEED``: the data stays in the file) while
the batch is in flight or held by the user, so that the in-flight window takes no memory in the
workers beyond the batch being written, but only where mapping them back before the next write
(:func:`reserve_pages`) costs at most ``_RELEASE_SHARE`` of the time the batch took to load: a
transport-bound loader (cheap samples, big batches) keeps its slabs mapped, for speed, and so
does one whose batches are under ``_RELEASE_MIN_BYTES``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ladle._runtime.messages import SlabRef
from ladle._runtime.shm import INLINE_LIMIT, ShmArray, align, map_fd, reserve_pages, sparse_slabs
from ladle._runtime.tree import map_leaves

__all__ = ["SlabWriter"]

_RELEASE_SHARE = 0.05  # of a batch's loading time, that mapping its pages again may cost
# Smaller batches stay mapped: their pages are a few MiB a worker, and unmapping and mapping
# them each batch cost 9% of numpy-augment's speed (1.5 MiB batches), twice the estimate.
_RELEASE_MIN_BYTES = 4 << 20
_REMEASURE = 64  # batches kept mapped before releasing one anyway, to measure the cost again


def _plain_dtype(dtype: np.dtype[Any]) -> bool:
    """A dtype that its ``str`` rebuilds exactly: no fields, no sub-arrays, no objects."""
    return dtype.fields is None and dtype.subdtype is None and not dtype.hasobject


def carries_tensor(value: Any, torch: ModuleType) -> bool:
    """Whether the slab carries the torch tensor ``value`` as its bytes: a plain tensor (a
    subclass, a Parameter or a tv_tensor, keeps its type only pickled), dense, on the CPU and
    outside autograd. Its dtype must be one NumPy has too (see :func:`_tensor_array`)."""
    return (
        type(value) is torch.Tensor
        and value.layout is torch.strided
        and value.device.type == "cpu"
        and not value.requires_grad
    )


def _tensor_array(value: Any) -> np.ndarray | None:
    """A NumPy view of ``value`` when it is a torch tensor that the slab carries; None
    otherwise: other tensors go pickled, as torch's own workers send them."""
    torch = sys.modules.get("torch")
    if torch is None or not carries_tensor(value, torch):
        return None
    try:
        array: np.ndarray = value.numpy()  # shares memory; refuses bfloat16, conj, neg bits
    except (TypeError, RuntimeError):
        return None
    return array


def _same_array(placed: np.ndarray, array: np.ndarray) -> bool:
    """Whether ``array`` is all of the slab array ``placed``, in its layout."""
    return array is placed or (
        array.ctypes.data == placed.ctypes.data
        and array.shape == placed.shape
        and array.dtype == placed.dtype
        and array.flags.c_contiguous
    )


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
        self._ref: SlabRef | None = None
        self._name = ""
        self._offset = 0
        # the arrays allocated for this batch by address: collate may hand back a torch
        # tensor made on one of them, another object over the same memory
        self._placed: dict[int, tuple[int, np.ndarray]] = {}
        self._released: set[str] = set()  # slabs whose pages this worker unmapped after use
        self._began = 0.0  # when the current task began
        self._mapping = 0.0  # seconds the current task spent mapping pages (reserve_pages)
        self._rate = 0.0  # seconds per byte to map released pages again; 0: not measured yet
        self._kept = 0  # batches since pages were last released

    def _map(self, ref: SlabRef) -> mmap.mmap:
        inherited = self.inherited.get(ref.name)
        if inherited is not None and not inherited.closed:
            return inherited
        buffer = self._maps.get(ref.name)
        if buffer is None:
            fd = os.open(os.path.join(self.directory, ref.name), os.O_RDWR)
            try:
                buffer = map_fd(fd, ref.size)
            finally:
                os.close(fd)
            # A new slab is often made in place of ones the main process destroyed (unlinked:
            # names are never reused). Mapped here they would keep their memory, in /dev/shm's
            # count too, until the LRU dropped them: up to ``cache`` dead slabs a worker.
            for name in list(self._maps):
                if not os.path.exists(os.path.join(self.directory, name)):
                    self._unmap(name)
            self._maps[ref.name] = buffer
            while len(self._maps) > self.cache:
                self._unmap(next(iter(self._maps)))
        else:
            self._maps.move_to_end(ref.name)
        return buffer

    def _unmap(self, name: str) -> None:
        old = self._maps.pop(name)
        self._released.discard(name)
        with contextlib.suppress(BufferError):  # still viewed: the GC unmaps it later
            old.close()

    def begin(self, ref: SlabRef | None) -> None:
        self._slab = None
        self._ref = ref  # mapped when the batch's first array goes in: many batches need none
        self._offset = 0
        self._placed = {}
        self._began = time.perf_counter()
        self._mapping = 0.0

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """An uninitialised array in the current slab, or None when it does not fit."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < INLINE_LIMIT or not _plain_dtype(dtype):
            return None
        if self._slab is None and self._ref is not None:
            ref, self._ref = self._ref, None
            # A slab that cannot be mapped (its name gone with a read-only or remounted
            # /dev/shm, the file cut short) only means that this batch travels pickled.
            with contextlib.suppress(OSError, ValueError):
                self._slab = self._map(ref)
                self._name = ref.name
        if self._slab is None:
            return None
        offset = align(self._offset)
        if offset + nbytes > len(self._slab):
            return None
        start = time.perf_counter()
        reserved = reserve_pages(self._slab, offset, nbytes)
        self._mapping += time.perf_counter() - start
        if not reserved:
            return None  # no room in /dev/shm for these pages: this array travels pickled
        self._offset = offset + nbytes
        count = nbytes // dtype.itemsize
        array = np.frombuffer(self._slab, dtype, count=count, offset=offset).reshape(shape)
        self._placed[array.ctypes.data] = (offset, array)
        return array

    def encode(self, payload: Any) -> tuple[Any, bool, int]:
        """(payload with slab arrays as descriptors, whether the slab was used, bytes needed)."""
        needed = 0

        def leaf(value: Any) -> Any:
            nonlocal needed
            tensor = _tensor_array(value)
            array = value if tensor is None else tensor
            # Only plain arrays: a subclass (MaskedArray, memmap) or a structured dtype would
            # come back as a bare ndarray of its bytes; those travel pickled, intact.
            if type(array) is not np.ndarray or not _plain_dtype(array.dtype):
                return value
            placed = self._placed.get(array.ctypes.data)
            if placed is not None and _same_array(placed[1], array):
                needed = align(needed) + array.nbytes
                return ShmArray(placed[0], array.shape, array.dtype.str, tensor is not None)
            if array.nbytes < INLINE_LIMIT:
                return value
            needed = align(needed) + array.nbytes
            target = self.allocate(array.shape, array.dtype)
            if target is None:
                return value  # too big for this slab: pickled this once, the next slab grows
            target[...] = array
            offset = self._placed[target.ctypes.data][0]
            return ShmArray(offset, array.shape, array.dtype.str, tensor is not None)

        encoded = map_leaves(payload, leaf)
        used = bool(self._placed)
        self._placed = {}
        if used:
            self._settle_pages()
        return encoded, used, needed

    def _settle_pages(self) -> None:
        """The batch is written: keep the slab's pages mapped, or unmap them (see above)."""
        slab, written, name = self._slab, self._offset, self._name
        if slab is None or not sparse_slabs():
            return  # pages reserved up front and faulted in on writing: no cost to measure
        if name in self._released:  # this batch mapped the released pages again: the cost
            self._released.discard(name)
            rate = self._mapping / max(written, 1)
            # The least seen: being preempted only ever makes it look dearer.
            self._rate = rate if self._rate == 0 else min(self._rate, rate)
        if written < _RELEASE_MIN_BYTES:
            return
        loading = time.perf_counter() - self._began
        self._kept += 1
        # Now and then release anyway, to measure again: the first measure may have been slow.
        if self._rate * written <= _RELEASE_SHARE * loading or self._kept >= _REMEASURE:
            self._kept = 0
            length = min(-(-written // mmap.PAGESIZE) * mmap.PAGESIZE, len(slab))
            with contextlib.suppress(OSError):
                slab.madvise(mmap.MADV_DONTNEED, 0, length)
                self._released.add(name)

    def released(self) -> bool:
        """Whether the last batch's slab pages were unmapped here after writing."""
        return self._name in self._released

    def close(self) -> None:
        for buffer in self._maps.values():
            with contextlib.suppress(BufferError):
                buffer.close()
        self._maps.clear()
