"""Shared-memory slabs: how batches cross from worker processes without being pickled.

Ownership rule: the main process creates every slab (a file in /dev/shm), lends one to a worker
per task, and is the only one that unlinks. A worker maps the slab, collates the batch's arrays
into it and sends back only descriptors (:class:`ShmArray`). The main process hands out NumPy
views of the slab; the slab returns to the pool when the last view of that batch is garbage, so
a batch stays valid for as long as you hold it, and memory is recycled as soon as you let go.
Slabs lent to tasks that will never report back (their pass was abandoned and its workers
stopped) come back through :meth:`SlabPool.reclaim`; a destroyed slab is unmapped at once, or
when its last view dies.

Names, locks and the sweep of a dead process's segments live in cleanup.py: a slab is
``ladle-<pid>-<token>-<n>``, and never removed while its owner lives, in any PID namespace.

Memory: a slab is as big as the biggest batch so far (more only once batches have shown
that they differ in size), and each worker's free slabs are as many as its share of the
in-flight window needs (``keep``); more are unlinked when they come back. Where the kernel can
populate pages on request (``MADV_POPULATE_WRITE``, Linux 5.14+) slabs are sparse: the main
process only sizes the file, and the worker allocates the pages of each array just before
writing it (:func:`reserve_pages`), so only bytes a batch used take memory. Before any batch has
said how big it is, a worker is lent a sparse slab of ``UNSIZED`` bytes, which costs only the
pages the batch writes: the first batches are not pickled (which took the collated batch and
its pickle on both sides of the pipe besides).

Running out: a full /dev/shm must show up as an error, never as SIGBUS in a worker. A sparse
slab's pages are populated by the worker before it writes them, and an array whose pages
cannot be had goes into the pickle instead; elsewhere a slab's pages are reserved when it is
made (``posix_fallocate``), in the main process. When a slab cannot be made (full, read-only,
not writable), the task gets no slab and its batch is pickled through the pipe; one warning
says so, with the directory's size and how to enlarge it. Later loans try again, since space
may come back.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import importlib
import mmap
import os
import sys
import tempfile
import warnings
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle._runtime import cleanup
from ladle._runtime.cleanup import PREFIX, sweep_orphans
from ladle._runtime.messages import SlabRef
from ladle._runtime.tree import map_leaves

__all__ = [
    "INLINE_LIMIT",
    "PREFIX",
    "UNSIZED",
    "ShmArray",
    "SlabPool",
    "align",
    "map_fd",
    "more_room",
    "reserve_pages",
    "shm_directory",
    "space",
    "sparse_slabs",
    "sweep_orphans",
    "unavailable_message",
]

_ALIGN = 64
INLINE_LIMIT = 16 * 1024  # smaller arrays travel inside the pickled message
_GROWTH = 1.25  # headroom once batches have shown that their sizes differ
_MIN_SLAB = 1 << 16
UNSIZED = 256 << 20  # a sparse slab for a batch of unknown size: address space, not memory
_POPULATE_WRITE: int | None = getattr(
    mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else None
)
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
_REASONS = {
    errno.ENOSPC: "it is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "it is read-only",
    errno.EACCES: "this user may not write there",
    errno.EPERM: "this user may not write there",
    errno.EMFILE: "this process has too many open files",
    errno.ENFILE: "the system has too many open files",
    errno.ENOMEM: "the system is out of memory",
}


def shm_directory() -> str:
    """Where slabs live: /dev/shm on Linux, else the temporary directory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class ShmArray:
    """An array that lives in the batch's slab at ``offset``; ``tensor``: it was a CPU torch
    tensor in the worker, and is handed out as one (sharing the slab, as the array would)."""

    offset: int
    shape: tuple[int, ...]
    dtype: str
    tensor: bool = False


# -- room ------------------------------------------------------------------------------------


def space(directory: str) -> tuple[int, int]:
    """(size, free bytes) of the file system holding ``directory``; (0, 0) when unknown."""
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):
        return 0, 0
    return stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize


def _check_room(directory: str, size: int) -> None:
    total, free = space(directory)
    if total and free < size:  # a tmpfs without a size limit reports 0 blocks
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)


