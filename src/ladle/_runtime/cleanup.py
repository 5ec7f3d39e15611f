"""What the main process must not leave behind, and how it makes sure: who owns which name in
/dev/shm, the sweep of a dead process's names, and what SIGTERM closes first.

Names. A segment is ``ladle-<pid>-<token>-<n>``: the pid, so that a process's segments can be
found; a random token per process (and directory), so that jobs in separate PID namespaces
sharing one /dev/shm (``docker --ipc=host``, the containers of a pod, each of them maybe pid 1)
never collide; an existing name is never reused (O_EXCL: another name is tried). While a
process has segments in a directory it holds an exclusive ``flock`` on the lock file
``ladle-<pid>-<token>.lock`` there: close-on-exec, and dropped by forked children (the lock
stays the parent's). flock works across PID namespaces on one tmpfs and ends with the process
however it ends, so orphans are judged by their lock, never by a pid that may be another
namespace's: :func:`sweep_orphans` removes a token's segments, then its lock file, only when it
can take that lock. Names it cannot judge (an older ladle's ``ladle-<pid>-<n>``, segments
without a lock file) are left alone. An owner unlinks its segments, then its lock file, then
lets go of the lock; the lock file goes with its last segment, and everything of the process
goes at interpreter exit.

SIGTERM. ``docker stop``, Kubernetes and SLURM preemption end a job with SIGTERM, whose default
action kills the process on the spot, as SIGKILL does: segments stay, workers run on. So while
anything that must not outlive the process is alive (slab pools, the lock files here, the
engine's worker pools), a SIGTERM handler runs every registered ``emergency_close()`` (unlink
segments, kill workers), then restores the default action and raises SIGTERM again: the process
still dies by SIGTERM, as its parent (a shell, a scheduler) expects. The handler is installed
only where it changes nothing else: in the main thread (where Python runs signal handlers) and
over the default action; a handler of the user's, or SIG_IGN, is never replaced. Not in a pid 1
either (a container's entrypoint): the kernel ignores a SIGTERM left to the default action there,
so the handler would have to swallow the signal after closing everything, or turn it into an
exit. When the last resource goes, the default action comes back.

``emergency_close()`` runs inside a signal handler, in the main thread, at any point of the
program (possibly in the middle of the resource's own methods): it must be quick, take no lock,
wait for nothing, and tolerate half-updated state. Its errors are ignored. Resources are held by
weak reference and closed newest first.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import re
import secrets
import signal
import sys
import threading
import weakref
from typing import Any, Protocol

if sys.platform != "win32":
    import fcntl

__all__ = [
    "LOCK_SUFFIX",
    "PREFIX",
    "EmergencyClosable",
    "emergency_close_all",
    "handler_installed",
    "new_segment",
    "register",
    "segment_gone",
    "sweep_orphans",
    "unlink_segment",
    "unregister",
]

PREFIX = "ladle-"
LOCK_SUFFIX = ".lock"
_TOKEN_BYTES = 4
_ATTEMPTS = 16  # names to try on EEXIST (a token collision: 1 in 2**32) before giving up
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_serial = itertools.count()  # one sequence per process: several pools may be alive at once
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | _CLOEXEC
_SEGMENT = re.compile(rf"^{PREFIX}\d+-[0-9a-f]{{{2 * _TOKEN_BYTES}}}-\d+$")
_LOCK = re.compile(rf"^{PREFIX}\d+-[0-9a-f]{{{2 * _TOKEN_BYTES}}}{re.escape(LOCK_SUFFIX)}$")


# -- the SIGTERM registry --------------------------------------------------------------------


class EmergencyClosable(Protocol):
    def emergency_close(self) -> None: ...


_resources: dict[int, weakref.ref[Any]] = {}
_pid = os.getpid()  # the process whose resources these are (a forked child starts empty)


def register(resource: EmergencyClosable) -> None:
    """Close ``resource`` (held weakly) if this process gets SIGTERM; installs the handler."""
    key = id(resource)

    def forget(ref: weakref.ref[Any]) -> None:
        if _resources.get(key) is ref:
            del _resources[key]
            _uninstall()

    _resources[key] = weakref.ref(resource, forget)
    _install()


def unregister(resource: EmergencyClosable) -> None:
    """``resource`` has been closed normally: SIGTERM no longer concerns it. Idempotent."""
    ref = _resources.get(id(resource))
    if ref is not None and ref() is resource:
        del _resources[id(resource)]
    _uninstall()


def emergency_close_all() -> None:
    """Run every registered resource's ``emergency_close()``, newest first, ignoring errors."""
    if os.getpid() != _pid:
        return
    for ref in reversed(list(_resources.values())):
        resource = ref()
        if resource is not None:
            with contextlib.suppress(Exception):
                resource.emergency_close()


