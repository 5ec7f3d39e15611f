"""Worker pools: process and thread workers behind one interface.

``send(worker_id, message)`` hands a worker a message; ``receive(timeout)`` returns the next
message from any worker, None on timeout, and raises :class:`WorkerDiedError` when a worker
process is gone. ``close()`` is idempotent and leaves no process or thread behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import Any, Protocol

from ladle._runtime.messages import Stop, WorkerSpec
from ladle._runtime.worker import process_main, run_worker
from ladle.errors import WorkerDiedError

__all__ = ["Pool", "ProcessPool", "ThreadPool"]

_JOIN_SECONDS = 2.0


class Pool(Protocol):
    def send(self, worker_id: int, message: Any) -> None: ...

    def receive(self, timeout: float | None) -> Any: ...

    def close(self, grace: float = ...) -> None: ...


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = "; out of memory is the usual cause" if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name} (signal {-exitcode}){hint}"
    return f"exited with code {exitcode}"


class ProcessPool:
    """Worker processes, each with a duplex pipe to the main process."""

    def __init__(self, specs: list[WorkerSpec], context: Any) -> None:
        self._connections: list[Any] = []
        self._processes: list[Any] = []
        self._closed = False
        try:
            for spec in specs:
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=process_main,
                    args=(spec, theirs),
                    name=f"ladle-worker-{spec.worker_id}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self._connections.append(ours)
                self._processes.append(process)
        except BaseException:
            self.close()
            raise
        self._by_handle = {c: i for i, c in enumerate(self._connections)}
        self._sentinels = {p.sentinel: i for i, p in enumerate(self._processes)}

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def send(self, worker_id: int, message: Any) -> None:
        try:
            self._connections[worker_id].send(message)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._raise_dead(worker_id)

    def receive(self, timeout: float | None) -> Any:
        ready = wait([*self._connections, *self._sentinels], timeout)
        if not ready:
            return None
        # Read messages before reporting deaths: a worker may have sent its batch, then died.
        for handle in ready:
            worker_id = self._by_handle.get(handle)
            if worker_id is not None:
                try:
                    return self._connections[worker_id].recv()
                except (EOFError, ConnectionResetError, OSError):
                    self._raise_dead(worker_id)
        self._raise_dead(self._sentinels[ready[0]])

    def _raise_dead(self, worker_id: int) -> None:
        process = self._processes[worker_id]
        process.join(0.5)
        message = (
            f"ladle worker {worker_id} (pid {process.pid}) {_describe_exit(process.exitcode)} "
            f"while loading; the loader has stopped all its workers"
        )
        raise WorkerDiedError(message, worker_id, process.pid, process.exitcode)

    def close(self, grace: float = _JOIN_SECONDS) -> None:
        """Ask every worker to stop, wait ``grace`` seconds, then kill the ones still running."""
        if self._closed:
            return
        self._closed = True
        for connection in self._connections:
            with contextlib.suppress(OSError, ValueError):
                connection.send(Stop())
        deadline = time.monotonic() + grace
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(_JOIN_SECONDS)
        for connection in self._connections:
            connection.close()
        for process in self._processes:
            if process.exitcode is not None:
                process.close()


class _QueueChannel:
    def __init__(self, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        self.inbox, self.outbox = inbox, outbox

    def send(self, message: Any) -> None:
        self.outbox.put(message)

    def recv(self) -> Any:
        return self.inbox.get()


class ThreadPool:
    """Worker threads in this process: batches are handed over by reference."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self._results: queue.Queue[Any] = queue.Queue()
        self._inboxes: list[queue.Queue[Any]] = [queue.Queue() for _ in specs]
        self._threads = [
            threading.Thread(
                target=run_worker,
                args=(spec, _QueueChannel(inbox, self._results), False),
                name=f"ladle-worker-{spec.worker_id}",
                daemon=True,
            )
            for spec, inbox in zip(specs, self._inboxes, strict=True)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    @property
    def pids(self) -> list[int]:
        return [os.getpid()] * len(self._threads)

    def send(self, worker_id: int, message: Any) -> None:
        self._inboxes[worker_id].put(message)

    def receive(self, timeout: float | None) -> Any:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, grace: float = _JOIN_SECONDS) -> None:
        """Ask every worker to stop and wait up to ``grace`` seconds. A thread busy inside the
        dataset cannot be interrupted: it exits as soon as that call returns."""
        if self._closed:
            return
        self._closed = True
        for inbox in self._inboxes:
            inbox.put(Stop())
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
