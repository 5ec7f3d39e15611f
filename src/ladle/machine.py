"""What this machine offers a loader: the CPUs this process may run on, and the memory free."""

from __future__ import annotations

import os

__all__ = ["available_memory", "cpus"]


def cpus() -> int:
    """The CPUs this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    """The bytes the system could give without swapping (MemAvailable); 8 GiB where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30  # not Linux: a modest guess
