"""Flags shared with forked workers: an anonymous shared mapping, one byte a flag.

A fork inherits the mapping itself, not a copy, so a flag set in one worker is seen by the
parent and by every later worker, with nothing in /dev/shm to clean up: the kernel frees the
memory with the last process that maps it. A spawned process gets flags of its own.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["shared_flags"]


def shared_flags(count: int) -> np.ndarray:
    """``count`` zeroed uint8 flags shared with the processes this one forks from now on."""
    buffer = mmap.mmap(-1, max(count, 1), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, np.uint8, count)
