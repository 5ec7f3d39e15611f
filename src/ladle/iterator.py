"""The loader's iterator: one pass over the data, as an explicit state machine."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ladle.errors import LoaderTimeoutError, WorkerDiedError
from ladle.fetch import IterableFetcher, MapFetcher, open_stream
from ladle.resume import begin_pass

if TYPE_CHECKING:
    from ladle._runtime.engine import WorkerEngine
    from ladle.loader import DataLoader

# Failures of the loading machinery itself, after which the pass cannot go on.
LadleRuntimeFailure = (WorkerDiedError, LoaderTimeoutError)

__all__ = ["IteratorState", "LoaderIterator"]


class IteratorState(enum.Enum):
    RUNNING = "running"  # more batches may come
    EXHAUSTED = "exhausted"  # the pass ended normally
    FAILED = "failed"  # something broke it (a worker died); it yields nothing more
    CLOSED = "closed"  # the user closed it


class LoaderIterator(Iterator[Any]):
    """Yields one epoch of batches. An exception raised by the dataset or ``collate_fn`` for one
    batch propagates (from a worker: same type, worker traceback attached as a note) and the
    iterator moves on to the next batch, as torch's does. A dead worker or a timeout breaks it:
    the workers are stopped and the state becomes FAILED."""

    def __init__(self, loader: DataLoader, engine: WorkerEngine | None = None) -> None:
        self.loader = loader
        self.state = IteratorState.RUNNING
        self.batches_yielded = 0
        self._postprocess: Callable[[Any], Any] | None = loader._postprocess()
        self._next_batch: Callable[[], Any]
        self._engine = engine
        self._handed_out = 0  # batches (or errors) handed to the caller so far
        plan = begin_pass(loader)
        self._progress = progress = plan.progress
        if engine is not None:
            engine.start(plan.indices, plan.seed, plan.starts, plan.keys, progress)
            self._next_batch = engine.next_batch
        elif loader._is_iterable:
            fetcher = IterableFetcher(
                open_stream(loader.dataset, plan.starts[0]),
                loader.batch_size,
                loader.drop_last,
                loader.collate_fn,
                plan.keys[0],
                plan.starts[0],
            )

            def next_streamed() -> Any:
                try:
                    return fetcher.fetch()
                finally:
                    progress.stream_done(0, fetcher.position, 1)

            self._next_batch = next_streamed
        else:
            map_fetcher = MapFetcher(
                loader.dataset, loader._auto_collation, loader.collate_fn, plan.keys[0]
            )
            indices = plan.indices
            assert indices is not None
            self._next_batch = lambda: map_fetcher.fetch(next(indices))

    def __iter__(self) -> LoaderIterator:
        return self

    def __next__(self) -> Any:
        if self.state is not IteratorState.RUNNING:
            raise StopIteration
        try:
            batch = self._next_batch()
        except StopIteration:
            self.state = IteratorState.EXHAUSTED
            self._progress.finished = True
            self._release_workers()
            raise
        except LadleRuntimeFailure:
            self.state = IteratorState.FAILED
            self._release_workers(broken=True)
            raise
        except BaseException as error:
            if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
                self.state = IteratorState.CLOSED
                self._next_batch = _exhausted
                self._release_workers(broken=True)
            else:  # the dataset or collate_fn raised: that batch is consumed, as in torch
                self._consume()
            raise
        self._consume()
        self.batches_yielded += 1
        if self._postprocess is not None:
            return self._postprocess(batch)
        return batch

    def _consume(self) -> None:
        engine = self._engine
        handed_out = self._handed_out if engine is None or engine.in_order else engine.last_number
        self._handed_out += 1
        self._progress.consume(handed_out)

    def __len__(self) -> int:
        return len(self.loader)

    def close(self) -> None:
        """Stop the pass; idempotent. Later ``next()`` calls raise StopIteration."""
        if self.state is IteratorState.RUNNING:
            self.state = IteratorState.CLOSED
        self._next_batch = _exhausted
        self._release_workers()

    def _release_workers(self, broken: bool = False) -> None:
        """Stop the workers, unless the loader keeps them for the next pass."""
        engine, self._engine = self._engine, None
        if engine is not None:
            self.loader._release_engine(engine, broken)

    def __repr__(self) -> str:
        return f"<LoaderIterator {self.state.value}, {self.batches_yielded} batches yielded>"


def _exhausted() -> Any:
    raise StopIteration
