"""The main process's side of parallel loading: dispatch tasks, reassemble batches in order,
turn worker failures into exceptions, and shut everything down on every exit path."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ladle._runtime.messages import Batch, Exhausted, Failure, StartEpoch, Task, WorkerSpec
from ladle._runtime.pool import Pool, ProcessPool, ThreadPool
from ladle._runtime.shm import SlabPool, shm_directory
from ladle.errors import LoaderTimeoutError

if TYPE_CHECKING:
    from ladle.loader import DataLoader
    from ladle.resume import Progress

__all__ = ["WorkerEngine"]


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


def _default_context() -> Any:
    """fork where it exists (Linux): workers start fast and never pickle the dataset."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _shutdown(pool: Pool, slabs: SlabPool | None, owned: bool, grace: list[float]) -> None:
    try:
        pool.close(grace[0])
    finally:
        if slabs is not None:
            if owned:
                slabs.close()
            else:
                slabs.end_pass()


class WorkerEngine:
    """Workers for one loader: started once, then one pass after another (``start``)."""

    def __init__(self, loader: DataLoader) -> None:
        num_workers = loader.num_workers
        self.num_workers = num_workers
        self.in_order = loader.in_order
        self.timeout = loader.timeout if loader.timeout > 0 else None
        self.depth = num_workers * (loader.prefetch_factor or 2)
        threads = loader.worker_type == "thread"
        context = None
        if not threads:
            context = loader.multiprocessing_context or _default_context()
        forked = context is not None and context.get_start_method() == "fork"
        pickled = context is not None and not forked
        # With spawn or forkserver the dataset is pickled once here, not once per worker.
        dataset = pickle.dumps(loader.dataset) if pickled else loader.dataset
        # Forked workers inherit the loader's slabs from pass to pass; other workers get a pool
        # of their own, sized from what earlier passes learned so that no batch is pickled.
        self.slabs: SlabPool | None = loader._slab_pool() if forked else None
        owned = self.slabs is None and not threads
        if owned:
            self.slabs = loader._new_slab_pool()
            self.slabs.need(loader._slab_bytes)
        inherited = self.slabs.mappings() if forked and self.slabs is not None else None
        specs = [
            WorkerSpec(
                worker_id=i,
                num_workers=num_workers,
                dataset=dataset,
                dataset_pickled=pickled,
                collate_fn=loader.collate_fn,
                auto_collation=loader._auto_collation,
                is_iterable=loader._is_iterable,
                batch_size=loader.batch_size,
                drop_last=loader.drop_last,
                worker_init_fn=loader.worker_init_fn,
                shm_dir=None if threads else shm_directory(),
                parent_pid=os.getpid(),
                inherited_slabs=inherited,
            )
            for i in range(num_workers)
        ]
        self.pool: ProcessPool | ThreadPool = (
            ThreadPool(specs) if threads else ProcessPool(specs, context)
        )
        self._grace = [_GRACE_SECONDS]
        self._finalizer = weakref.finalize(
            self, _shutdown, self.pool, self.slabs, owned, self._grace
        )
        self._seq = itertools.count()
        self._first_seq = 0
        self._indices: Iterator[Any] | None = None
        self._indices_done = True
        self._outstanding: dict[int, int] = {}  # seq -> worker
        self._active: set[int] = set()
        self._next_worker = 0
        self._buffer: dict[int, Any] = {}
        self._next_seq = 0
        self._progress: Progress | None = None
        self.last_number = 0  # the last batch handed out, numbered from the pass's start

    # -- a pass ------------------------------------------------------------------------------

    def start(
        self,
        indices: Iterator[Any] | None,
        seed: int,
        starts: list[int],
        keys: list[tuple[int, int, int, int]],
        progress: Progress | None = None,
    ) -> None:
        """Begin a pass over ``indices`` (None for an iterable dataset's streams, which start
        at ``starts``), worker ``i`` keying sample_rng() by ``keys[i]``; consumed batches of a
        stream are reported to ``progress``."""
        for worker_id in range(self.num_workers):
            self.pool.send(worker_id, StartEpoch(seed, starts[worker_id], keys[worker_id]))
        self._progress = progress
        self._first_seq = self._next_seq = next(self._seq)
        self._seq = itertools.count(self._first_seq)
        self._indices = indices
        self._indices_done = False
        if self.slabs is not None:  # batches of an abandoned pass, never to be handed out
            self.slabs.reclaim(message.slab for message in self._buffer.values())
        self._buffer.clear()
        self._active = set(range(self.num_workers))
        # A resumed stream goes on with the worker whose turn came next when it was saved.
        self._next_worker = progress.next_stream if progress is not None and indices is None else 0
        self._refill()

    def _next_task_indices(self) -> tuple[bool, Any]:
        if self._indices is None:
            return True, None  # iterable: "your next batch"
        try:
            return True, next(self._indices)
        except StopIteration:
            return False, None

    def _refill(self) -> None:
        # Batches waiting in the reorder buffer count against the depth too, as in torch: a slow
        # worker then cannot let the others run arbitrarily far ahead.
        while (
            not self._indices_done
            and len(self._outstanding) + len(self._buffer) < self.depth
            and self._active
        ):
            # Strict round-robin over the active workers, as torch does: an iterable dataset
            # sharded by worker id then comes back in a predictable order.
            worker_id = self._next_active()
            more, indices = self._next_task_indices()
            if not more:
                self._indices_done = True
                return
            seq = next(self._seq)
            slab = self.slabs.lend(worker_id) if self.slabs is not None else None
            self._outstanding[seq] = worker_id
            self.pool.send(worker_id, Task(seq, indices, slab))

    def _next_active(self) -> int:
        while True:
            worker_id = self._next_worker % self.num_workers
            self._next_worker += 1
            if worker_id in self._active:
                return worker_id

    def next_batch(self) -> Any:
        """The next batch of the pass; StopIteration at its end."""
        while True:
            if self.in_order:
                if self._next_seq in self._buffer:
                    message = self._buffer.pop(self._next_seq)
                    self._next_seq += 1
                    result = self._handle(message)
                    if result is not _SKIP:
                        return result
                    continue
                if self._next_seq not in self._outstanding:
                    if self._indices_done or not self._active:
                        raise StopIteration
                    # Not dispatched yet: either the depth is taken by tasks of an abandoned
                    # pass (receive them below to free it) or the refill dispatches it now.
                    self._refill()
            elif not self._outstanding:
                self._refill()
                if not self._outstanding:
                    raise StopIteration
            message = self._receive()
            if message.seq < self._first_seq:  # from a pass abandoned earlier
                self._settle(message)
                if self.slabs is not None:
                    self.slabs.give_back(message.slab)
                continue
            self._settle(message)
            if self.in_order:
                self._buffer[message.seq] = message
            else:
                result = self._handle(message)
                if result is not _SKIP:
                    return result

    def _receive(self) -> Any:
        message = self.pool.receive(self.timeout)
        if message is None:
            raise LoaderTimeoutError(
                f"DataLoader timed out after {self.timeout} seconds waiting for a batch from "
                f"its {self.num_workers} workers; raise timeout= or make samples faster to load"
            )
        return message

    def _settle(self, message: Any) -> None:
        self._outstanding.pop(message.seq, None)
        if isinstance(message, Exhausted) and message.worker_id in self._active:
            self._active.discard(message.worker_id)
        if isinstance(message, Batch) and self.slabs is not None:
            self.slabs.need(message.bytes_needed)
        self._refill()

    def _handle(self, message: Any) -> Any:
        slabs = self.slabs
        if not isinstance(message, Exhausted):
            self.last_number = message.seq - self._first_seq
            if self._indices is None and self._progress is not None:
                position = message.position if isinstance(message, Batch) else None
                self._progress.stream_done(message.worker_id, position, self.num_workers)
        if isinstance(message, Batch):
            if slabs is None or not message.slab_used:
                if slabs is not None:
                    slabs.give_back(message.slab)
                return message.payload
            return slabs.views(message.slab, message.payload)  # type: ignore[arg-type]
        if slabs is not None:
            slabs.give_back(message.slab)
        if isinstance(message, Exhausted):
            return _SKIP
        raise _rebuild(message)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def slab_bytes(self) -> int:
        """The largest batch seen so far, in bytes of slab (0 for thread workers)."""
        return self.slabs.largest if self.slabs is not None else 0

    def close(self, broken: bool = False) -> None:
        """Stop the workers and unlink the slabs; idempotent. ``broken``: something failed, so
        workers still busy are killed at once instead of being given time to finish."""
        if broken:
            self._grace[0] = _BROKEN_GRACE_SECONDS
        self._finalizer()


_SKIP = object()
_GRACE_SECONDS = 2.0
_BROKEN_GRACE_SECONDS = 0.1
