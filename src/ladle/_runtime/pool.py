"""Worker pools: inline, thread and process workers behind one interface.

``send(worker_id, command)`` hands a worker a command; ``receive(timeout)`` returns the next
reply from any worker, None on timeout, and raises :class:`WorkerDiedError` when a worker
process is gone. ``close(grace)`` is idempotent and leaves no process or thread behind. The
inline pool runs each task in the calling thread as it is sent: it is the reference the others
are tested against.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import Any, Protocol

from ladle._runtime import cleanup
from ladle._runtime.context import StageClock
from ladle._runtime.heap import frozen_while_forking
from ladle._runtime.messages import Batch, Command, Reply, StartEpoch, Stop, Task, WorkerSpec
from ladle._runtime.worker import Loop, process_main, run_worker
from ladle.errors import WorkerDiedError

__all__ = ["InlinePool", "Pool", "ProcessPool", "ThreadPool", "describe_exit"]

_JOIN_SECONDS = 2.0


class Pool(Protocol):
    @property
    def pids(self) -> list[int]: ...

    def send(self, worker_id: int, command: Command) -> None: ...

    def receive(self, timeout: float | None) -> Reply | None: ...

    def close(self, grace: float) -> None: ...


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ""
        if -exitcode == signal.SIGKILL:
            hint = "; out of memory is the usual cause"
        elif -exitcode == signal.SIGBUS:
            hint = (
                "; a full or too small shared-memory mount (/dev/shm) is the usual cause: "
                "enlarge it (docker run --shm-size=2g) or free space in it"
            )
        return f"was killed by {name} (signal {-exitcode}){hint}"
    return f"exited with code {exitcode}"


class InlinePool:
    """One worker that is the calling thread: a task runs as it is sent."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._loop = Loop(spec, pickles=False)
        self._replies: collections.deque[Reply] = collections.deque()

    @property
    def pids(self) -> list[int]:
        return [os.getpid()]

    @property
    def clock(self) -> StageClock:
        """The running totals of the tasks' stages (see StageClock)."""
        return self._loop.clock

    def send(self, worker_id: int, command: Command) -> None:
        if isinstance(command, StartEpoch):
            self._loop.start_epoch(command)
        elif isinstance(command, Task):
            self._replies.append(self._loop.run_task(command))

    def receive(self, timeout: float | None) -> Reply | None:
        return self._replies.popleft() if self._replies else None

    def close(self, grace: float = 0.0) -> None:
        self._replies.clear()
        self._loop.close()


class _QueueChannel:
    def __init__(self, inbox: queue.SimpleQueue[Command], outbox: queue.SimpleQueue[Reply]):
        self.inbox, self.outbox = inbox, outbox

    def send(self, reply: Reply) -> None:
        self.outbox.put(reply)

    def recv(self) -> Command | None:
        return self.inbox.get()

    def pending(self) -> list[Command]:
        waiting = []
        with contextlib.suppress(queue.Empty):
            while True:
                waiting.append(self.inbox.get_nowait())
        return waiting


class ThreadPool:
    """Worker threads in this process: batches are handed over by reference."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self._results: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self._inboxes: list[queue.SimpleQueue[Command]] = [queue.SimpleQueue() for _ in specs]
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

    def send(self, worker_id: int, command: Command) -> None:
        self._inboxes[worker_id].put(command)

    def receive(self, timeout: float | None) -> Reply | None:
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


def _check_can_fork_workers() -> None:
    if multiprocessing.current_process().daemon:
        raise RuntimeError(
            "a DataLoader with worker_type='process' was iterated inside a worker process, "
            "which may not start processes of its own (daemonic processes are not allowed to "
            "have children); use worker_type='thread' or num_workers=0 for a loader that runs "
            "inside a worker"
        )


class ProcessPool:
    """Worker processes, each with a duplex pipe to the main process. Forked workers start with
    the parent's objects frozen out of their collector's reach (see heap.py)."""

    def __init__(self, specs: list[WorkerSpec], context: Any) -> None:
        _check_can_fork_workers()
        self._connections: list[Any] = []
        self._processes: list[Any] = []
        self._closed = False
        try:
            with frozen_while_forking(context.get_start_method() == "fork"):
                for spec in specs:
                    ours, theirs = context.Pipe(duplex=True)
                    process = context.Process(
                        target=process_main,
                        args=(spec, theirs),
                        name=f"ladle-worker-{spec.worker_id}",
                        daemon=True,
                    )
                    self._connections.append(ours)
                    try:
                        process.start()
                    finally:
                        theirs.close()
                    self._processes.append(process)
        except BaseException:
            self.close(0.0)
            raise
        cleanup.register(self)  # SIGTERM of the main process kills the workers too
        self._by_handle = {c: i for i, c in enumerate(self._connections)}
        self._last_read = -1
        self._sentinels = {p.sentinel: i for i, p in enumerate(self._processes)}

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def send(self, worker_id: int, command: Command) -> None:
        try:
            self._connections[worker_id].send(command)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._raise_dead(worker_id)

    def receive(self, timeout: float | None) -> Reply | None:
        ready = wait([*self._connections, *self._sentinels], timeout)
        if not ready:
            return None
        # Read replies before reporting deaths: a worker may have sent its batch, then died.
        # Take the ready workers in turn: always reading the first would leave the others'
        # replies (and the slabs they hold) piling up in their pipes.
        readable = sorted(self._by_handle[h] for h in ready if h in self._by_handle)
        if readable:
            after = [w for w in readable if w > self._last_read]
            worker_id = self._last_read = (after or readable)[0]
            connection = self._connections[worker_id]
            try:
                reply: Reply = connection.recv()
                if isinstance(reply, Batch) and reply.pickled:
                    reply = Batch(
                        reply.seq,
                        reply.worker_id,
                        connection.recv_bytes(),
                        True,
                        reply.slab,
                        reply.slab_used,
                        reply.bytes_needed,
                        reply.position,
                        reply.times,
                    )
            except (EOFError, ConnectionResetError, OSError):
                self._raise_dead(worker_id)
            return reply
        self._raise_dead(self._sentinels[ready[0]])
        return None  # unreachable: _raise_dead raises

    def _raise_dead(self, worker_id: int) -> None:
        process = self._processes[worker_id]
        process.join(0.5)
        message = (
            f"ladle worker {worker_id} (pid {process.pid}) {describe_exit(process.exitcode)}; "
            f"the loader has stopped all its workers"
        )
        raise WorkerDiedError(message, worker_id, process.pid, process.exitcode)

    def close(self, grace: float = _JOIN_SECONDS) -> None:
        """Ask every worker to stop, wait ``grace`` seconds, then kill the ones still running."""
        if self._closed:
            return
        self._closed = True
        cleanup.unregister(self)
        for connection in self._connections:
            with contextlib.suppress(OSError, ValueError):
                connection.send(Stop())
        deadline = time.monotonic() + grace
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.kill()
        for process in self._processes:
            process.join(_JOIN_SECONDS)
        for connection in self._connections:
            connection.close()
        for process in self._processes:
            if process.exitcode is not None:
                process.close()

    def emergency_close(self) -> None:
        """SIGTERM: kill every worker now; no joins, no locks (see cleanup.py)."""
        for pid in self.pids:
            with contextlib.suppress(OSError, TypeError):
                os.kill(pid, signal.SIGKILL)
