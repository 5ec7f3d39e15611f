"""The main process's side of loading: a set of workers (:class:`Workers`), and one pass over
them (:class:`PassDispatch`) that dispatches tasks, reassembles batches in order and turns
replies into outcomes. Every exit path stops the workers and returns the slabs they held.

Ownership: ``Workers`` owns its pool and the slabs it lent; it is closed by whoever created it
(a pass, or the loader for persistent workers), and by a finalizer if nobody did. A pass owns
only its own bookkeeping, so an abandoned pass leaves nothing behind that a later one reads.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ladle._runtime.context import StageClock
from ladle._runtime.messages import (
    Batch,
    BatchSource,
    Cancelled,
    Exhausted,
    Failure,
    Reply,
    SampleKey,
    StartEpoch,
    Task,
    TaskTimes,
    WorkerSpec,
)
from ladle._runtime.pool import InlinePool, Pool, ProcessPool, ThreadPool
from ladle._runtime.shm import SlabPool
from ladle.errors import LoaderTimeoutError

__all__ = ["Delivered", "EngineSpec", "PassDispatch", "Raised", "Workers"]

WorkerKind = Literal["inline", "thread", "process"]

_GRACE_SECONDS = 0.3  # for workers to obey a Stop before they are killed
_BROKEN_GRACE_SECONDS = 0.05


@dataclass(frozen=True)
class EngineSpec:
    """How to run workers, decided by the layer above."""

    kind: WorkerKind
    num_workers: int
    source: BatchSource
    worker_init_fn: Callable[[int], object] | None
    context: Any  # a multiprocessing context, for kind="process"
    prefetch_factor: int
    in_order: bool
    timeout: float | None


class Delivered(NamedTuple):
    """Task ``number`` of the pass gave this batch. A NamedTuple: one is made per batch, and
    this is the hot path of a loader without workers."""

    batch: object
    number: int
    worker_id: int
    position: int | None
    times: TaskTimes | None = None  # a worker's; None from the main process's own loop
    transport: float = 0.0  # seconds this process spent unpickling and viewing the batch
    nbytes: int = 0  # bytes that crossed: the slab's part and the pickle's


@dataclass(frozen=True)
class Raised:
    """Task ``number`` of the pass raised ``error`` (the dataset's or collate_fn's)."""

    error: BaseException
    number: int
    worker_id: int
    position: int | None


Outcome = Delivered | Raised


def _rebuild(failure: Failure) -> BaseException:
    error = failure.error
    if isinstance(error, bytes):
        try:
            error = pickle.loads(error)
        except Exception:
            error = None
    if isinstance(error, BaseException):
        return error
    return RuntimeError(
        f"{failure.type_name} in ladle worker {failure.worker_id}: {failure.message}"
    )


def _shutdown(
    owner: int,
    pool: Pool,
    slabs: SlabPool | None,
    owned: bool,
    grace: list[float],
    on_close: Callable[[int], None] | None,
) -> None:
    if os.getpid() != owner:
        # a forked child (the next pass's worker) collecting the inherited object: the pool
        # is its parent's, and closing it from here would stop the parent's workers
        return
    try:
        pool.close(grace[0])
    finally:
        largest = 0
        if slabs is not None:
            # The workers are gone, so nothing writes into the slabs they were lent any more:
            # end_pass() takes them back.
            largest = slabs.largest
            if owned:
                slabs.close()
            else:
                slabs.end_pass()
        if on_close is not None:
            on_close(largest)


@contextlib.contextmanager
def _pickle_hint() -> Iterator[None]:
    """torch's warning (in its words) when what a spawned worker needs cannot be pickled."""
    try:
        yield
    except (TypeError, AttributeError, pickle.PicklingError):
        warnings.warn(
            "Got pickle error when attempting to start a worker Process. This might be because "
            "the worker Process arguments are not picklable. Python 3.14+ changed the "
            "multiprocessing start method in non-Mac POSIX platforms to 'forkserver', which "
            "requires the worker Process arguments to be picklable. You can also try "
            "multiprocessing.set_start_method('fork').",
            stacklevel=6,
        )
        raise


