"""A worker process's lifeline to the main process: it dies with it, even while it is busy in
``__getitem__``."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["watch_parent"]

_WATCHDOG_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1  # from linux/prctl.h


def _note_forking_thread() -> None:
    # Runs in the thread that forks, just before; the child inherits this thread's locals.
    _fork_origin.main_thread = threading.current_thread() is threading.main_thread()


_fork_origin = threading.local()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_note_forking_thread)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_me_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux's PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(main_pid: int) -> None:
    """Make this worker die with the main process, even while it is busy in ``__getitem__``.

    Two guards. PDEATHSIG, where it is exact: the kernel sends it when the *thread* that
    forked this process exits, so it is set only in a worker forked by the main process's main
    thread (noted in that thread's locals at fork, which the child inherits: nothing to pass).
    A worker forked from another thread (a loader iterated in a thread that may end before the
    process does), spawned (no memory of who started it) or forked by a forkserver (whose death
    is not the main process's) does without. And a daemon thread in every worker that exits
    it within a fraction of a second when it is reparented, or when the main process (not its
    direct parent, under forkserver) is gone. PDEATHSIG needs no GIL, so it also ends a worker
    stuck in C code that holds it; the watchdog covers everything else.
    """
    parent = os.getppid()
    if getattr(_fork_origin, "main_thread", False) and parent == main_pid:
        _kill_me_with_parent()

    def watch() -> None:
        while True:
            if os.getppid() != parent or (parent != main_pid and not _alive(main_pid)):
                os._exit(0)  # the main process is gone: no one is left to send a batch to
            time.sleep(_WATCHDOG_SECONDS)

    watch_thread = threading.Thread(target=watch, name="ladle-parent-watchdog", daemon=True)
    watch_thread.start()  # its first check catches a parent that died before prctl
