"""The workers of a loader's passes: made for each pass, or kept between passes with
``persistent_workers=True``; the loader's shared-memory slabs lent to forked workers, one pass
at a time."""

from __future__ import annotations

import multiprocessing
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ladle._runtime.engine import EngineSpec, Workers
from ladle._runtime.shm import SlabPool, shm_directory
from ladle.config import LoaderConfig
from ladle.fetch import FetchPlan
from ladle.iterator import LoaderIterator

__all__ = ["Launcher", "engine_spec"]


def _default_context() -> Any:
    """fork where it exists (Linux): workers start fast and never pickle the dataset."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def engine_spec(config: LoaderConfig) -> EngineSpec:
    """How to run a pass's workers under ``config``."""
    sampling, settings = config.sampling, config.settings
    kind: Any = "inline" if settings.num_workers == 0 else settings.worker_type
    return EngineSpec(
        kind=kind,
        num_workers=max(settings.num_workers, 1),
        source=FetchPlan(
            sampling.dataset,
            sampling.auto_collation,
            settings.collate_fn,
            sampling.is_iterable,
            sampling.batch_size,
            sampling.drop_last,
        ),
        worker_init_fn=settings.worker_init_fn,
        context=(settings.context or _default_context()) if kind == "process" else None,
        prefetch_factor=settings.prefetch_factor or 1,
        in_order=settings.in_order,
        timeout=settings.timeout or None,
    )


def _weakly(method: Callable[[int], None]) -> Callable[[int], None]:
    """``method``, without keeping its object alive: a worker finalizer holds its callback for
    as long as the workers live, and the launcher holds its persistent workers."""
    ref = weakref.WeakMethod(method)

    def call(largest: int) -> None:
        target = ref()
        if target is not None:
            target(largest)

    return call


class Launcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.handover = threading.RLock()  # held while a pass takes the persistent workers
        self._persistent: Workers | None = None  # kept between passes
        self._persistent_pass: weakref.ref[LoaderIterator] | None = None
        self._passes: weakref.WeakSet[LoaderIterator] = weakref.WeakSet()
        self._slabs: SlabPool | None = None  # forked workers' slabs, kept between passes
        self._slabs_lent = False  # a pass's workers hold them now
        self._slab_bytes = 0  # largest batch in shared memory so far: sizes the next slabs

    def workers(self, config: LoaderConfig) -> Workers:
        """New workers for one pass."""
        spec = engine_spec(config)
        if spec.kind != "process":
            return Workers(spec)
        keep = spec.prefetch_factor + 2  # each worker's prefetched batches, plus two spare
        with self._lock:
            borrow = spec.context.get_start_method() == "fork" and not self._slabs_lent
            if borrow:
                # Forked workers inherit the loader's slabs from pass to pass: the next pass
                # writes into pages that exist already instead of faulting in new ones.
                if self._slabs is None:
                    self._slabs = SlabPool(shm_directory(), spec.num_workers, keep)
                    weakref.finalize(self, self._slabs.close)
                self._slabs_lent = True
                slabs = self._slabs
        if borrow:
            try:
                return Workers(spec, slabs, False, _weakly(self._slabs_returned))
            except BaseException:
                self._slabs_returned(0)
                raise
        owned = SlabPool(shm_directory(), spec.num_workers, keep)
        owned.need(self._slab_bytes)  # sized by earlier passes, so no batch is pickled
        return Workers(spec, owned, True, _weakly(self._learn_slab_bytes))

    def persistent(self, config: LoaderConfig) -> Workers:
        """The workers kept between passes; the pass running on them now is closed (one pass
        at a time, as in torch), loudly if it is used again."""
        previous = self._persistent_pass() if self._persistent_pass is not None else None
        if previous is not None:
            previous.supersede()
        workers = self._persistent
        if workers is None or workers.closed:
            workers = self._persistent = self.workers(config)
        return workers

    def running(self, iterator: LoaderIterator, persistent: bool) -> None:
        """``iterator`` is a new pass over workers from here."""
        if persistent:
            self._persistent_pass = weakref.ref(iterator)
        self._passes.add(iterator)

    def release(self, workers: Workers, broken: bool) -> None:
        """A pass is over: stop its workers unless they persist (and are not broken)."""
        if workers is self._persistent and not broken:
            return
        if workers is self._persistent:
            self._persistent = None
        workers.close(broken)

    def _slabs_returned(self, largest: int) -> None:
        self._slabs_lent = False
        self._learn_slab_bytes(largest)

    def _learn_slab_bytes(self, largest: int) -> None:
        self._slab_bytes = max(self._slab_bytes, largest)

    def drop(self) -> None:
        """Stop the persistent workers and free the idle slabs (the settings changed)."""
        previous = self._persistent_pass() if self._persistent_pass is not None else None
        if previous is not None:
            previous.supersede()
        workers, self._persistent = self._persistent, None
        if workers is not None:
            workers.close()
        with self._lock:
            if self._slabs is not None and not self._slabs_lent:
                self._slabs.close()
                self._slabs = None

    def close(self) -> None:
        """Stop every pass and every worker, and free the shared memory."""
        for iterator in list(self._passes):
            iterator.close()
        self.drop()