class Workers:
    """A pool of workers and the slabs lent to them; one pass runs over it at a time."""

    def __init__(
        self,
        spec: EngineSpec,
        slabs: SlabPool | None = None,
        owns_slabs: bool = False,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.num_workers = spec.num_workers
        self.inline = spec.kind == "inline"
        self.slabs = slabs
        forked = spec.kind == "process" and spec.context.get_start_method() == "fork"
        source: BatchSource | bytes = spec.source
        if spec.kind == "process" and not forked:
            with _pickle_hint():
                source = pickle.dumps(spec.source)  # once here, not once per worker
        inherited = slabs.mappings() if forked and slabs is not None else None
        specs = [
            WorkerSpec(
                worker_id=i,
                num_workers=spec.num_workers,
                source=source,
                worker_init_fn=spec.worker_init_fn,
                shm_dir=slabs.directory if slabs is not None else None,
                parent_pid=os.getpid(),
                inherited_slabs=inherited,
                inline=self.inline,
            )
            for i in range(spec.num_workers)
        ]
        self.pool: Pool
        if spec.kind == "inline":
            self.pool = InlinePool(specs[0])
        elif spec.kind == "thread":
            self.pool = ThreadPool(specs)
        else:
            with _pickle_hint() if not forked else contextlib.nullcontext():
                self.pool = ProcessPool(specs, spec.context)
        self.load = [0] * spec.num_workers  # tasks sent and not answered yet, any pass
        self._seq = itertools.count()
        self._grace = [_GRACE_SECONDS]
        self.running: int | None = None  # the first sequence number of the running pass
        # The running pass's replies received and not handed out yet. Held here, not by the
        # pass: a pass dropped half-way (its iterator collected) leaves their slabs to be
        # reclaimed when the next pass begins, and the workers hold no reference to a pass.
        self._buffer: dict[int, Reply] = {}
        self._finalizer = weakref.finalize(
            self, _shutdown, os.getpid(), self.pool, slabs, owns_slabs, self._grace, on_close
        )

    @property
    def main_clock(self) -> StageClock | None:
        """Without workers, the main process's loop's stage clock (see StageClock)."""
        return self.pool.clock if isinstance(self.pool, InlinePool) else None

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def begin(
        self, seed: int, starts: list[int], keys: list[SampleKey]
    ) -> tuple[int, dict[int, Reply]]:
        """Begin a new pass: returns its first sequence number and its reorder buffer. Replies
        to earlier passes' tasks are dropped from now on."""
        if self._buffer and self.slabs is not None:
            # Batches an abandoned pass received but never handed out.
            self.slabs.reclaim(reply.slab for reply in self._buffer.values())
        self._buffer = {}
        first = next(self._seq)
        self._seq = itertools.count(first)
        self.running = first
        for worker_id in range(self.num_workers):
            self.pool.send(worker_id, StartEpoch(seed, starts[worker_id], keys[worker_id]))
        return first, self._buffer

    def send_task(self, worker_id: int, indices: object) -> int:
        seq = next(self._seq)
        slab = self.slabs.lend(worker_id) if self.slabs is not None else None
        self.load[worker_id] += 1
        self.pool.send(worker_id, Task(seq, indices, slab))
        return seq

    def receive(self, first_seq: int, timeout: float | None, settle_one: bool = False) -> Reply:
        """The next reply to a task numbered ``first_seq`` or later; replies to older tasks
        are settled on the way. ``settle_one``: return after settling one reply, whatever it
        was (the pass waits for room that an abandoned pass's tasks still take)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self.pool.receive(wait)
            if reply is None:
                raise LoaderTimeoutError(
                    f"DataLoader timed out after {timeout} seconds waiting for a batch from "
                    f"its {self.num_workers} workers; raise timeout= or make samples faster "
                    f"to load"
                )
            self.load[reply.worker_id] -= 1
            if isinstance(reply, Batch) and self.slabs is not None:
                self.slabs.need(reply.bytes_needed)
                if reply.pickled and not reply.slab_used:
                    self.slabs.unfilled(reply.slab, reply.bytes_needed)
            if reply.seq >= first_seq and not isinstance(reply, Cancelled):
                return reply
            if self.slabs is not None:
                self.slabs.give_back(reply.slab)
            if settle_one:
                return reply

    def close(self, broken: bool = False) -> None:
        """Stop the workers and return their slabs; idempotent. ``broken``: something failed,
        so workers still busy are killed at once instead of being given time to finish."""
        if broken:
            self._grace[0] = _BROKEN_GRACE_SECONDS
        self.running = None
        self._finalizer()


class PassDispatch:
    """One pass over ``workers``: ``next()`` gives the pass's outcomes in order (or as they
    come, with ``in_order=False``) and raises StopIteration at its end."""

    def __init__(
        self,
        workers: Workers,
        indices: Iterator[Any] | None,
        seed: int,
        starts: list[int],
        keys: list[SampleKey],
        first_worker: int = 0,
        keep_indices: bool = False,
    ) -> None:
        spec = workers.spec
        # number -> indices of the tasks in flight, for a trace (``indices_of``)
        self._kept: dict[int, object] | None = {} if keep_indices else None
        self.workers = workers
        self.in_order = spec.in_order
        self.timeout = spec.timeout
        self.per_worker = spec.prefetch_factor
        self.depth = 1 if workers.inline else spec.num_workers * spec.prefetch_factor
        self.eager = not workers.inline  # the inline pool runs a task as it is sent
        self._indices = indices  # None: an iterable dataset's streams
        self._indices_done = False
        self._active = list(range(spec.num_workers))  # workers whose stream has not ended
        self._turn = first_worker  # round-robin position (a resumed stream goes on there)
        self._outstanding: dict[int, int] = {}  # number -> worker
        self._next = 0  # in order: the number handed out next
        # In order: replies ahead of the next number (the workers hold it, see Workers).
        self._first_seq, self._buffer = workers.begin(seed, starts, keys)
        self._sent = 0
        if self.eager:
            self._refill()

    def _pick_worker(self) -> int | None:
        active = self._active
        if self.in_order:
            # Strict round-robin, as torch does: a stream sharded by worker id then comes
            # back in a predictable order.
            while True:
                worker = self._turn % self.workers.num_workers
                self._turn += 1
                if worker in active:
                    return worker
        # Out of order: the least loaded worker with room, so one slow sample stalls only
        # the worker loading it.
        load = self.workers.load
        worker = min(active, key=lambda w: load[w])
        return worker if load[worker] < self.per_worker else None

    def _refill(self) -> None:
        while (
            not self._indices_done
            and self._active
            and len(self._outstanding) + len(self._buffer) < self.depth
        ):
            worker = self._pick_worker()
            if worker is None:
                return
            if self._indices is None:
                indices = None
            else:
                try:
                    indices = next(self._indices)
                except StopIteration:
                    self._indices_done = True
                    return
            number = self.workers.send_task(worker, indices) - self._first_seq
            self._outstanding[number] = worker
            if self._kept is not None:
                self._kept[number] = indices
            self._sent = number + 1

    def stop_sending(self) -> None:
        """Send no more tasks: the rest of the pass goes to other workers (``next()`` gives
        the outcomes of the tasks already sent, then raises StopIteration)."""
        self._indices_done = True

    def deepen(self, prefetch_factor: int) -> None:
        """Keep ``prefetch_factor`` tasks in flight per worker from now on."""
        self.per_worker = prefetch_factor
        if not self.workers.inline:
            self.depth = self.workers.num_workers * prefetch_factor
            self._refill()

    @property
    def sent(self) -> int:
        """The tasks this pass has sent (its outcomes are numbered below this)."""
        return self._sent

    @property
    def pending(self) -> bool:
        """Outcomes are still to come from the tasks already sent."""
        return bool(self._outstanding or self._buffer)

    def indices_of(self, number: int) -> object:
        """The indices of task ``number`` (with ``keep_indices``; once: they are dropped)."""
        return None if self._kept is None else self._kept.pop(number, None)

    @property
    def prefetched(self) -> int:
        """Batches received and waiting to be handed out (in order: ahead of the next)."""
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        """Tasks sent to the workers and not answered yet."""
        return len(self._outstanding)

    def next(self) -> Outcome:
        while True:
            if self.workers.running != self._first_seq:
                raise RuntimeError("this pass's workers were handed to a newer pass")
            if self.in_order:
                reply = self._buffer.pop(self._next, None)
                if reply is not None:
                    self._next += 1
                    outcome = self._outcome(reply)
                    if outcome is not None:
                        return outcome
                    continue
                if self._next not in self._outstanding:
                    self._refill()
                    if self._next not in self._outstanding:
                        raise StopIteration
            elif not self._outstanding:
                self._refill()
                if not self._outstanding:
                    if self._indices_done or not self._active:
                        raise StopIteration
                    # Every worker is full of an abandoned pass's tasks: wait for room.
                    self.workers.receive(self._first_seq, self.timeout, settle_one=True)
                    continue
            reply = self.workers.receive(self._first_seq, self.timeout)
            number = reply.seq - self._first_seq
            self._outstanding.pop(number, None)
            if isinstance(reply, Exhausted) and reply.worker_id in self._active:
                self._active.remove(reply.worker_id)
            if self.eager:
                self._refill()
            if self.in_order:
                self._buffer[number] = reply
                continue
            outcome = self._outcome(reply)
            if outcome is not None:
                return outcome

    def _outcome(self, reply: Reply) -> Outcome | None:
        slabs = self.workers.slabs
        number = reply.seq - self._first_seq
        if isinstance(reply, Batch):
            payload = reply.payload
            if slabs is None and not reply.pickled:  # inline and thread workers: as it is
                return Delivered(payload, number, reply.worker_id, reply.position, reply.times)
            started = time.perf_counter()
            nbytes = 0
            if reply.pickled:
                assert isinstance(payload, bytes)
                nbytes = len(payload)
                try:
                    payload = pickle.loads(payload)
                except Exception as error:
                    if slabs is not None:
                        slabs.give_back(reply.slab)
                    error.add_note(
                        f"The batch of task {number} of this pass arrived from ladle worker "
                        f"{reply.worker_id} but could not be unpickled in the main process; "
                        f"the pass goes on with the next batch"
                    )
                    return Raised(error, number, reply.worker_id, reply.position)
            if slabs is not None:
                if reply.slab_used and reply.slab is not None:
                    payload = slabs.views(reply.slab, payload)
                    nbytes += reply.bytes_needed
                else:
                    slabs.give_back(reply.slab)
            transport = time.perf_counter() - started
            return Delivered(
                payload, number, reply.worker_id, reply.position, reply.times, transport, nbytes
            )
        if slabs is not None:
            slabs.give_back(reply.slab)
        if isinstance(reply, Failure):
            return Raised(_rebuild(reply), number, reply.worker_id, None)
        return None  # Exhausted: that worker's stream has ended
