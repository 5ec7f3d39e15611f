"""A store of samples in shared memory: one file in /dev/shm that every process of a job maps,
each sample written once and then read by anyone, without a lock.

Layout. The file is a header, an index and ``capacity`` bytes of records; it is sparse, its
pages coming into being as records are written, so an empty store costs little but its name::

    header   64 bytes: magic, layout version, identity (16 random bytes), samples, capacity,
             used (bytes of records written), stored (records written)
    index    samples x int64: where sample i's record starts in the file; 0 while it has none
    records  capacity bytes, filled from the front and never freed

A record is four int64 (its sample's index, its own offset, the pickle's length, the number
of buffers), one (offset, length) pair per buffer, the pickle of the sample (protocol 5, its
arrays' bytes out of band), then the buffers, each 64-byte aligned, at offsets relative to the
record. Reading one is ``pickle.loads`` over views of the map: arrays come back as read-only
NumPy views of shared memory, no copy. Records are pickles, so a store is trusted as the
workers' pipes are: the file is the user's own (mode 0600) and no reader opens a file that
its job did not make.

Publishing. Writers serialise on the write lock: a threading lock within a process and
``flock`` on an open file of the segment of the process's own (flock locks belong to open
files, and a forked child shares its parent's, so a child opens the segment again). Under the
lock a writer checks that the sample has no record yet and that the record fits, writes the
record with ``pwrite`` past ``used``, advances ``used``, and only then writes the index entry,
with a pwrite of its own. A reader reads the entry and, when it is not 0, the record there;
records are never moved or rewritten, which is what lets reads go without a lock. Why a reader
never sees an entry before its record: the two are separate pwrite calls, each taking and
releasing the file's lock in the kernel, which orders the record's stores before the entry's
on any CPU; and the reader's loads of the record come after its load of the entry, whose value
their addresses are computed from. Should an entry still be seen half-written (its 8 bytes
stored in pieces), the record it points to would not name the same sample and offset, and the
read is a miss (the sample is computed), never another sample.

Full. Writing never blocks on room: a record that does not fit in what is left of the
capacity is not stored (``put`` returns False), nor is one that /dev/shm has no pages for
(ENOSPC from pwrite: the caller warns); the first records stay.

Ownership, as for slabs (see cleanup.py): the process that creates a store owns its name
(``ladle-<pid>-<token>-<n>``, under its lock file) and is the only one that unlinks it: at
:meth:`SampleStore.close`, when the store is garbage, at interpreter exit and on SIGTERM; a
killed owner's store is swept by the next ladle process that makes slabs or a store. Other
processes (forked workers inherit the mapping; spawned ones re-attach by name when the store
is unpickled) read and write it, and never unlink it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import secrets
import struct
import sys
import threading
import weakref
from typing import Any

from ladle._runtime import cleanup
from ladle._runtime.cleanup import sweep_orphans
from ladle._runtime.shm import align, map_fd

if sys.platform != "win32":  # ladle imports on Windows; a store is POSIX only (pwrite, flock)
    import fcntl

__all__ = ["MISSING", "SampleStore", "StoreGoneError"]

_MAGIC = b"LADLESC\x00"
_VERSION = 1
_HEADER = struct.Struct("<8sq16sqqqq")  # magic, version, identity, samples, capacity, used, stored
_USED_AT = 8 + 8 + 16 + 8 + 8
_COUNTS = struct.Struct("<qq")  # used, stored
_ENTRY = struct.Struct("<q")
_RECORD = struct.Struct("<qqqq")  # index, own offset, pickle length, buffers
_INDEX_AT = 64

MISSING: Any = object()  # what lookup() returns for a sample without a record


class StoreGoneError(OSError):
    """A store's file could not be attached: its owner closed it or ended."""


def _records_at(samples: int) -> int:
    return align(_INDEX_AT + _ENTRY.size * samples)


def file_size(samples: int, capacity: int) -> int:
    """The bytes a store of ``samples`` entries and ``capacity`` bytes of records may take."""
    return _records_at(samples) + capacity


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _Segment:
    """The owner's name for a store: unlinked once, by the process that made it."""

    def __init__(self, directory: str) -> None:
        self.name, self.fd = cleanup.new_segment(directory)
        self.directory = directory
        self.path = os.path.join(directory, self.name)
        self.owner = os.getpid()
        self.linked = True
        cleanup.register(self)

    def close(self) -> None:
        if os.getpid() != self.owner:
            return
        cleanup.unregister(self)
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        if self.linked and cleanup.unlink_segment(self.path, self.directory):
            self.linked = False

    def emergency_close(self) -> None:
        """SIGTERM: unlink the name now (see cleanup.py); no bookkeeping, no lock."""
        if self.linked and os.getpid() == self.owner:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


_stores: weakref.WeakSet[SampleStore] = weakref.WeakSet()


