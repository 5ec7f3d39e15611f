"""The worker loop, one implementation for inline, thread and process workers: receive a task,
load its batch, send the reply."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import pickle
import queue
import random
import signal
import sys
import threading
import time
import traceback
from typing import Any, Protocol

import numpy as np

from ladle._runtime import pickling
from ladle._runtime.context import (
    StageClock,
    WorkerInfo,
    set_allocator,
    set_worker_info,
)
from ladle._runtime.lifeline import watch_parent
from ladle._runtime.messages import (
    Batch,
    BatchSource,
    Cancelled,
    Command,
    Exhausted,
    Failure,
    Fetch,
    Reply,
    StartEpoch,
    Stop,
    Task,
    TaskTimes,
    WorkerSpec,
)
from ladle._runtime.slab_writer import SlabWriter

__all__ = ["Channel", "Loop", "describe_indices", "process_main", "run_worker"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
_TRIM_AFTER = 1 << 20  # arrays this big that travelled pickled: trim the heap after them


class Channel(Protocol):
    def send(self, reply: Reply) -> None: ...

    def recv(self) -> Command | None:
        """The next command; None when the main process is gone."""
        ...

    def pending(self) -> list[Command]:
        """The commands already waiting, without blocking."""
        ...


def describe_indices(indices: object, seq: int) -> str:
    if indices is None:
        return f"batch {seq} of the stream"
    if isinstance(indices, np.ndarray):
        values = indices.tolist()
    elif isinstance(indices, list | tuple):
        values = list(indices)
    else:
        return f"sample {indices!r}"
    if len(values) > 12:
        return f"samples {values[:12]}... ({len(values)} indices)"
    return f"samples {values}"


def _seed_globals(base_seed: int, worker_id: int) -> None:
    """Seed the process-wide RNGs as torch seeds its workers': ``random`` and torch from the
    worker's seed (base seed + id), NumPy's legacy generator from a SeedSequence of the id and
    the base seed's two 32-bit halves, so ``np.random`` draws in a worker are torch's too."""
    seed = (base_seed + worker_id) % 2**64
    random.seed(seed)
    words = [worker_id, base_seed & 0xFFFFFFFF, base_seed >> 32, 0]
    np.random.seed(np.random.SeedSequence(words).generate_state(4))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _tell_torch(info: WorkerInfo) -> None:
    """Make ``torch.utils.data.get_worker_info()`` answer with this worker's info, as it does
    in torch's own workers: code written for torch (an IterableDataset that shards itself,
    torch's collate) then sees a worker. torch keeps that answer in a module global, the only
    place its function reads."""
    worker_module = sys.modules.get("torch.utils.data._utils.worker")
    if worker_module is None:
        return
    worker_module._worker_info = worker_module.WorkerInfo(  # type: ignore[attr-defined]
        id=info.id, num_workers=info.num_workers, seed=info.seed, dataset=info.dataset
    )


def _unpickled_source(spec: WorkerSpec) -> BatchSource:
    if isinstance(spec.source, bytes):
        source: BatchSource = pickle.loads(spec.source)
        return source
    return spec.source


class Loop:
    """One worker's state: its source, the current pass's fetch, its slab writer."""

    def __init__(self, spec: WorkerSpec, pickles: bool) -> None:
        self.worker_id = spec.worker_id
        self.spec: WorkerSpec | None = spec  # dropped once started: it may hold a big pickle
        self.pickles = pickles  # replies cross a process boundary
        self.writer = SlabWriter(spec.shm_dir, spec.inherited_slabs) if spec.shm_dir else None
        self.inline = spec.inline
        self.source: BatchSource | None = None
        self.fetch: Fetch | None = None
        # An error while starting (unpickling the dataset, worker_init_fn, iter(dataset)):
        # every task of the pass then fails with it, so it reaches the main process as the
        # first batch's error instead of killing a worker (or silently stopping a thread).
        self.start_error: tuple[Exception, str] | None = None
        self.inbox: collections.deque[Command] = collections.deque()
        self.pid = os.getpid()
        # where the tasks' time goes; the main process's loop keeps running totals, read by
        # the pass's stats (see StageClock)
        self.clock = StageClock()

    def start_epoch(self, message: StartEpoch) -> None:
        if self.source is None and self.spec is None:
            return  # the worker failed to start: every pass reports that first error again
        self.start_error = None
        try:
            if self.source is None:
                self._start(message.seed)
            assert self.source is not None
            self.fetch = self.source.open(message.start, message.sample_key, self.clock)
        except Exception as error:
            self.start_error = (error, traceback.format_exc())

    def _start(self, seed: int) -> None:
        spec = self.spec
        assert spec is not None
        self.spec = None
        source = _unpickled_source(spec)
        if not self.inline:
            if self.pickles:  # threads share the main process's RNGs: leave them alone
                _seed_globals(seed, spec.worker_id)
            seed = (seed + spec.worker_id) % 2**64  # torch's rule: base seed + worker id
            info = WorkerInfo(spec.worker_id, spec.num_workers, seed, source.dataset)
            set_worker_info(info)
            if self.pickles:  # a process of its own: torch's process-wide answer can be ours
                _tell_torch(info)
            if spec.worker_init_fn is not None:
                spec.worker_init_fn(spec.worker_id)
        self.source = source

    def run_task(self, task: Task) -> Reply:
        if self.start_error is not None:
            error, trace = self.start_error
            # A fresh copy per task: the stored error must not collect notes, nor hold the
            # main process's frames once raised there (threads share the object).
            try:
                copy = pickle.loads(pickle.dumps(error))
            except Exception:
                copy = RuntimeError(f"{type(error).__qualname__}: {error}")
            return self.failure(task, copy, trace, "(the worker failed to start)")
        writer = self.writer
        if writer is not None:
            writer.begin(task.slab)
            set_allocator(writer.allocate)
        fetch = self.fetch
        assert fetch is not None, "a task arrived before StartEpoch"
        clock = self.clock  # the fetcher's too
        if not self.inline:
            clock.reset()
        started = 0.0 if self.inline else time.perf_counter()
        try:
            batch = fetch(task.indices)
        except StopIteration:
            if task.indices is None:
                return Exhausted(task.seq, self.worker_id, task.slab)
            error = RuntimeError("StopIteration was raised while loading a map-style batch")
            return self.failure(task, error, traceback.format_exc())
        except Exception as error:
            return self.failure(task, error, traceback.format_exc())
        except BaseException as error:
            if self.inline or self.pickles:
                raise  # the main thread's Ctrl-C; a process worker's exit is seen as such
            # A thread worker would die silently and leave the main process waiting.
            return self.failure(task, error, traceback.format_exc())
        finally:
            if writer is not None:
                set_allocator(None)
        position = fetch.position
        if self.inline:
            # the main process's own task, inside the caller's next(): no times sent, the
            # clock's totals are read when the stats sum
            return Batch(task.seq, self.worker_id, batch, False, None, False, 0, position)
        fetched = time.perf_counter()
        if not self.pickles:
            times = self._times(clock, started, fetched, 0.0)
            return Batch(task.seq, self.worker_id, batch, False, None, False, 0, position, times)
        payload, used, needed = writer.encode(batch) if writer is not None else (batch, False, 0)
        try:
            blob = pickling.dumps(payload)
        except Exception as error:
            error.add_note(
                f"The batch loaded, but it could not be pickled to cross to the main process "
                f"({type(error).__name__}: {error}); return picklable values (arrays, numbers, "
                f"str) from the dataset and collate_fn, or use worker_type='thread'"
            )
            return self.failure(task, error, traceback.format_exc())
        times = self._times(clock, started, fetched, time.perf_counter() - fetched)
        return Batch(task.seq, self.worker_id, blob, True, task.slab, used, needed, position, times)

    def _times(self, clock: StageClock, started: float, fetched: float, encode: float) -> TaskTimes:
        transform, collate = clock.transform, clock.collate
        fetch = max(0.0, fetched - started - transform - collate)
        return TaskTimes(started, fetch, transform, collate, encode, clock.samples, self.pid)

    def failure(self, task: Task, error: BaseException, trace: str, why: str = "") -> Failure:
        where = describe_indices(task.indices, task.seq)
        if not self.inline:
            error.add_note(
                f"\nRaised in ladle worker {self.worker_id} (pid {os.getpid()}) while loading "
                f"{where}{' ' + why if why else ''}. Worker traceback:\n{trace}"
            )
        blob: BaseException | bytes | None = error
        if self.pickles:
            try:
                blob = pickle.dumps(error)
                pickle.loads(blob)  # an exception that pickles but cannot be rebuilt
            except Exception:
                blob = None
        return Failure(
            task.seq,
            self.worker_id,
            blob,
            type(error).__qualname__,
            "".join([str(error), *getattr(error, "__notes__", [])]),
            task.slab,
        )

    def run(self, channel: Channel) -> None:
        inbox = self.inbox
        while True:
            message = inbox.popleft() if inbox else channel.recv()
            if message is None or isinstance(message, Stop):
                return
            if isinstance(message, StartEpoch):
                self.start_epoch(message)
                continue
            # Look at what waits behind this task first: a stop, or a new pass that makes the
            # rest of this one moot, is then obeyed at once instead of after the queued work.
            inbox.extend(channel.pending())
            if any(isinstance(waiting, Stop) for waiting in inbox):
                return
            if any(isinstance(waiting, StartEpoch) for waiting in inbox):
                channel.send(Cancelled(message.seq, self.worker_id, message.slab))
                continue
            reply = self.run_task(message)
            channel.send(reply)
            trim = (
                self.pickles
                and isinstance(reply, Batch)
                and not reply.slab_used
                and reply.bytes_needed >= _TRIM_AFTER
            )
            # Dropped before waiting for the next task: a thread worker's batch or error would
            # otherwise stay alive (and with it what it refers to) until then.
            del reply
            if trim:
                _return_freed_memory()  # the pickle's bytes are gone now

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if not self.inline:
            set_worker_info(None)


def run_worker(spec: WorkerSpec, channel: Channel, pickles: bool) -> None:
    loop = Loop(spec, pickles)
    try:
        loop.run(channel)
    finally:
        loop.close()


class _PipeChannel:
    """A process worker's end of its pipe; gives up when the main process is gone. A pickled
    batch travels as two frames, the reply and then its payload's bytes.

    Commands are read by a thread of their own as soon as they arrive: a worker blocked sending
    a big reply must not leave the main process blocked sending it a big task (a batch of
    32,768 indices fills a pipe), and a Stop or a new pass is seen while a task still runs."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._inbox: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        reader = threading.Thread(target=self._read, name="ladle-worker-inbox", daemon=True)
        reader.start()

    def _read(self) -> None:
        while True:
            try:
                message: Command = self.connection.recv()
            except (EOFError, OSError):
                self._inbox.put(None)
                return
            self._inbox.put(message)
            if isinstance(message, Stop):
                return

    def send(self, reply: Reply) -> None:
        if isinstance(reply, Batch) and reply.pickled:
            blob = reply.payload
            assert isinstance(blob, bytes)
            self.connection.send(
                Batch(
                    reply.seq,
                    reply.worker_id,
                    None,
                    True,
                    reply.slab,
                    reply.slab_used,
                    reply.bytes_needed,
                    reply.position,
                    reply.times,
                )
            )
            self.connection.send_bytes(blob)
            return
        self.connection.send(reply)

    def recv(self) -> Command | None:
        # The reader sees the pipe close when the main process dies (the lifeline's watchdog
        # also ends the worker then), so a blocking wait is safe.
        return self._inbox.get()

    def pending(self) -> list[Command]:
        waiting: list[Command] = []
        with contextlib.suppress(queue.Empty):
            while True:
                message = self._inbox.get_nowait()
                waiting.append(Stop() if message is None else message)
        return waiting


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


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system now. A batch that travelled pickled (the
    first ones, before the main process knows how big a slab to lend, or any batch when
    /dev/shm is full) needed the collated arrays and their pickle besides the samples: kept
    by _keep_freed_memory, that peak would stay resident for the worker's whole life."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _one_torch_thread() -> None:
    """A forked child inherits torch's intra-op thread pool in a state it cannot use: the first
    parallel op (a conv, a matmul) then deadlocks. torch's own workers run one intra-op thread
    each, which also keeps N workers from oversubscribing the cores."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def process_main(spec: WorkerSpec, connection: Any) -> None:
    """Entry point of a worker process."""
    # Ctrl-C reaches the whole process group; the main process decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(spec.parent_pid)
    _one_torch_thread()
    _keep_freed_memory()
    try:
        run_worker(spec, _PipeChannel(connection), pickles=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the main process went away mid-send: nothing left to do
    finally:
        connection.close()
