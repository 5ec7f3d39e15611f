"""DataLoader: a validated configuration of a loading pipeline, and its entry point.

The loader holds its configuration (``config.py``), its place in the stream (``stream.py``)
and, with ``persistent_workers=True``, the workers kept between passes. Each ``iter(loader)``
is a pass (:class:`~ladle.iterator.LoaderIterator`) that owns everything about its epoch; two
passes of one loader share no mutable state, so they can run at once, in one thread or several.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ladle import machine
from ladle._runtime.engine import Workers
from ladle.autotune import AutoTuner, Choice, PassTuner
from ladle.config import (
    FROZEN,
    SETTINGS,
    LoaderConfig,
    configure,
    reconfigure,
    reconfigure_all,
    with_workers,
)
from ladle.interop import accelerator_available, pin
from ladle.iterator import LoaderIterator, PassSetup
from ladle.launcher import Launcher
from ladle.passplan import index_batches, index_sampler, pass_keys
from ladle.ranks import Ranks
from ladle.resume import Progress, check_state
from ladle.sampler import Sampler, load_sampler_state
from ladle.seeding import fresh_seed, is_global_generator, rank_seed
from ladle.stats import LoaderStats, StatsBook
from ladle.stream import StreamPosition

__all__ = ["DataLoader"]


class DataLoader(Iterable[Any]):
    """Iterates over ``dataset`` in batches: torch's DataLoader, plus ``seed``, ``worker_type``
    and ``output``.

    ``seed`` fixes everything random: with it, epoch ``e``'s order is a pure function of
    ``(seed, e)``, and so is every draw from ``ladle.sample_rng()``, for any ``num_workers``.
    Without it the loader picks a fresh seed (or, with ``generator=``, draws from that).
    ``output`` converts batches: None keeps the samples' array types, ``"numpy"``, ``"torch"``
    and ``"jax"`` convert every numeric array. ``state_dict()`` / ``load_state_dict()`` save and
    restore the position in the stream, to the batch.

    ``distributed=True`` shares the batches across the ranks of the running job (found from
    torch.distributed, torchrun's environment or JAX; or pass ``ladle.Ranks(rank, world)``):
    each global batch (``batch_size`` per rank times the world size, or ``global_batch_size``)
    is split across the ranks, so the sequence of global batches is the same on any number of
    ranks, and a state saved on one number resumes on another. Without ``seed`` it is 0, as
    for torch's DistributedSampler, so that every rank computes the same order; each rank's
    workers still seed the global generators (NumPy's, ``random``, torch's) their own way.
    With ``global_batch_size``, ``batch_size`` is this rank's share (its default 1 is
    ignored).

    Settings other than the batching ones (dataset, sampler, batch_size, ...) may be reassigned
    (``loader.num_workers = 4``); each assignment is checked like the constructor's argument.
    """

    _config: LoaderConfig

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler[Any] | Iterable[Any] | None = None,
        batch_sampler: Sampler[Any] | Iterable[Any] | None = None,
        num_workers: int | str = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | str | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
        worker_type: str = "process",
        output: str | None = None,
        distributed: bool | Ranks = False,
        global_batch_size: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"]
        config = configure(arguments)
        settings = config.settings
        object.__setattr__(self, "_config", config)
        # The seed the stream derives from: the one given, else a fresh one; None when a
        # generator is drawn from instead (torch's behaviour). A loaded state may replace it.
        stream_seed = settings.seed
        if stream_seed is None and settings.generator is None:
            stream_seed = fresh_seed()
        self._stream = StreamPosition(stream_seed)
        self._pinning: bool | None = None  # decided at the first iteration
        self._launcher = Launcher()  # the passes' workers
        self._reported_length: int | None = None  # len(loader) of an iterable, once asked
        self._stats = StatsBook()
        self._tuner: AutoTuner | None = None  # num_workers="auto": its choice, once made

    # -- configuration -----------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if name in FROZEN or name in SETTINGS:
            config = reconfigure(self._config, name, value)
            with self._stream.lock:
                object.__setattr__(self, "_config", config)
                self._launcher.drop()  # the workers were made for the old settings
                self._tuner = None  # and "auto" measured them
            return
        object.__setattr__(self, name, value)

    def reconfigure(self, **settings: Any) -> None:
        """Reassign several settings at once, checked together: ``num_workers=0`` with
        ``prefetch_factor=None``, say, which one at a time would be refused half-way."""
        config = reconfigure_all(self._config, settings)
        with self._stream.lock:
            object.__setattr__(self, "_config", config)
            self._launcher.drop()
            self._tuner = None

    @property
    def dataset(self) -> Any:
        return self._config.sampling.dataset

    @property
    def batch_size(self) -> int | None:
        return self._config.sampling.batch_size

    @property
    def shuffle(self) -> bool:
        return self._config.sampling.shuffle

    @property
    def sampler(self) -> Any:
        return self._config.sampling.sampler

    @property
    def batch_sampler(self) -> Any:
        return self._config.sampling.batch_sampler

    @property
    def ranks(self) -> Ranks | None:
        """The ranks the batches are shared across (``distributed=``), else None."""
        return self._config.sampling.ranks

    @property
    def global_batch_size(self) -> int | None:
        """The batch summed over the ranks (``distributed=``), else None."""
        return self._config.sampling.global_batch_size

    @property
    def drop_last(self) -> bool:
        return self._config.sampling.drop_last

    @property
    def persistent_workers(self) -> bool:
        return self._config.sampling.persistent_workers

    @property
    def num_workers(self) -> int:
        """The number of workers; with num_workers="auto", the number chosen (0 until it is:
        the first pass starts in the main process)."""
        settings = self._config.settings
        if settings.auto_workers:
            choice = self.autotune
            return choice.num_workers if choice is not None else 0
        return settings.num_workers

    @property
    def autotune(self) -> Choice | None:
        """What num_workers="auto" chose and why; None before it has (or without "auto")."""
        return self._tuner.choice if self._tuner is not None else None

    @property
    def memory_budget(self) -> int | None:
        return self._config.settings.memory_budget

    @property
    def collate_fn(self) -> Callable[[Any], Any]:
        return self._config.settings.collate_fn

    @property
    def pin_memory(self) -> bool:
        return self._config.settings.pin_memory

    @property
    def timeout(self) -> float:
        return self._config.settings.timeout

    @property
    def worker_init_fn(self) -> Callable[[int], Any] | None:
        return self._config.settings.worker_init_fn

    @property
    def multiprocessing_context(self) -> Any:
        return self._config.settings.context

    @property
    def generator(self) -> Any:
        return self._config.settings.generator

    @property
    def prefetch_factor(self) -> int | None:
        return self._config.settings.prefetch_factor

    @property
    def pin_memory_device(self) -> str:
        return self._config.settings.pin_memory_device

    @property
    def in_order(self) -> bool:
        return self._config.settings.in_order

    @property
    def seed(self) -> int | None:
        return self._config.settings.seed

    @property
    def worker_type(self) -> str:
        return self._config.settings.worker_type

    @property
    def output(self) -> str | None:
        return self._config.settings.output

    @property
    def _streams(self) -> int:
        return max(self.num_workers, 1)

    # -- passes ------------------------------------------------------------------------------

    def _postprocess(self) -> Callable[[Any], Any] | None:
        """What happens to each collated batch: the output conversion, then pinning."""
        settings = self._config.settings
        convert = settings.convert
        if not settings.pin_memory:
            return convert
        if self._pinning is None:
            self._pinning = accelerator_available()
            if not self._pinning:
                warnings.warn(
                    "pin_memory=True, but no accelerator is available, so batches are not "
                    "pinned; set pin_memory=False to silence this",
                    UserWarning,
                    stacklevel=4,
                )
        if not self._pinning:
            return convert
        return pin if convert is None else (lambda batch: pin(convert(batch)))

    def _warn_excessive_workers(self) -> None:
        settings = self._config.settings
        cpus = machine.cpus()
        if settings.worker_type == "process" and settings.num_workers > cpus:
            warnings.warn(
                f"This DataLoader will create {settings.num_workers} worker processes in "
                f"total. Our suggested max number of worker in current system is {cpus}, "
                f"which is smaller than what this DataLoader is going to create. Please be "
                f"aware that excessive worker creation might get DataLoader running slow or "
                f"even freeze, lower the worker number to avoid potential slowness/freeze if "
                f"necessary.",
                UserWarning,
                stacklevel=3,
            )

    def __iter__(self) -> LoaderIterator:
        created = time.perf_counter()
        config, tuner = self._pass_config()
        sampling, settings = config.sampling, config.settings
        if settings.num_workers > 0:
            self._warn_excessive_workers()
        if not sampling.persistent_workers or settings.num_workers == 0 or tuner is not None:
            # num_workers="auto" keeps no workers between passes until it has chosen
            return self._start_pass(config, None, created, tuner)
        # One pass begins over the persistent workers at a time, whatever the threads do.
        with self._launcher.handover:
            return self._start_pass(config, self._launcher.persistent(config), created, None)

    def _pass_config(self) -> tuple[LoaderConfig, PassTuner | None]:
        """The configuration a new pass runs: num_workers="auto"'s choice once made, else its
        start (the main process), with the tuning that measures it."""
        config = self._config
        settings = config.settings
        if not settings.auto_workers:
            return config, None
        if self._tuner is None:
            self._tuner = AutoTuner(
                settings.worker_type,
                settings.prefetch_factor,
                settings.auto_prefetch,
                settings.memory_budget,
            )
        choice = self._tuner.choice
        if choice is not None:
            return with_workers(config, choice.num_workers, choice.prefetch_factor), None
        tuner = self._tuner.start()
        assert tuner is not None
        return with_workers(config, tuner.workers, tuner.prefetch), tuner

    def _start_pass(
        self,
        config: LoaderConfig,
        workers: Workers | None,
        created: float,
        tuner: PassTuner | None,
    ) -> LoaderIterator:
        sampling, settings = config.sampling, config.settings
        streams = max(settings.num_workers, 1)  # the pass's (num_workers="auto": its setting)
        start, seed = self._stream.start(sampling, settings.generator, streams)
        # over the persistent workers (a pass of num_workers="auto" still tuning runs workers
        # of its own, which a later pass over the persistent ones must leave alone)
        persistent = workers is not None
        if workers is None:
            workers = self._launcher.workers(config)
        recorder = self._stats.open(
            0 if workers.inline else workers.num_workers,
            created,
            workers.slabs,
            auto=settings.auto_workers,
        )
        ranks = sampling.ranks
        setup = PassSetup(
            start=start,
            seed=seed if ranks is None else rank_seed(seed, ranks.rank),
            indices=None if sampling.is_iterable else index_batches(sampling, start),
            keys=pass_keys(sampling, start, seed, streams),
            workers=workers,
            streams=streams,
            iterable=sampling.is_iterable,
            postprocess=self._postprocess(),
            length=self._length,
            reported_length=lambda: self._reported_length,
            dataset=sampling.dataset,
            commit=self._commit,
            release=self._launcher.release,
            recorder=recorder,
            tuner=tuner,
            switch=lambda n, p: self._launcher.workers(with_workers(config, n, p)),
            present=self._present_worker_error,
        )
        try:
            iterator = LoaderIterator(setup)
        except BaseException:
            self._launcher.release(workers, True)
            raise
        self._launcher.running(iterator, persistent)
        return iterator

    #: How an exception raised in a worker is presented: ladle raises the worker's own
    #: exception with its traceback as a note; a subclass may word it otherwise (ladle.torch
    #: words it as torch does).
    _present_worker_error: Callable[[BaseException, int], BaseException] | None = None

    def _commit(self, progress: Progress) -> None:
        self._stream.commit(progress, self._config.sampling)

    # -- position ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream, as a small JSON-serialisable dict: the pass (epoch),
        how many of its batches were consumed, and the start-of-pass state of the sampler.

        Call it between batches or between epochs. A loader built with the same dataset and
        arguments (any ``num_workers`` and ``worker_type`` for a map-style dataset) that loads
        it with :meth:`load_state_dict` yields exactly the batches this one would have yielded
        next, then the following epochs.
        """
        settings = self._config.settings
        return self._stream.state(self._config.sampling, settings.generator, self._streams)

    def restart_state(self) -> dict[str, Any]:
        """A state that begins the running pass again from its start (where it began, if it was
        itself resumed): for a framework that must save something where :meth:`state_dict`
        cannot save the position inside the pass (an IterableDataset without ``iter_from``)."""
        settings = self._config.settings
        return self._stream.restart(self._config.sampling, settings.generator, self._streams)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` (from :meth:`state_dict`): the next ``iter(loader)`` continues
        that pass. Raises ValueError, naming the field, when the state was saved from a loader
        with another dataset length, batch size, sampler or seed, or lies outside the epoch."""
        sampling, settings = self._config.sampling, self._config.settings
        checked, seed = check_state(
            sampling, self._streams, settings.generator, settings.seed, state
        )
        sampler = index_sampler(sampling)
        if not sampling.is_iterable:
            # The sampler checks its own part (a seed of its own, a generator) now rather than
            # at the next iter(); a pass starts from the state again.
            load_sampler_state(sampler, checked["sampler"])
        self._stream.load(checked, seed)

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> LoaderStats:
        """Where the time went: the latest pass's numbers and every pass's summed (batches,
        samples, the data-wait share, time per stage, the workers' busy shares, bytes moved,
        shared memory in use). Always on; see :mod:`ladle.stats` for what each number is."""
        return self._stats.stats(self._launcher.idle_slabs)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every pass and the workers, and free the shared memory now, instead of when
        the loader is garbage-collected. The loader can be iterated again afterwards."""
        self._launcher.close()

    def __getstate__(self) -> dict[str, Any]:
        """The configuration and the position in the stream; no workers, no shared memory."""
        try:
            position: dict[str, Any] | None = self.state_dict()
        except TypeError:  # a sampler that cannot report its position
            position = None
        config = self._config
        global_generator = is_global_generator(config.settings.generator)
        if global_generator:  # pickled, it would come back as a private copy of its state
            config = reconfigure_all(config, {"generator": None})
        return {
            "config": config,
            "global_generator": global_generator,
            "seed": self._stream.seed,
            "position": position,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        config = state["config"]
        if state.get("global_generator"):
            import torch

            config = reconfigure_all(config, {"generator": torch.default_generator})
        object.__setattr__(self, "_config", config)
        self._stream = StreamPosition(state["seed"])
        self._pinning = None
        self._launcher = Launcher()
        self._reported_length = None
        self._stats = StatsBook()
        self._tuner = None
        if state["position"] is not None:
            self.load_state_dict(state["position"])

    def __len__(self) -> int:
        length = self._length()
        sampling = self._config.sampling
        if sampling.is_iterable:
            # What the length warning holds the stream to: torch compares the batches yielded
            # with the dataset's length.
            self._reported_length = len(sampling.dataset)
        return length

    def _length(self) -> int:
        sampling = self._config.sampling
        if sampling.is_iterable:
            length: int = len(sampling.dataset)
            if sampling.batch_size is None:
                return length
            if sampling.drop_last:
                return length // sampling.batch_size
            return math.ceil(length / sampling.batch_size)
        if sampling.batch_sampler is not None:
            return len(sampling.batch_sampler)
        return len(sampling.sampler)

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, num_workers={self._workers_shown()}, seed={self.seed})"
        )

    def _workers_shown(self) -> str:
        if not self._config.settings.auto_workers:
            return str(self.num_workers)
        choice = self.autotune
        return "'auto'" if choice is None else f"'auto' ({choice.num_workers})"
