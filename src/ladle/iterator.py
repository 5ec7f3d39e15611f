"""The loader's iterator: one pass over the data, as an explicit state machine.

Every ``next()`` consults the state: RUNNING loads the next batch; EXHAUSTED and CLOSED raise
StopIteration; FAILED raises :class:`LoaderBrokenError` chained to what broke the pass; a pass
closed because a newer one took over its persistent workers raises :class:`LoaderClosedError`.
One iterator may be shared by threads: ``next()`` is serialised by a lock.
"""

from __future__ import annotations

import enum
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ladle._runtime.engine import Delivered, Outcome, PassDispatch, Raised, Workers
from ladle.autotune import PassTuner, batch_bytes
from ladle.errors import LoaderBrokenError, LoaderClosedError
from ladle.passplan import PassStart, Renumbered
from ladle.resume import Progress
from ladle.stats import PassRecorder, PassStats

__all__ = ["IteratorState", "LoaderIterator", "PassSetup"]


class IteratorState(enum.Enum):
    RUNNING = "running"  # more batches may come
    EXHAUSTED = "exhausted"  # the pass ended normally
    FAILED = "failed"  # something broke it (a worker died); it yields nothing more
    CLOSED = "closed"  # closed for the user: close(), Ctrl-C, or a newer pass took over


@dataclass(frozen=True)
class PassSetup:
    """Everything one pass needs, handed over by the loader."""

    start: PassStart
    seed: int
    indices: Iterator[Any] | None  # None for an iterable dataset's streams
    keys: list[tuple[int, int, int, int]]
    workers: Workers
    streams: int
    iterable: bool
    postprocess: Callable[[Any], Any] | None
    length: Callable[[], int]  # len(loader)
    reported_length: Callable[[], int | None]  # an iterable's len(loader), once asked for
    dataset: object  # named in warnings
    commit: Callable[[Progress], None]  # the pass has started for real
    release: Callable[[Workers, bool], None]  # the pass is over (broken: the workers failed)
    recorder: PassRecorder  # the pass's stats
    # num_workers="auto": the pass's tuning, and how to get workers for another setting
    tuner: PassTuner | None = None
    switch: Callable[[int, int | None], Workers] | None = None
    # how a worker's exception is raised: (error, worker id) -> the exception to raise
    present: Callable[[BaseException, int], BaseException] | None = None


