"""The node-local shard cache: one directory, a size limit, shared by every process of a node.

Files are fetched at most once per node: each cached file has a lock file (``filelock``, an
``flock`` on POSIX), and a process that finds a file absent downloads it to a temporary name
in the cache directory while holding that lock, has it verified, and renames it into place, so
no reader ever sees a torn file. The others wait on the lock, then find the file.

Eviction. Room is made before a download, least-recently-used first (a hit refreshes the
file's mtime), skipping any file whose lock another process holds (it is being fetched or
opened), and sparing *pinned* files: a process pins the files it plans to read next (``pin``,
a file ``.pins/<key>@<pid>``, made under the file's lock; ``unpin`` when its plan moves on; the
pins of processes that ended are swept), so that a reader that runs ahead never evicts what
another, slower one fetched ahead and has not opened yet. Only when the unpinned files are not
enough (the processes sharing the cache plan to read more than it holds) are pinned ones
evicted too, oldest first: the directory stays within its limit, but for downloads running at
the same moment. An evicted file that a process has mapped stays readable there (POSIX keeps
unlinked files until unmapped). A fetch ahead of need (``warm``) checks, once it holds the
lock, that the file is still wanted, so a plan replaced while it waited does not bring back a
file that was read and evicted meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ladle.formats.storage import INSTALL_HINT
from ladle.validation import check_int, check_number, check_path

__all__ = ["DEFAULT_LIMIT", "NodeCache", "default_directory"]

T = TypeVar("T")

DEFAULT_LIMIT = 32 * 2**30
_LOCKS = ".locks"
_PINS = ".pins"
_PARTIAL = ".part-"
_EVICTING = ".evicting.lock"


def default_directory() -> Path:
    """``$LADLE_CACHE``, else ``$XDG_CACHE_HOME/ladle``, else ``~/.cache/ladle``."""
    if os.environ.get("LADLE_CACHE"):
        return Path(os.environ["LADLE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ladle"


def _filelock() -> Any:
    try:
        import filelock
    except ImportError:
        raise ImportError(
            f"the shard cache needs filelock for its cross-process locks; install it with "
            f"{INSTALL_HINT}"
        ) from None
    return filelock


class NodeCache:
    """``directory`` (default :func:`default_directory`) holding at most ``limit`` bytes.

    ``lock_timeout`` bounds how long a process waits for another's download of one file.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        limit: int = DEFAULT_LIMIT,
        *,
        lock_timeout: float = 600.0,
    ) -> None:
        fix = "name a local directory, e.g. /local/ladle-cache (or set $LADLE_CACHE)"
        self.directory = (
            default_directory()
            if directory is None
            else Path(check_path(directory, "cache_dir", fix=fix))
        )
        self.limit = check_int(
            limit, "cache_limit", minimum=1, fix="pass the cache's size in bytes, e.g. 2**34"
        )
        self.lock_timeout = check_number(
            lock_timeout, "lock_timeout", minimum=0, fix="pass seconds, e.g. 600"
        )
        #: how errors name the directory: the argument, or where the default came from
        self._named = (
            f"cache_dir {self.directory}"
            if directory is not None
            else f"the cache directory {self.directory} (cache_dir=None: $LADLE_CACHE, else "
            f"$XDG_CACHE_HOME/ladle or ~/.cache/ladle)"
        )
        self._check_writable()
        self._swept_by: int | None = None  # the process that swept dead processes' pins

    def _unusable(self, why: str, error: type[OSError]) -> OSError:
        return error(
            f"{self._named} cannot hold the shard cache: {why}; pass cache_dir= a writable "
            f"local directory (or set $LADLE_CACHE)"
        )

    def _check_writable(self, path: Path | None = None) -> None:
        """Refuse a directory that cannot be made or written, now rather than at the first
        download, deep inside a read. Nothing is created yet (reading an index alone, as
        ``ladle pack`` does for its report, needs no cache): the nearest existing ancestor of
        ``path`` (default: the directory) is asked instead."""
        existing = self.directory if path is None else path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise self._unusable(f"{existing} is a file, not a directory", NotADirectoryError)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise self._unusable(f"{existing} is not writable by this process", PermissionError)

    def _mkdir(self, path: Path) -> None:
        """Make ``path``, or raise naming the cache directory: it may have been removed or
        replaced since, and mode bits do not stop root, whom a write can still fail."""
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self._check_writable(path)
            raise self._unusable(f"making {path} failed ({error.strerror})", type(error)) from None

    def __repr__(self) -> str:
        return f"NodeCache({str(self.directory)!r}, limit={self.limit})"

    def path_of(self, key: str) -> Path:
        return self.directory / key

    @contextlib.contextmanager
    def _locked(self, key: str, timeout: float | None = None) -> Iterator[None]:
        filelock = _filelock()
        locks = self.directory / _LOCKS
        self._mkdir(locks)
        name = key.replace("/", "--")
        lock = filelock.FileLock(
            locks / f"{name}.lock", timeout=self.lock_timeout if timeout is None else timeout
        )
        try:
            lock.acquire()
        except filelock.Timeout:
            raise TimeoutError(
                f"{self.path_of(key)}: waited {lock.timeout:g} s for another process to finish "
                f"fetching it; raise lock_timeout, or remove {locks} if no process is running"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def get(
        self,
        key: str,
        size: int,
        fill: Callable[[Path], None],
        use: Callable[[Path], T],
        *,
        damaged: tuple[type[Exception], ...] = (),
        stale: Callable[[Path], bool] | None = None,
    ) -> T:
        """``use(path)`` of the cached file ``key`` (``size`` bytes), made first if absent by
        ``fill(temporary path)``, which must leave a complete, verified file or raise.

        A cached file is made again, too, when ``use`` raises one of ``damaged`` (it was
        damaged on this disk after it was verified: a warning says so), or when ``stale(path)``
        is True (the caller found it damaged). A file made just now is never made again here:
        ``use`` failing on it raises."""
        path = self.path_of(key)
        with self._locked(key):
            if stale is not None and path.exists() and stale(path):
                path.unlink()
            if path.exists():
                os.utime(path)  # most recently used
                try:
                    # ``use`` runs under the lock, so that no other process evicts the file
                    # before it is opened
                    return use(path)
                except damaged as error:
                    warnings.warn(
                        f"{path}: the cached copy failed its checks ({error}); fetching it "
                        f"again (if this recurs, check the disk that holds the cache)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    path.unlink(missing_ok=True)
            self._fill_locked(key, size, fill)
            return use(path)

    def warm(
        self, key: str, size: int, fill: Callable[[Path], None], wanted: Callable[[], bool]
    ) -> bool:
        """Fetch ``key`` ahead of need, as :meth:`get` does, unless ``wanted()`` is False once
        its lock is held: a plan replaced while this waited for another process's (or
        thread's) fetch of it must not bring back a file that was read and evicted meanwhile.
        True if the file is cached now."""
        path = self.path_of(key)
        with self._locked(key):
            if path.exists():
                os.utime(path)
                return True
            if not wanted():
                return False
            self._fill_locked(key, size, fill)
            return True

    def _fill_locked(self, key: str, size: int, fill: Callable[[Path], None]) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._make_room(size, keep=key)
        partial = path.parent / f"{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
        try:
            fill(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def contains(self, key: str) -> bool:
        return self.path_of(key).exists()

    def touch(self, key: str) -> bool:
        """Mark ``key`` most recently used; False if it is not cached. Takes no lock: a file
        evicted meanwhile just reads as absent."""
        try:
            os.utime(self.path_of(key))
        except FileNotFoundError:
            return False
        return True

    def files(self) -> list[tuple[str, int, float]]:
        """(key, bytes, mtime) of each cached file and partial download."""
        found = []
        for folder, directories, names in os.walk(self.directory):
            directories[:] = [d for d in directories if d not in (_LOCKS, _PINS)]
            for name in names:
                full = os.path.join(folder, name)
                try:
                    status = os.stat(full)
                except FileNotFoundError:
                    continue  # evicted or renamed meanwhile
                key = os.path.relpath(full, self.directory).replace(os.sep, "/")
                found.append((key, status.st_size, status.st_mtime))
        return found

    def size(self) -> int:
        """Bytes the cache directory holds now (partial downloads included)."""
        return sum(size for _, size, _ in self.files())

    def pin(self, key: str) -> bool:
        """Keep ``key`` from eviction while this process plans to read it, until :meth:`unpin`
        (or this process ends): True if it is cached now, and then marked most recently used.
        False, too, while another process or thread holds its lock (fetching, opening or
        evicting it): the caller then fetches it as if absent, and finds it if it is there."""
        pins = self.directory / _PINS
        self._mkdir(pins)
        if self._swept_by != os.getpid():
            self._sweep_pins(pins)
        try:
            with self._locked(key, timeout=0):
                # under the lock an evictor holds while it checks for pins and unlinks: the
                # file is either gone already, or kept
                self._own_pin(key).touch()
                return self.touch(key)
        except TimeoutError:
            self._own_pin(key).touch()
            return False

    def repin(self, key: str) -> bool:
        """:meth:`pin` again for a ``key`` this process pinned before and has not unpinned:
        the pin file is made again if it went (two datasets of one URL in a process share
        their pins) and the file marked used, without the lock. If an eviction removes the file
        meanwhile, it reads as absent, now or when opened, and is fetched again."""
        try:
            self._own_pin(key).touch()
        except FileNotFoundError:  # the cache directory was emptied meanwhile: start over
            return self.pin(key)
        return self.touch(key)

    def unpin(self, key: str) -> None:
        """This process no longer plans to read ``key``: it may be evicted (oldest first)."""
        self._own_pin(key).unlink(missing_ok=True)

    def _own_pin(self, key: str) -> Path:
        """This process's pin file of ``key``."""
        return self.directory / _PINS / _pin_name(key, os.getpid())

    def _sweep_pins(self, pins: Path) -> None:
        """Remove the pins of processes that ended, once per process: a worker process exits
        without unpinning, and a cache that never fills never looks at those pins otherwise
        (non-persistent workers left two a pass, without bound)."""
        self._swept_by = os.getpid()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(pins):
                key, at, _ = name.rpartition("@")
                if at:
                    _abandoned(pins / name, key + at)

    def pinned(self, key: str) -> bool:
        """Some live process plans to read ``key``. Pins of processes that ended are swept."""
        prefix = _pin_name(key, None)
        try:
            names = os.listdir(self.directory / _PINS)
        except FileNotFoundError:
            return False
        found = False
        for name in names:
            if name.startswith(prefix) and not _abandoned(self.directory / _PINS / name, prefix):
                found = True
        return found

    def _make_room(self, incoming: int, keep: str) -> None:
        """Evict least-recently-used files until ``incoming`` more bytes fit in the limit: those
        no process has pinned first, then, if that is not enough (processes sharing the cache
        plan to read more than it holds), pinned ones too, so that the limit holds."""
        with self._locked(_EVICTING):
            files = [entry for entry in self.files() if not _abandoned(self.path_of(entry[0]))]
            total = sum(size for _, size, _ in files)
            candidates = sorted(
                (mtime, key, size)
                for key, size, mtime in files
                if key != keep and not os.path.basename(key).startswith(_PARTIAL)
            )
            for spare_pinned in (True, False):
                kept = []
                for entry in candidates:
                    _, key, size = entry
                    if total + incoming <= self.limit:
                        return
                    try:
                        with self._locked(key, timeout=0):
                            if spare_pinned and self.pinned(key):
                                kept.append(entry)
                                continue
                            self.path_of(key).unlink(missing_ok=True)
                    except TimeoutError:
                        continue  # another process is fetching or opening it: keep it
                    total -= size
                candidates = kept


def _pin_name(key: str, pid: int | None) -> str:
    """The pin file of ``key`` for process ``pid`` (its prefix for all of them, if None)."""
    prefix = key.replace("/", "--") + "@"
    return prefix if pid is None else f"{prefix}{pid}"


def _abandoned(path: Path, prefix: str = _PARTIAL) -> bool:
    """``path`` is the partial download (or the pin) of a process that no longer runs (killed
    mid-download, or exited with a download in flight): remove it, and say so."""
    if not path.name.startswith(prefix):
        return False
    try:
        pid = int(path.name[len(prefix) :].split("-", 1)[0])
        os.kill(pid, 0)
    except ValueError:
        pass  # not a name this cache gave: leave it be
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return True
    except PermissionError:
        pass  # alive, another user's
    return False