def handler_installed() -> bool:
    """Whether ladle's SIGTERM handler is the current one."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _on_sigterm(signum: int, frame: Any) -> None:
    try:
        emergency_close_all()
    finally:
        # Die of the signal itself: the default action back, the signal unblocked in this
        # thread, and raised here, where it is delivered before raise_signal returns.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        signal.raise_signal(signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install() -> None:
    if handler_installed() or os.getpid() == 1 or not _in_main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _uninstall() -> None:
    # Run by the GC in another thread, the handler stays until the main thread registers or
    # unregisters next; with no resources left it only dies of the signal, as the default would.
    if not _resources and _in_main_thread() and handler_installed():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- names and locks -------------------------------------------------------------------------


def _flock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if someone else holds it."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not a newer one, nor none)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class _Claim:
    """This process's names in one directory: its segments and, while any exists, its lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.token = secrets.token_hex(_TOKEN_BYTES)
        self.fd: int | None = None
        self.count = 0  # our segments in the directory, including ones being made

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.pid}-{self.token}-"

    @property
    def lock_path(self) -> str:
        return os.path.join(self.directory, f"{PREFIX}{self.pid}-{self.token}{LOCK_SUFFIX}")

    def hold(self) -> None:
        """Hold the lock, creating the lock file; a fresh token when the name is taken."""
        for _ in range(_ATTEMPTS):
            if self.fd is not None:
                return
            try:
                fd = os.open(self.lock_path, _CREATE, 0o600)
            except FileExistsError:
                self.token = secrets.token_hex(_TOKEN_BYTES)
                continue
            if _flock(fd) and _same_file(fd, self.lock_path):
                self.fd = fd
                register(self)
                return
            # A sweeper took it between our open and our flock, judging it abandoned: it
            # deletes the file (and the segments of that name: none yet). Take another name.
            os.close(fd)
            self.token = secrets.token_hex(_TOKEN_BYTES)
        raise FileExistsError(errno.EEXIST, f"no free lock file name in {self.directory}")

    def release(self) -> None:
        """No segment of ours is left here: remove the lock file, then let go of the lock."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)
        os.close(fd)
        unregister(self)

    def emergency_close(self) -> None:
        """Unlink every name of ours here, segments first, then the lock file. For SIGTERM and
        interpreter exit: takes no lock, keeps no books (the process is going)."""
        if self.pid != os.getpid() or self.fd is None:
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                if name.startswith(self.prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)


_claims: dict[str, _Claim] = {}
_claims_mutex = threading.RLock()  # reentrant: a finalizer run by the GC may unlink meanwhile


def new_segment(directory: str) -> tuple[str, int]:
    """Create a segment of this process's in ``directory``, holding its lock from now on:
    (the segment's name, an fd open on it, read-write, close-on-exec). Raises OSError when
    the directory is not writable. Call :func:`segment_gone` once it is unlinked."""
    with _claims_mutex:
        claim = _claims.get(directory)
        if claim is None:
            claim = _claims[directory] = _Claim(directory)
        claim.hold()
        claim.count += 1  # now the lock stays, even if a finalizer unlinks all the others
    try:
        for _ in range(_ATTEMPTS):
            name = f"{claim.prefix}{next(_serial)}"
            try:
                return name, os.open(os.path.join(directory, name), _CREATE, 0o600)
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, f"no free segment name in {directory}")
    except BaseException:
        segment_gone(directory)
        raise


def segment_gone(directory: str) -> None:
    """A segment made by :func:`new_segment` is unlinked; with the last, the lock file goes."""
    with _claims_mutex:
        claim = _claims.get(directory)
        if claim is not None and claim.count > 0:
            claim.count -= 1
            if claim.count == 0:
                claim.release()


def unlink_segment(path: str, directory: str) -> bool:
    """Unlink a segment :func:`new_segment` made, and count it gone; False when the name must
    stay (a /dev/shm now read-only): so does its owner's lock over it, which a sweep would
    otherwise take for an orphan's."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    segment_gone(directory)
    return True


def _take_abandoned(path: str) -> int | None:
    """An fd holding the lock of lock file ``path`` if its owner is gone, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC)
    except OSError:
        return None
    # The lock won and the name still this file's: the owner died. (A live owner keeps its
    # lock until it has removed the lock file, so a lock won after it let go finds no name.)
    if _flock(fd) and _same_file(fd, path):
        return fd
    os.close(fd)
    return None


def sweep_orphans(directory: str) -> int:
    """Unlink the segments, then the lock files, of processes that died without cleaning up
    (killed), judged by their locks; returns how many segments went. A live process's
    segments, in this PID namespace or another, are never touched, nor are names that cannot
    be judged (no lock file, or an older ladle's ``ladle-<pid>-<n>``)."""
    if sys.platform == "win32":
        return 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not _LOCK.match(name):
            continue
        path = os.path.join(directory, name)
        fd = _take_abandoned(path)
        if fd is None:
            continue
        try:
            prefix = name.removesuffix(LOCK_SUFFIX) + "-"
            for other in os.listdir(directory):  # listed again: it may have made more since
                if other.startswith(prefix) and _SEGMENT.match(other):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, other))
                        removed += 1
            with contextlib.suppress(OSError):
                os.unlink(path)
        finally:
            os.close(fd)
    return removed


# -- fork and exit ---------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    """A forked child (a worker) owns none of its parent's resources, names or handler. It
    closes its copies of the lock fds; the parent's locks stay, as they belong to open files
    the parent still has open."""
    global _pid, _claims_mutex
    _pid = os.getpid()
    _resources.clear()
    _claims_mutex = threading.RLock()
    for claim in _claims.values():
        if claim.fd is not None:
            with contextlib.suppress(OSError):
                os.close(claim.fd)
    _claims.clear()
    with contextlib.suppress(ValueError):  # not the main thread: nothing to undo there
        if handler_installed():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _at_exit() -> None:
    """Interpreter exit: no name of this process's outlives it, whatever was not closed."""
    for claim in list(_claims.values()):
        claim.emergency_close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