class LoaderIterator(Iterator[Any]):
    """Yields one epoch of batches. An exception raised by the dataset or ``collate_fn`` for one
    batch propagates (from a worker: same type, worker traceback attached as a note) and the
    iterator moves on to the next batch, as torch's does. A dead worker or a timeout breaks it:
    the workers are stopped, the state becomes FAILED, and later calls say so."""

    def __init__(self, setup: PassSetup) -> None:
        self.state = IteratorState.RUNNING
        # len(loader) as it stood when the pass began, as torch's iterator reads it: list()
        # asks for the length only after iter()
        self._reported_length = setup.reported_length()
        self.batches_yielded = 0
        self._setup = setup
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._superseded = False
        self._committed = False
        indices = setup.indices
        self._progress = Progress(
            setup.start, indices if isinstance(indices, Renumbered) else None, setup.iterable
        )
        starts = list(setup.start.streams) or [0] * setup.streams
        first = setup.start.next_stream if setup.iterable else 0
        self._workers: Workers | None = setup.workers
        # every Workers this pass holds: the current ones, and those it moved away from whose
        # batches in flight still come first (num_workers="auto")
        self._held: list[Workers] = [setup.workers]
        self._draining: tuple[PassDispatch, Workers, int] | None = None
        self._offset = 0  # the current dispatch's task 0 is the pass's batch number offset
        self._review_due: int | None = None  # auto: review before the next batch (its bytes)
        self._tuner = setup.tuner
        # a traced or auto-tuned pass has more to do for each batch (kept off the common path)
        self._attended = setup.tuner is not None or setup.recorder.trace is not None
        setup.recorder.follow(setup.workers.main_clock)
        if self._tuner is not None:
            self._tuner.claim(self)
        self._dispatch = PassDispatch(
            setup.workers,
            indices,
            setup.seed,
            starts,
            setup.keys,
            first,
            keep_indices=setup.recorder.trace is not None,
        )
        self._source = (self._dispatch, 0)  # the dispatch (and offset) of the last outcome
        # An abandoned pass (dropped, not closed) hands its workers back when it is collected
        # (in this process: a forked worker collecting its copy must leave the parent's be).
        self._finalizer = weakref.finalize(
            self, _release_abandoned, os.getpid(), setup.release, self._held
        )

    def __iter__(self) -> LoaderIterator:
        return self

    def __next__(self) -> Any:
        with self._lock:
            return self._next()

    def _next(self) -> Any:
        if self.state is not IteratorState.RUNNING:
            self._raise_stopped()
        if self._review_due is not None:
            # before this batch is taken: whatever the switch raises, no batch is lost
            self._review(self._review_due)
        recorder = self._setup.recorder
        recorder.entered = entered = time.perf_counter()
        try:
            if self._draining is None:  # the common case, kept short: it runs every batch
                outcome = self._dispatch.next()
                if self._offset:
                    outcome = _renumbered(outcome, self._offset)
            else:
                outcome = self._take()
        except StopIteration:
            recorder.stopped(entered, time.perf_counter(), over=True)
            if self._tuner is not None and self._tuner.owns(self):
                self._tuner.ended(recorder.stats())
            self.state = IteratorState.EXHAUSTED
            self._progress.finished = True
            self._commit()
            self._release()
            raise
        except BaseException as error:
            recorder.stopped(entered, time.perf_counter(), over=True)
            if self.state is IteratorState.CLOSED:  # closed from another thread meanwhile
                self._raise_stopped()
            if isinstance(error, Exception):  # broken: a dead worker, a timeout, a bug
                self.state = IteratorState.FAILED
                self._failure = error
            else:  # KeyboardInterrupt, SystemExit
                self.state = IteratorState.CLOSED
            self._release(broken=True)
            raise
        self._commit()
        progress = self._progress
        progress.consume(outcome.number)
        if self._setup.iterable:
            progress.stream_done(outcome.worker_id, outcome.position, self._setup.streams)
        if not isinstance(outcome, Delivered):
            recorder.stopped(entered, time.perf_counter(), over=False)
            source, offset = self._source
            source.indices_of(outcome.number - offset)
            if recorder.trace is not None:
                recorder.trace.raised(self._workers_now.main_clock)
            # The dataset or collate_fn raised: that batch is consumed, as in torch.
            present = self._setup.present
            raised = outcome.error
            if present is not None and not self._workers_now.inline:
                raised = present(raised, outcome.worker_id)
            try:
                raise raised
            finally:
                # the raised error's traceback holds this frame: without this, frame and error
                # hold each other, and the iterator (and its workers) would live on after the
                # user drops it, until the cyclic collector runs
                del raised, outcome
        self.batches_yielded += 1
        if self._setup.iterable:
            self._check_length()
        postprocess = self._setup.postprocess
        if postprocess is None:
            batch, converted = outcome.batch, 0.0
        else:
            started = time.perf_counter()
            batch = postprocess(outcome.batch)
            converted = time.perf_counter() - started
        handed = time.perf_counter()
        if recorder.delivered(entered, outcome, converted, handed):
            dispatch = self._dispatch  # the queue's depth, for every few batches
            recorder.depth(handed, dispatch.prefetched, dispatch.in_flight)
        if self._attended:
            self._attend(outcome, batch, entered, handed, converted)
        return batch

    def _attend(
        self, outcome: Delivered, batch: Any, entered: float, handed: float, converted: float
    ) -> None:
        """A batch was handed out in a traced or auto-tuned pass."""
        recorder = self._setup.recorder
        if recorder.trace is not None:
            source, offset = self._source
            indices = source.indices_of(outcome.number - offset)
            recorder.trace.batch(
                recorder.number,
                outcome,
                indices,
                entered,
                handed,
                converted,
                self._workers_now.main_clock,
            )
        tuner = self._tuner
        if tuner is not None and self.batches_yielded >= tuner.next_review and tuner.owns(self):
            self._review_due = batch_bytes(batch)  # judged at the next call

    @property
    def _workers_now(self) -> Workers:
        return self._workers if self._workers is not None else self._setup.workers

    def _take(self) -> Outcome:
        """The next outcome: the batches in flight in workers this pass moved away from come
        first, then the current dispatch's, renumbered as the pass's."""
        if self._draining is not None:
            dispatch, workers, offset = self._draining
            try:
                self._source = (dispatch, offset)
                return _renumbered(dispatch.next(), offset)
            except StopIteration:
                self._draining = None
                self._held.remove(workers)
                self._setup.release(workers, False)
                self._source = (self._dispatch, self._offset)
                # the batches from here on are the current workers' (or the main process's)
                self._setup.recorder.follow(self._workers_now.main_clock)
        return _renumbered(self._dispatch.next(), self._offset)

    def _review(self, nbytes: int) -> None:
        tuner = self._tuner
        assert tuner is not None
        if not tuner.owns(self):  # a newer pass drives the tuning now
            self._review_due = None
            return
        if self._draining is not None:  # still finishing a switch: judge again later
            return
        self._review_due = None
        change = tuner.review(self._setup.recorder.stats(), nbytes)
        if change is None:
            return
        workers, prefetch = change
        current = self._workers_now
        if not current.inline and workers == current.num_workers and prefetch is not None:
            self._dispatch.deepen(prefetch)
            return
        assert self._setup.switch is not None
        try:
            fresh = self._setup.switch(workers, prefetch)
        except BaseException as error:
            if not isinstance(error, Exception):
                # Ctrl-C, SystemExit: the workers did not fail, nothing is decided (the next
                # pass measures afresh); the pass closes, as on an interrupt inside next()
                tuner.interrupted()
                self.state = IteratorState.CLOSED
                self._release(broken=True)
                raise
            # the pass goes on as it was, and the choice is what it ran
            running = 0 if current.inline else current.num_workers
            tuner.failed(running, self._dispatch.per_worker if running else None, error)
            warnings.warn(
                f"num_workers='auto' could not start {workers} "
                f"{'worker' if workers == 1 else 'workers'} ({type(error).__name__}: {error}); "
                f"the loader goes on with num_workers={running}",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        self._held.append(fresh)
        old, self._workers = self._dispatch, fresh
        old.stop_sending()
        if old.pending:
            self._draining = (old, current, self._offset)
        else:
            self._held.remove(current)
            self._setup.release(current, False)
        self._offset += old.sent
        # batches the old workers still have in flight come first, with their own times: the
        # main process's loop is followed once they are in
        self._setup.recorder.resized(workers, fresh.main_clock if self._draining is None else None)
        setup = self._setup
        self._dispatch = PassDispatch(
            fresh,
            setup.indices,
            setup.seed,
            [0] * max(workers, 1),
            [setup.keys[0]] * max(workers, 1),
            0,
            keep_indices=setup.recorder.trace is not None,
        )
        if self._draining is None:
            self._source = (self._dispatch, self._offset)

    def _raise_stopped(self) -> None:
        if self.state is IteratorState.FAILED:
            failure = self._failure
            raise LoaderBrokenError(
                f"this DataLoader iterator was broken by an earlier error "
                f"({type(failure).__name__}: {failure}) and yields nothing more; start a new "
                f"pass with iter(loader)"
            ) from failure
        if self._superseded:
            raise LoaderClosedError(
                "this DataLoader iterator was closed because a newer iter(loader) took over "
                "its persistent workers (persistent_workers=True runs one pass at a time); "
                "finish or drop a pass before starting the next, or use "
                "persistent_workers=False to run passes at once"
            )
        raise StopIteration

    def _commit(self) -> None:
        if not self._committed:
            self._committed = True
            self._setup.commit(self._progress)

    def _check_length(self) -> None:
        reported = self._reported_length
        if reported is not None and self.batches_yielded > reported:
            # torch's words, for every batch past the length, as torch warns
            message = (
                f"Length of IterableDataset {self._setup.dataset} was reported to be "
                f"{reported}(when accessing len(dataloader)), but {self.batches_yielded} "
                f"samples have been fetched. "
            )
            if not self._workers_now.inline:
                message += (
                    "For multiprocessing data-loading, this could be caused by not properly "
                    "configuring the IterableDataset replica at each worker. Please see "
                    "https://pytorch.org/docs/stable/data.html#torch.utils.data.IterableDataset "
                    "for examples."
                )
            warnings.warn(message, UserWarning, stacklevel=3)

    def _release(self, broken: bool = False) -> None:
        """Hand the workers back (the loader stops them unless they persist and are sound)."""
        if self._workers is None:
            return
        self._workers, self._draining = None, None
        self._finalizer.detach()
        held, self._held[:] = list(self._held), []
        for workers in held:
            self._setup.release(workers, broken)

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the pass's workers (this process's for thread and inline workers)."""
        return list(self._workers_now.pool.pids)

    def __len__(self) -> int:
        return self._setup.length()

    def stats(self) -> PassStats:
        """This pass's numbers so far: batches, the data-wait share, time per stage, the
        workers' busy shares (see :mod:`ladle.stats`)."""
        return self._setup.recorder.stats()

    def close(self) -> None:
        """Stop the pass; idempotent. Later ``next()`` calls raise StopIteration."""
        if self.state is IteratorState.RUNNING:
            self.state = IteratorState.CLOSED
        self._setup.recorder.closed()
        self._release()

    def supersede(self) -> None:
        """A newer pass takes over this one's persistent workers: waits for a ``next()`` in
        progress in another thread, then closes the pass; later calls raise
        LoaderClosedError."""
        with self._lock:
            if self.state is IteratorState.RUNNING:
                self.state = IteratorState.CLOSED
                self._superseded = True
            self._workers = None
            self._finalizer.detach()

    def __repr__(self) -> str:
        return f"<LoaderIterator {self.state.value}, {self.batches_yielded} batches yielded>"


def _release_abandoned(
    owner: int, release: Callable[[Workers, bool], None], held: list[Workers]
) -> None:
    if os.getpid() == owner:
        for workers in held:
            release(workers, False)


def _renumbered(outcome: Outcome, offset: int) -> Outcome:
    if not offset:
        return outcome
    if isinstance(outcome, Delivered):
        return outcome._replace(number=outcome.number + offset)
    return Raised(outcome.error, outcome.number + offset, outcome.worker_id, outcome.position)
