"""Ending a child process that runs a loader: the benchmarks' children and ``ladle bench``'s."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

__all__ = ["stop_child"]


def stop_child(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Reap ``process``. If it still runs (Ctrl-C here, an error), interrupt it first, as Ctrl-C
    would, so that its loader stops its workers and frees its shared memory; kill it if it
    does not end within ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
