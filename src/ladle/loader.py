"""DataLoader: the validated configuration of a loading pipeline, and its entry point.

The constructor takes torch's arguments with torch's meaning and rejects the combinations torch
rejects, with a message that names the argument and the fix. Iterating returns a
:class:`~ladle.iterator.LoaderIterator`.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ladle.collate import default_collate, default_convert
from ladle.dataset import IterableDataset
from ladle.interop import accelerator_available, converter, pin
from ladle.iterator import LoaderIterator
from ladle.resume import load_state, save_state
from ladle.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from ladle.seeding import check_generator, check_seed, draw_seed, fresh_seed, pass_seed

if TYPE_CHECKING:
    from ladle._runtime.engine import WorkerEngine
    from ladle._runtime.shm import SlabPool
    from ladle.resume import Progress

__all__ = ["DataLoader"]

WORKER_TYPES = ("process", "thread")
_FROZEN = frozenset(
    {"batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers"}
)


def _check_count(value: object, name: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be an int, but got {name}={value!r}")
    if value < 0:
        raise ValueError(f"{name} option should be non-negative, but got {name}={value}; {fix}")
    return value


def _check_context(context: Any, num_workers: int, worker_type: str) -> Any:
    if context is None:
        return None
    if num_workers == 0:
        raise ValueError(
            f"multiprocessing_context can only be used with multi-process loading "
            f"(num_workers > 0), but got num_workers={num_workers}; drop the argument or raise "
            f"num_workers"
        )
    if worker_type == "thread":
        raise ValueError(
            f"multiprocessing_context={context!r} has no meaning with worker_type='thread'; "
            f"drop it, or use worker_type='process'"
        )
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(
                f"multiprocessing_context option should specify a valid start method in "
                f"{methods!r}, but got multiprocessing_context={context!r}"
            )
        return multiprocessing.get_context(context)
    if not isinstance(context, multiprocessing.context.BaseContext):
        raise TypeError(
            f"multiprocessing_context option should be a valid context object or a string "
            f"naming the start method, but got multiprocessing_context={context!r}"
        )
    return context


class DataLoader(Iterable[Any]):
    """Iterates over ``dataset`` in batches: torch's DataLoader, plus ``seed``, ``worker_type``
    and ``output``.

    ``seed`` fixes everything random: with it, epoch ``e``'s order is a pure function of
    ``(seed, e)``, and so is every draw from ``ladle.sample_rng()``, for any ``num_workers``.
    Without it the loader picks a fresh seed (or, with ``generator=``, draws from that).
    ``output`` converts batches: None keeps the samples' array types, ``"numpy"``, ``"torch"``
    and ``"jax"`` convert every numeric array. ``state_dict()`` / ``load_state_dict()`` save and
    restore the position in the stream, to the batch.
    """

    _initialized = False

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler[Any] | Iterable[Any] | None = None,
        batch_sampler: Sampler[Any] | Iterable[Any] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
        worker_type: str = "process",
        output: str | None = None,
    ) -> None:
        num_workers = _check_count(
            num_workers, "num_workers", "use num_workers=0 to load in the main process"
        )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout should be a number of seconds, but got timeout={timeout!r}")
        if timeout < 0:
            raise ValueError(
                f"timeout option should be a non-negative number of seconds, but got "
                f"timeout={timeout!r}; use timeout=0 to wait forever"
            )
        if timeout > 0 and num_workers == 0:
            raise ValueError(
                f"timeout={timeout} applies to worker loading only, but num_workers=0; set "
                f"num_workers > 0 or leave timeout=0"
            )
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                f"prefetch_factor option could only be specified in multiprocessing, but got "
                f"prefetch_factor={prefetch_factor} with num_workers=0; set num_workers > 0 or "
                f"prefetch_factor=None"
            )
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None:
            _check_count(prefetch_factor, "prefetch_factor", "use the default prefetch_factor=2")
        if persistent_workers and num_workers == 0:
            raise ValueError(
                "persistent_workers option needs num_workers > 0; set num_workers > 0 or "
                "persistent_workers=False"
            )
        if worker_type not in WORKER_TYPES:
            raise ValueError(
                f"worker_type should be 'process' or 'thread', but got worker_type={worker_type!r}"
            )
        context = _check_context(multiprocessing_context, num_workers, worker_type)
        if seed is not None:
            seed = check_seed(seed)
            if generator is not None:
                raise ValueError(
                    "DataLoader takes seed or generator, not both; seed=<int> fixes the order "
                    "of every epoch, so drop generator="
                )
        if generator is not None:
            check_generator(generator)
        convert = converter(output)
        if pin_memory and output in ("numpy", "jax"):
            raise ValueError(
                f"pin_memory=True makes pinned torch tensors, which contradicts "
                f"output={output!r}; use output='torch' (or None) or pin_memory=False"
            )

        is_iterable = isinstance(dataset, IterableDataset)
        if is_iterable:
            if shuffle not in (False, None):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, but "
                    f"got shuffle={shuffle!r}; an iterable dataset decides its own order, so "
                    f"shuffle inside its __iter__ (or use a map-style Dataset)"
                )
            if sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified sampler option, but "
                    f"got sampler={sampler!r}; an iterable dataset yields its own samples"
                )
            if batch_sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified batch_sampler "
                    f"option, but got batch_sampler={batch_sampler!r}; use batch_size="
                )
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError(
                "sampler option is mutually exclusive with shuffle; pass shuffle=False and let "
                "the sampler decide the order (e.g. RandomSampler)"
            )
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    "sampler, and drop_last; the batch sampler alone decides the batches, so "
                    "leave those at their defaults"
                )
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with "
                "drop_last; set a batch_size or drop_last=False"
            )

        if sampler is None and not is_iterable:
            if shuffle:
                sampler = RandomSampler(dataset, generator=generator, seed=seed)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            # BatchSampler validates batch_size and drop_last, with torch's messages.
            checked = BatchSampler(sampler if sampler is not None else [], batch_size, drop_last)
            if not is_iterable:
                batch_sampler = checked

        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        auto_collation = batch_sampler is not None or (is_iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if auto_collation else default_convert
        self.collate_fn = collate_fn
        self.pin_memory = bool(pin_memory)
        self.drop_last = drop_last
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.pin_memory_device = pin_memory_device
        self.in_order = in_order
        self.seed = seed
        # The seed the stream derives from: the one given, else a fresh one; None when a
        # generator is drawn from instead (torch's behaviour). A loaded state may replace it.
        self._seed: int | None = seed if seed is not None or generator is not None else fresh_seed()
        self.worker_type = worker_type
        self.output = output
        self._convert = convert
        self._is_iterable = is_iterable
        self._auto_collation = auto_collation
        self._pinning: bool | None = None  # decided at the first iteration
        self._passes = 0  # passes started so far: the next pass's number
        self._progress: Progress | None = None  # the latest pass's position
        self._pending_state: dict[str, Any] | None = None  # loaded, for the next pass
        self._engine: WorkerEngine | None = None  # kept between passes with persistent_workers
        self._live: weakref.ref[LoaderIterator] | None = None
        self._slab_bytes = 0  # largest batch in shared memory so far: sizes the next pass's slabs
        self._slabs: SlabPool | None = None  # kept between passes of forked workers
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self._initialized and name in _FROZEN:
            raise ValueError(
                f"{name} attribute should not be set after DataLoader is initialized; build a "
                f"new DataLoader with {name}={value!r}"
            )
        super().__setattr__(name, value)

    def _index_iter(self) -> Iterator[Any]:
        """Batches of indices (int64 arrays on the fast path), or single indices."""
        if self.batch_sampler is None:
            return iter(self.sampler)  # type: ignore[arg-type]
        if isinstance(self.batch_sampler, BatchSampler):
            return self.batch_sampler.iter_batches()
        return iter(self.batch_sampler)

    def _postprocess(self) -> Callable[[Any], Any] | None:
        """What happens to each collated batch: the output conversion, then pinning."""
        if not self.pin_memory:
            return self._convert
        if self._pinning is None:
            self._pinning = accelerator_available()
            if not self._pinning:
                warnings.warn(
                    "pin_memory=True, but no accelerator is available, so batches are not "
                    "pinned; set pin_memory=False to silence this",
                    UserWarning,
                    stacklevel=3,
                )
        if not self._pinning:
            return self._convert
        convert = self._convert
        return pin if convert is None else (lambda batch: pin(convert(batch)))

    def __iter__(self) -> LoaderIterator:
        if self.num_workers == 0:
            return LoaderIterator(self)
        previous = self._live() if self._live is not None else None
        if previous is not None:
            previous.close()  # one pass at a time over the same workers, as in torch
        if self._engine is None:
            from ladle._runtime.engine import WorkerEngine

            engine = WorkerEngine(self)
            if self.persistent_workers:
                self._engine = engine
        else:
            engine = self._engine
        iterator = LoaderIterator(self, engine)
        self._live = weakref.ref(iterator)
        return iterator

    def _pass_seed(self, pass_index: int) -> int:
        """The seed of pass ``pass_index``: the workers' base seed (torch's ``base_seed``) and
        the root of ``sample_rng()``."""
        if self._seed is not None:
            return pass_seed(self._seed, pass_index)
        return draw_seed(self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream, as a small JSON-serialisable dict: the pass (epoch),
        how many of its batches were consumed, and the start-of-pass state of the sampler.

        Call it between batches or between epochs. A loader built with the same dataset and
        arguments (any ``num_workers`` and ``worker_type`` for a map-style dataset) that loads
        it with :meth:`load_state_dict` yields exactly the batches this one would have yielded
        next, then the following epochs.
        """
        return save_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` (from :meth:`state_dict`): the next ``iter(loader)`` continues
        that pass. Raises ValueError when the state was saved from a loader with another
        dataset length, batch size, sampler or seed."""
        load_state(self, state)

    def _release_engine(self, engine: WorkerEngine, broken: bool) -> None:
        """A pass is over: stop its workers unless they persist (and are not broken)."""
        self._slab_bytes = max(self._slab_bytes, engine.slab_bytes)
        if engine is self._engine and not broken:
            return
        if engine is self._engine:
            self._engine = None
        engine.close(broken)

    def _new_slab_pool(self) -> SlabPool:
        """Slabs for this loader's workers: each keeps its prefetched batches plus two spare."""
        from ladle._runtime.shm import SlabPool, shm_directory

        return SlabPool(shm_directory(), self.num_workers, keep=(self.prefetch_factor or 2) + 2)

    def _slab_pool(self) -> SlabPool:
        """The loader's shared-memory slabs, for forked workers (see SlabPool.end_pass)."""
        if self._slabs is None:
            self._slabs = self._new_slab_pool()
            weakref.finalize(self, self._slabs.close)
        return self._slabs

    def close(self) -> None:
        """Stop the workers and free the shared memory now, instead of when the loader is
        garbage-collected."""
        previous = self._live() if self._live is not None else None
        if previous is not None:
            previous.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        if self._slabs is not None:
            self._slabs.close()
            self._slabs = None

    def __len__(self) -> int:
        if self._is_iterable:
            length = len(self.dataset)
            if self.batch_size is None:
                return length
            if self.drop_last:
                return length // self.batch_size
            return math.ceil(length / self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)  # type: ignore[arg-type]
        return len(self.sampler)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, num_workers={self.num_workers}, seed={self.seed})"
        )