@functools.cache
def sparse_slabs() -> bool:
    """Whether this kernel populates shared pages on request (``MADV_POPULATE_WRITE``): then a
    worker reserves the pages it writes, and slabs need not be reserved whole up front."""
    if _POPULATE_WRITE is None:
        return False
    try:
        probe = mmap.mmap(-1, mmap.PAGESIZE)  # shared anonymous memory: shmem, as a slab
    except OSError:
        return False
    try:
        probe.madvise(_POPULATE_WRITE, 0, mmap.PAGESIZE)
    except (OSError, ValueError):
        return False
    finally:
        probe.close()
    return True


def reserve_pages(buffer: mmap.mmap, offset: int, nbytes: int) -> bool:
    """Allocate (and map) the pages under ``buffer[offset : offset + nbytes]`` before they are
    written; False when the file system has no room for them: writing them would be SIGBUS.
    Slabs that are not sparse were reserved whole by the main process: nothing to do."""
    if not sparse_slabs() or _POPULATE_WRITE is None:
        return True
    page = mmap.PAGESIZE
    start = offset - offset % page
    try:
        buffer.madvise(_POPULATE_WRITE, start, offset + nbytes - start)
    except OSError:
        # Give back what was allocated: only whole pages past ``offset``, since the page that
        # holds it may hold the batch's previous array too.
        first = -(-offset // page) * page
        end = min(-(-(offset + nbytes) // page) * page, len(buffer))
        if end > first:
            with contextlib.suppress(OSError):
                buffer.madvise(mmap.MADV_REMOVE, first, end - first)
        return False
    return True


def _reserve(fd: int, size: int) -> None:
    """Size the file with every page allocated now: a full /dev/shm is ENOSPC here, in the
    main process, instead of SIGBUS later in the worker that writes the batch."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as error:
            if error.errno not in _NO_FALLOCATE:
                raise
    os.ftruncate(fd, size)  # a file system that cannot reserve (or not Linux): size only


def map_fd(
    fd: int, size: int, flags: int = mmap.MAP_SHARED, prot: int = mmap.PROT_READ | mmap.PROT_WRITE
) -> mmap.mmap:
    if sys.version_info >= (3, 13):  # keeps no duplicate of the fd open for each mapping
        return mmap.mmap(fd, size, flags=flags, prot=prot, trackfd=False)
    return mmap.mmap(fd, size, flags=flags, prot=prot)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


_warned: set[str] = set()  # directories already warned about, in this process


def more_room(directory: str) -> str:
    """How to give the shared memory in ``directory`` more room, as the end of a message."""
    return (
        f"give shared memory more room: docker run --shm-size=2g ..., or "
        f"mount -o remount,rw,size=2G {directory} as root, or in Kubernetes mount an "
        f"emptyDir volume with medium: Memory at {directory}"
    )


def unavailable_message(directory: str, size: int, error: OSError) -> str:
    """What the warning says when a slab of ``size`` bytes cannot be made in ``directory``."""
    total, free = space(directory)
    room = f"{_mib(total)} with {_mib(free)} free" if total else "of unknown size"
    reason = _REASONS.get(error.errno or 0, "it failed")
    if error.errno in (errno.EMFILE, errno.ENFILE):
        fix = "raise the limit on open files (ulimit -n)"
    else:
        fix = more_room(directory)
    return (
        f"ladle could not create a {_mib(size)} shared-memory slab in {directory}: {reason} "
        f"({error.strerror}); {directory} is {room}. Batches that get no slab travel pickled "
        f"through the workers' pipes, which is slower. To fix it, {fix}"
    )


def _warn_unavailable(directory: str, size: int, error: OSError) -> None:
    if directory not in _warned:
        _warned.add(directory)
        warnings.warn(unavailable_message(directory, size, error), UserWarning, stacklevel=3)


# -- slabs -----------------------------------------------------------------------------------


class _Slab:
    __slots__ = (
        "__weakref__",
        "buffer",
        "directory",
        "linked",
        "name",
        "owner",
        "path",
        "size",
        "worker",
    )

    def __init__(self, directory: str, size: int, worker: int, room: int) -> None:
        """``room``: the bytes that must be free for it (``size`` unless sparse)."""
        _check_room(directory, room)
        self.name, fd = cleanup.new_segment(directory)
        self.directory, self.size, self.worker = directory, size, worker
        self.path = os.path.join(directory, self.name)
        self.owner = os.getpid()
        self.linked = True
        try:
            if sparse_slabs():
                os.ftruncate(fd, size)  # the worker populates what it writes
            else:
                _reserve(fd, size)
            self.buffer = map_fd(fd, size)
        except BaseException:
            self.unlink()
            raise
        finally:
            os.close(fd)

    @property
    def ref(self) -> SlabRef:
        return SlabRef(self.name, self.size)

    def unlink(self) -> None:
        """Remove the name (once, and only in the process that made it); the memory stays
        for as long as it is mapped."""
        if not self.linked or os.getpid() != self.owner:
            return
        if cleanup.unlink_segment(self.path, self.directory):
            self.linked = False

    def close(self) -> None:
        """Unlink and unmap; a mapping still viewed goes with its last view."""
        self.unlink()
        with contextlib.suppress(BufferError):
            self.buffer.close()


def _slab_returned(pool: weakref.ref[SlabPool], slab: _Slab) -> None:
    """The last view of ``slab``'s batch died: recycle it at the pool's next loan. (Not now:
    this runs while the view still holds its buffer, so the slab could not be unmapped.)"""
    owner = pool()
    if owner is not None and not owner.closed:
        owner._returned.append(slab)


class SlabPool:
    """The main process's slabs: lent to tasks, viewed by batches, recycled, unlinked at close."""

    def __init__(self, directory: str, workers: int, keep: int) -> None:
        self.directory = directory
        # Free slabs kept per worker; more are unlinked when they come back. The worker's
        # share of the in-flight window is enough: more are free only after the user held
        # more batches than that at once.
        self.keep = keep
        self.size = 0  # slab size for new loans; 0 until a batch has told how much it needs
        self.largest = 0  # the most bytes one batch has needed
        self.measured = False  # a batch has reported what it needs (maybe nothing)
        self.closed = False
        self._slabs: dict[str, _Slab] = {}
        # One free list per worker: a worker keeps writing into the slabs it has mapped already,
        # since mapping a slab (and faulting its pages in) costs more than filling it.
        self._free: list[list[_Slab]] = [[] for _ in range(workers)]
        self._lent: set[str] = set()  # lent to a task, and neither given back nor viewed yet
        self._returned: collections.deque[_Slab] = collections.deque()
        sweep_orphans(directory)
        cleanup.register(self)

    def lend(self, worker: int) -> SlabRef | None:
        """A slab for ``worker``'s next task, or None: when no slab can be made (/dev/shm full
        or read-only: warned about once), and while no batch has reported its size unless
        slabs can be sparse (then an :data:`UNSIZED` one)."""
        self._collect_returned()
        if self.closed:
            return None
        if self.size == 0:  # batches that need no slab (small arrays only) get none
            return None if self.measured else self._lend_unsized(worker)
        free = self._free[worker]
        while free:
            slab = free.pop()
            if slab.size >= self.size:
                return self._lend(slab)
            self._destroy(slab)
        try:
            slab = _Slab(self.directory, self.size, worker, self.size)
        except OSError as error:
            _warn_unavailable(self.directory, self.size, error)
            spare = self._spare(worker)
            return self._lend(spare) if spare is not None else None
        self._slabs[slab.name] = slab
        return self._lend(slab)

    def _lend_unsized(self, worker: int) -> SlabRef | None:
        """A sparse :data:`UNSIZED` slab while no batch has said how big it is (None where slabs
        cannot be sparse): a first batch that fits takes only the pages it writes."""
        free = self._free[worker]
        if free:
            return self._lend(free.pop())
        if not sparse_slabs():
            return None
        try:
            slab = _Slab(self.directory, UNSIZED, worker, 0)
        except OSError:
            return None  # the first batches travel pickled; a sized loan warns if it fails
        self._slabs[slab.name] = slab
        return self._lend(slab)

    def _lend(self, slab: _Slab) -> SlabRef:
        self._lent.add(slab.name)
        return slab.ref

    def _spare(self, worker: int) -> _Slab | None:
        """Another worker's free slab, when no new one can be made: better mapped than pickled."""
        for free in self._free:
            for i, slab in enumerate(free):
                if slab.size >= self.size:
                    del free[i]
                    slab.worker = worker
                    return slab
        return None

    def need(self, nbytes: int) -> None:
        """A batch needed ``nbytes`` of slab: make future loans at least that big. The first
        size is taken as it is (most loaders' batches are all alike: the last one is smaller);
        a batch bigger than that shows they differ, and the next size leaves room to grow."""
        self.largest = max(self.largest, nbytes)
        self.measured = True
        if nbytes > self.size:
            grown = nbytes if self.size == 0 else int(nbytes * _GROWTH)
            self.size = max(_MIN_SLAB, -(-grown // mmap.PAGESIZE) * mmap.PAGESIZE)

    def unfilled(self, ref: SlabRef | None, nbytes: int) -> None:
        """A batch that needed ``nbytes`` came back pickled from a slab that had room for it: the
        worker could not have the slab's pages (a full /dev/shm). Warned about like a slab that
        cannot be made, once."""
        if ref is not None and ref.size >= nbytes > 0 and sparse_slabs():
            error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.directory)
            _warn_unavailable(self.directory, nbytes, error)

    def give_back(self, ref: SlabRef | None) -> None:
        """The task's slab holds no batch (unused, failed or stale): free it now."""
        if ref is not None and ref.name in self._slabs:
            self._lent.discard(ref.name)
            self._release(self._slabs[ref.name])

    def reclaim(self, refs: Iterable[SlabRef | None] | None = None) -> int:
        """Take back slabs lent to tasks that will never report back, or whose batch will
        never be handed out: call it once the workers that had them are stopped. ``refs``:
        those tasks' slabs; None: every slab lent and neither given back nor viewed, which is
        right when no worker of this pool runs any more. Returns how many came back."""
        names = set(self._lent) if refs is None else {r.name for r in refs if r is not None}
        taken = names & self._lent
        for name in taken:
            self._lent.discard(name)
            self._release(self._slabs[name])
        return len(taken)

    def views(self, ref: SlabRef, payload: Any) -> Any:
        """``payload`` with each :class:`ShmArray` replaced by a view into the slab."""
        slab = self._slabs[ref.name]
        self._lent.discard(ref.name)
        lease = np.frombuffer(slab.buffer, np.uint8, count=slab.size)
        # Every view's .base is `lease`; when the last view dies, the slab comes back.
        weakref.finalize(lease, _slab_returned, weakref.ref(self), slab)

        def leaf(value: Any) -> Any:
            if isinstance(value, ShmArray):
                dtype = np.dtype(value.dtype)
                count = int(np.prod(value.shape, dtype=np.int64)) * dtype.itemsize
                view = lease[value.offset : value.offset + count].view(dtype).reshape(value.shape)
                # the worker had torch to make the tensor; a spawn parent may not have it yet
                return importlib.import_module("torch").from_numpy(view) if value.tensor else view
            return value

        return map_leaves(payload, leaf)

    def _collect_returned(self) -> None:
        while self._returned:
            self._release(self._returned.popleft())

    def _release(self, slab: _Slab) -> None:
        if self._slabs.get(slab.name) is not slab:  # destroyed while viewed: unmap it now
            slab.close()
            return
        free = self._free[slab.worker]
        if self.closed or len(free) >= self.keep or slab.size < self.size:
            self._destroy(slab)
        else:
            free.append(slab)

    def _destroy(self, slab: _Slab) -> None:
        self._slabs.pop(slab.name, None)
        slab.close()

    def footprint(self) -> tuple[int, int]:
        """(slabs, bytes) this pool holds now: lent, viewed by batches or free."""
        return len(self._slabs), sum(slab.size for slab in self._slabs.values())

    def mappings(self) -> dict[str, mmap.mmap]:
        """The slabs mapped in this process now: forked workers inherit them as they are."""
        return {name: slab.buffer for name, slab in self._slabs.items()}

    def end_pass(self) -> None:
        """The pass's workers have stopped: take back what they were lent (:meth:`reclaim`),
        then unlink every slab's name but keep the memory mapped here for the next pass, whose
        forked workers inherit the mappings: nothing stays in /dev/shm between passes, and the
        next pass writes into pages that already exist instead of faulting in new ones."""
        self.reclaim()
        self._collect_returned()
        for slab in self._slabs.values():
            slab.unlink()

    def close(self) -> None:
        """Unlink and unmap every slab; idempotent. Views still held stay valid: a mapping
        goes with its last view."""
        if self.closed:
            return
        self.closed = True
        cleanup.unregister(self)
        slabs = list(self._slabs.values())
        self._slabs.clear()
        for free in self._free:
            free.clear()
        self._lent.clear()
        self._returned.clear()
        for slab in slabs:
            slab.close()

    def emergency_close(self) -> None:
        """SIGTERM: unlink every name now (see cleanup.py); no bookkeeping, no lock."""
        for slab in list(self._slabs.values()):
            if slab.linked and os.getpid() == slab.owner:
                with contextlib.suppress(OSError):
                    os.unlink(slab.path)
