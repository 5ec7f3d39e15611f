"""The workers of a loader's passes: made for each pass, or kept between passes with
``persistent_workers=True``; the loader's shared-memory slabs lent to forked workers, one pass
at a time."""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import pickle
import re
import sys
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


def _fork_context() -> Any:
    """fork where it exists (Linux): workers start fast and never pickle the dataset."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _default_context(config: LoaderConfig) -> Any:
    """fork, except for ``output="jax"``, whose workers start from a forkserver where one can
    work: JAX's runtime is multithreaded, and forking it is what JAX warns about (once per
    worker per pass) as a likely deadlock. The forkserver is a fresh interpreter that imports
    JAX but never starts its runtime, so it forks workers without the hazard or the warning."""
    if config.settings.output == "jax":
        forkserver = _jax_forkserver(config.sampling.dataset)
        if forkserver is not None:
            return forkserver
    return _fork_context()


_GUARD = re.compile(r"""__name__\s*==\s*["']__main__["']""")


@functools.cache
def _guarded(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return _GUARD.search(file.read()) is not None
    except OSError:
        return False


def _jax_forkserver(dataset: Any) -> Any:
    """The forkserver context for a JAX loader's workers, or None where it cannot work.

    A forkserver's worker unpickles the dataset and re-runs the main module first, as under
    spawn. So the main module must be a file with an ``if __name__ == "__main__":`` guard (not a
    notebook, a REPL or an unguarded script); a dataset that does not pickle falls back to fork
    when its workers start (:meth:`Launcher.workers`). The server preloads ladle's worker, JAX
    and the dataset's module, so that its workers start with them imported: Python 3.11's
    forkserver never preloads the main module, so each worker re-runs it and would import JAX
    again otherwise, seconds per worker per pass.
    """
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if "forkserver" not in multiprocessing.get_all_start_methods() or not (
        isinstance(path, str) and _guarded(path)
    ):
        return None
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    preload = list(getattr(server, "_preload_modules", ["__main__"]))  # the user's, if set
    module = type(dataset).__module__
    for name in ("__main__", "ladle._runtime.worker", "jax.numpy", module):
        if name not in preload and name != "__mp_main__":
            preload.append(name)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)  # no effect once the server runs: it keeps its own
    return context


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


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
        context=(settings.context or _default_context(config)) if kind == "process" else None,
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

    @property
    def idle_slabs(self) -> SlabPool | None:
        """The loader's slabs kept for forked workers between passes (None before any)."""
        return self._slabs

    def workers(self, config: LoaderConfig) -> Workers:
        """New workers for one pass."""
        spec = engine_spec(config)
        try:
            return self._start(spec)
        except Exception:
            # The forkserver chosen for JAX pickles the dataset: one that does not pickle
            # starts by fork, as without JAX (and JAX warns about the fork).
            chosen = spec.kind == "process" and spec.context is not config.settings.context
            if not chosen or spec.context.get_start_method() != "forkserver":
                raise
            if _pickles(spec.source):
                raise
        return self._start(dataclasses.replace(spec, context=_fork_context()))

    def _start(self, spec: EngineSpec) -> Workers:
        if spec.kind != "process":
            return Workers(spec)
        # A worker's slabs: its prefetched batches, plus the one its last batch came in, which
        # the user holds while the next is made. More are unlinked as they come back.
        keep = spec.prefetch_factor + 1
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
        try:
            return Workers(spec, owned, True, _weakly(self._learn_slab_bytes))
        except BaseException:
            owned.close()
            raise

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