class SampleStore:
    """Samples by index in one shared file; see the module docstring. Make one with
    :meth:`create`; a pickled store re-attaches to the same file in the process that loads it."""

    def __init__(
        self, path: str, samples: int, capacity: int, identity: bytes, segment: _Segment | None
    ) -> None:
        self.path = path
        self.samples = samples
        self.capacity = capacity
        self.identity = identity
        self.closed = False
        self._segment = segment
        self._records = _records_at(samples)
        self._size = self._records + capacity
        fd = segment.fd if segment is not None else self._open(os.O_RDONLY)
        try:
            if segment is None and os.fstat(fd).st_size != self._size:
                raise self._not_ours()
            self._map = map_fd(fd, self._size, prot=mmap.PROT_READ)
        finally:
            if segment is None:
                os.close(fd)
        self._view = memoryview(self._map)
        self._reset_writer()
        _stores.add(self)
        if segment is not None:
            self._finalizer = weakref.finalize(self, segment.close)

    @classmethod
    def create(cls, directory: str, samples: int, capacity: int) -> SampleStore:
        """A new, empty store in ``directory`` (this process owns its name)."""
        sweep_orphans(directory)
        segment = _Segment(directory)
        identity = secrets.token_bytes(16)
        try:
            os.ftruncate(segment.fd, file_size(samples, capacity))
            header = _HEADER.pack(_MAGIC, _VERSION, identity, samples, capacity, 0, 0)
            _pwrite_all(segment.fd, header, 0)
            return cls(segment.path, samples, capacity, identity, segment)
        except BaseException:
            segment.close()
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.path, self.samples, self.capacity, self.identity))

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0) | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise StoreGoneError(
                f"the shared memory of this ladle.cache ({self.path}) is gone: the process that "
                f"made the cache closed it or ended. A cache lives as long as the process that "
                f"called ladle.cache(...) keeps it open; make the cache there and keep it for as "
                f"long as its loaders run"
            ) from None

    def _not_ours(self) -> StoreGoneError:
        return StoreGoneError(
            f"{self.path} is not this ladle.cache's shared memory any more (another file has "
            f"its name): the cache's owner closed it or ended; make the cache again"
        )

    def _check_header(self) -> None:
        header = _HEADER.unpack_from(self._view, 0)
        if header[:5] != (_MAGIC, _VERSION, self.identity, self.samples, self.capacity):
            raise self._not_ours()

    # -- reading: no lock ------------------------------------------------------------------

    def lookup(self, index: int) -> Any:
        """Sample ``index`` as stored (arrays as read-only views of the map), or MISSING."""
        view = self._view
        (offset,) = _ENTRY.unpack_from(view, _INDEX_AT + _ENTRY.size * index)
        if not offset:
            return MISSING
        owner, own, meta, count = _RECORD.unpack_from(view, offset)
        if owner != index or own != offset:  # an entry read while it was being written
            return MISSING
        start = offset + _RECORD.size
        layout = struct.unpack_from(f"<{2 * count}q", view, start)
        start += 16 * count
        buffers = [
            view[offset + layout[k] : offset + layout[k] + layout[k + 1]]
            for k in range(0, 2 * count, 2)
        ]
        return pickle.loads(view[start : start + meta], buffers=buffers)

    @property
    def used(self) -> int:
        """Bytes of records written (of ``capacity``)."""
        used, _ = _COUNTS.unpack_from(self._view, _USED_AT)
        return int(used)

    @property
    def stored(self) -> int:
        """How many samples have a record."""
        _, stored = _COUNTS.unpack_from(self._view, _USED_AT)
        return int(stored)

    # -- writing: under the write lock -----------------------------------------------------

    def _reset_writer(self) -> None:
        """A process's own write lock: a forked child gets new ones (see the module docstring)."""
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._fd: int | None = None

    def _writer_fd(self) -> int:
        if self._segment is not None and self._pid == self._segment.owner:
            return self._segment.fd
        if self._fd is None:
            self._fd = self._open(os.O_RDWR)
        return self._fd

    def put(self, index: int, sample: Any) -> bool:
        """Store ``sample`` as sample ``index`` unless it has a record already; False when it
        does not fit in the capacity left. Raises OSError when /dev/shm has no room for it,
        pickle's errors when it cannot be pickled, StoreGoneError once the owner closed it."""
        buffers: list[pickle.PickleBuffer] = []
        meta = pickle.dumps(sample, protocol=5, buffer_callback=buffers.append)
        raws = [buffer.raw() for buffer in buffers]
        layout: list[int] = []
        at = _RECORD.size + 16 * len(raws) + len(meta)
        for raw in raws:
            at = align(at)
            layout += [at, raw.nbytes]
            at += raw.nbytes
        size = align(at)
        if self.used + size > self.capacity:  # it can only fill up: no need for the lock
            return False
        with self._mutex:
            fd = self._writer_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._append(fd, index, size, meta, raws, layout)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _append(
        self, fd: int, index: int, size: int, meta: bytes, raws: list[Any], layout: list[int]
    ) -> bool:
        entry = _INDEX_AT + _ENTRY.size * index
        (offset,) = _ENTRY.unpack(os.pread(fd, _ENTRY.size, entry))
        if offset:
            return True  # another writer was first
        used, stored = _COUNTS.unpack(os.pread(fd, _COUNTS.size, _USED_AT))
        if used + size > self.capacity:
            return False
        offset = self._records + used
        head = _RECORD.pack(index, offset, len(meta), len(raws))
        _pwrite_all(fd, head + struct.pack(f"<{len(layout)}q", *layout) + meta, offset)
        for raw, at in zip(raws, layout[::2], strict=True):
            _pwrite_all(fd, raw, offset + at)
        _pwrite_all(fd, _COUNTS.pack(used + size, stored + 1), _USED_AT)
        _pwrite_all(fd, _ENTRY.pack(offset), entry)  # the publish: last, and on its own
        return True

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap; the owner also unlinks the name. Idempotent. Arrays read from the store stay
        valid: the mapping goes with the last of them."""
        if self.closed:
            return
        self.closed = True
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        if self._segment is not None:
            self._finalizer()
        self._view.release()
        with contextlib.suppress(BufferError):
            self._map.close()


def _attach(path: str, samples: int, capacity: int, identity: bytes) -> SampleStore:
    store = SampleStore(path, samples, capacity, identity, None)
    try:
        store._check_header()
    except BaseException:
        store.close()
        raise
    return store


def _after_fork_in_child() -> None:
    for store in list(_stores):
        if store._fd is not None:
            with contextlib.suppress(OSError):
                os.close(store._fd)
        store._reset_writer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
