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

Running out: a slab's pages are reserved when it is made (``posix_fallocate``), so a full
/dev/shm shows up in the main process as an error instead of as SIGBUS in a worker. When a
slab cannot be made (full, read-only, not writable), the task gets no slab and its batch is
pickled through the pipe; one warning says so, with the directory's size and how to enlarge it.
Later loans try again, since space may come back.
"""

from __future__ import annotations

import collections
import contextlib
import errno
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
    "POPULATE",
    "PREFIX",
    "ShmArray",
    "SlabPool",
    "align",
    "map_fd",
    "more_room",
    "shm_directory",
    "space",
    "sweep_orphans",
    "unavailable_message",
]

_ALIGN = 64
INLINE_LIMIT = 16 * 1024  # smaller arrays travel inside the pickled message
_GROWTH = 1.25
_MIN_SLAB = 1 << 16
POPULATE = getattr(mmap, "MAPPOPULATE", 0)
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
    """An array that lives in the batch's slab at ``offset``."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


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

    def __init__(self, directory: str, size: int, worker: int) -> None:
        _check_room(directory, size)
        self.name, fd = cleanup.new_segment(directory)
        self.directory, self.size, self.worker = directory, size, worker
        self.path = os.path.join(directory, self.name)
        self.owner = os.getpid()
        self.linked = True
        try:
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
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return  # read-only now: the name stays, and so does our lock over it
        self.linked = False
        cleanup.segment_gone(self.directory)

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
        self.keep = keep  # free slabs kept per worker; more are unlinked when they come back
        self.size = 0  # slab size for new loans; 0 until a batch has told how much it needs
        self.largest = 0  # the most bytes one batch has needed
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
        """A slab for ``worker``'s next task, or None: while no batch has reported its size,
        and when no slab can be made (/dev/shm full or read-only: warned about once)."""
        self._collect_returned()
        if self.size == 0 or self.closed:
            return None
        free = self._free[worker]
        while free:
            slab = free.pop()
            if slab.size >= self.size:
                return self._lend(slab)
            self._destroy(slab)
        try:
            slab = _Slab(self.directory, self.size, worker)
        except OSError as error:
            _warn_unavailable(self.directory, self.size, error)
            spare = self._spare(worker)
            return self._lend(spare) if spare is not None else None
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
        """A batch needed ``nbytes`` of slab: make future loans at least that big."""
        self.largest = max(self.largest, nbytes)
        if nbytes > self.size:
            self.size = max(_MIN_SLAB, align(int(nbytes * _GROWTH)))

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
                return lease[value.offset : value.offset + count].view(dtype).reshape(value.shape)
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
