"""The worker loop, shared by process and thread workers: receive a task, load, send the batch."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pickle
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ladle._runtime.context import WorkerInfo, set_allocator, set_worker_info
from ladle._runtime.messages import (
    Batch,
    Exhausted,
    Failure,
    StartEpoch,
    Stop,
    Task,
    WorkerSpec,
)
from ladle._runtime.shm import SlabWriter
from ladle.fetch import IterableFetcher, MapFetcher, open_stream

__all__ = ["Channel", "describe_indices", "process_main", "run_worker"]

_PARENT_CHECK_SECONDS = 1.0
_WATCHDOG_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1  # from linux/prctl.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


class Channel(Protocol):
    def send(self, message: Any) -> None: ...

    def recv(self) -> Any: ...


def describe_indices(indices: Any, seq: int) -> str:
    if indices is None:
        return f"batch {seq} of the stream"
    values = indices.tolist() if isinstance(indices, np.ndarray) else list(indices)
    if len(values) > 12:
        return f"samples {values[:12]}... ({len(values)} indices)"
    return f"samples {values}"


def _seed_globals(seed: int) -> None:
    """Seed the process-wide RNGs from the worker's seed, as torch does in its workers."""
    random.seed(seed)
    np.random.seed(np.random.SeedSequence(seed).generate_state(1)[0])
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


class _Loop:
    def __init__(self, spec: WorkerSpec, channel: Channel, in_process: bool) -> None:
        self.spec = spec
        self.channel = channel
        self.in_process = in_process
        self.writer = None
        if spec.shm_dir is not None:
            self.writer = SlabWriter(spec.shm_dir, spec.inherited_slabs)
        self.dataset: Any = None
        self.fetch: Callable[[Any], Any] | None = None
        self.map_fetcher: MapFetcher | None = None
        self.stream: IterableFetcher | None = None  # an iterable dataset's, for this pass
        self.started = False
        # An error while starting (unpickling the dataset, worker_init_fn, iter(dataset)):
        # every task of the pass then fails with it, so it reaches the main process as the
        # first batch's error instead of killing a worker (or silently stopping a thread).
        self.start_error: tuple[Exception, str] | None = None

    def start_epoch(self, message: StartEpoch) -> None:
        spec = self.spec
        if not self.started:
            self.dataset = pickle.loads(spec.dataset) if spec.dataset_pickled else spec.dataset
            self.spec = spec = dataclasses.replace(spec, dataset=None)  # free the pickle
            seed = (message.seed + spec.worker_id) % 2**64  # torch's rule: base seed + worker id
            if self.in_process:  # threads share the main process's RNGs: leave them alone
                _seed_globals(seed)
            set_worker_info(WorkerInfo(spec.worker_id, spec.num_workers, seed, self.dataset))
            if spec.worker_init_fn is not None:
                spec.worker_init_fn(spec.worker_id)
            self.started = True
        if spec.is_iterable:
            stream = IterableFetcher(
                open_stream(self.dataset, message.start),
                spec.batch_size,
                spec.drop_last,
                spec.collate_fn,
                message.sample_key,
                message.start,
            )
            self.stream = stream
            self.fetch = lambda indices: stream.fetch()
        else:
            if self.map_fetcher is None:
                self.map_fetcher = MapFetcher(self.dataset, spec.auto_collation, spec.collate_fn)
                self.fetch = self.map_fetcher.fetch
            self.map_fetcher.sample_key = message.sample_key

    def run_task(self, task: Task) -> Any:
        if self.start_error is not None:
            error, trace = self.start_error
            # A fresh copy per task: the stored error must not collect notes, nor hold the
            # main process's frames once raised there (threads share the object).
            try:
                copy = pickle.loads(pickle.dumps(error))
            except Exception:
                copy = RuntimeError(f"{type(error).__qualname__}: {error}")
            return self.failure(task, copy, trace)
        writer = self.writer
        if writer is not None:
            writer.begin(task.slab)
            set_allocator(writer.allocate)
        try:
            assert self.fetch is not None, "a task arrived before StartEpoch"
            batch = self.fetch(task.indices)
        except StopIteration:
            return Exhausted(task.seq, self.spec.worker_id, task.slab)
        except Exception as error:
            return self.failure(task, error, traceback.format_exc())
        finally:
            set_allocator(None)
        position = self.stream.position if self.stream is not None else None
        if writer is None:
            return Batch(task.seq, self.spec.worker_id, batch, None, False, 0, position)
        payload, used, needed = writer.encode(batch)
        return Batch(task.seq, self.spec.worker_id, payload, task.slab, used, needed, position)

    def failure(self, task: Task, error: Exception, trace: str) -> Failure:
        where = describe_indices(task.indices, task.seq)
        if self.start_error is not None:
            where = f"{where} (the worker failed to start)"
        error.add_note(
            f"\nRaised in ladle worker {self.spec.worker_id} (pid {os.getpid()}) while loading "
            f"{where}. Worker traceback:\n{trace}"
        )
        blob: Any = error
        if self.in_process:
            try:
                blob = pickle.dumps(error)
                pickle.loads(blob)  # an exception that pickles but cannot be rebuilt
            except Exception:
                blob = None
        return Failure(
            task.seq,
            self.spec.worker_id,
            blob,
            type(error).__qualname__,
            "".join([str(error), *getattr(error, "__notes__", [])]),
            task.slab,
        )

    def run(self) -> None:
        while True:
            message = self.channel.recv()
            if message is None or isinstance(message, Stop):
                return
            if isinstance(message, StartEpoch):
                try:
                    self.start_error = None
                    self.start_epoch(message)
                except Exception as error:
                    self.start_error = (error, traceback.format_exc())
            elif isinstance(message, Task):
                self.channel.send(self.run_task(message))


def run_worker(spec: WorkerSpec, channel: Channel, in_process: bool) -> None:
    loop = _Loop(spec, channel, in_process)
    try:
        loop.run()
    finally:
        if loop.writer is not None:
            loop.writer.close()
        set_worker_info(None)


class _PipeChannel:
    """A process worker's end of its pipe; gives up when the main process is gone."""

    def __init__(self, connection: Any, parent_pid: int) -> None:
        self.connection = connection
        self.parent_pid = parent_pid

    def send(self, message: Any) -> None:
        self.connection.send(message)

    def recv(self) -> Any:
        while not self.connection.poll(_PARENT_CHECK_SECONDS):
            if os.getppid() != self.parent_pid:
                return None
        try:
            return self.connection.recv()
        except EOFError:
            return None


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in this worker instead of returning it to the system.

    A worker allocates and frees the same sizes batch after batch (decoded images, per-sample
    arrays). By default glibc gives big blocks back to the kernel at once, so each batch pays
    the page faults again; pinning its thresholds keeps one batch's worth of heap mapped.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    except (OSError, AttributeError):
        pass  # not glibc: keep its defaults


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


def _watch_parent(main_pid: int) -> int:
    """Make this worker die with the main process, even while it is busy in ``__getitem__``;
    returns the parent pid it started with.

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
    return parent


def process_main(spec: WorkerSpec, connection: Any) -> None:
    """Entry point of a worker process."""
    # Ctrl-C reaches the whole process group; the main process decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = _watch_parent(spec.parent_pid)
    _keep_freed_memory()
    try:
        run_worker(spec, _PipeChannel(connection, parent), in_process=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the main process went away mid-send: nothing left to do
    finally:
        connection.close()
