"""torch's DataLoader, running on ladle's engine.

:class:`DataLoader` *is* a ``torch.utils.data.DataLoader``: torch's constructor checks the
arguments (with torch's exceptions and warnings) and sets torch's attributes, so frameworks that
inspect or rebuild a loader treat it as torch's. Iteration runs on a ladle loader (the
*engine*): workers collate into shared memory and batches arrive as tensors over it, passes are
deterministic for any number of workers, ``state_dict()`` resumes mid-epoch, and failures are
reported with the worker's traceback. The engine follows the loader's attributes: what torch
lets a user reassign (``num_workers``, ``collate_fn``, ...) takes effect at the next pass.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.data as torch_data

from ladle.config import WORKER_TYPES
from ladle.errors import ArgumentError
from ladle.iterator import LoaderIterator
from ladle.loader import DataLoader as LadleLoader
from ladle.seeding import check_loader_seed
from ladle.torch.collate import COLLATER, default_collate, default_convert
from ladle.torch.sampling import SamplerState, decode_state, encode_state
from ladle.validation import check_choice

__all__ = ["DataLoader"]

_TRACE_NOTE = "\nRaised in ladle worker "
_TRACE_START = "Worker traceback:\n"


def _as_torch_words(error: BaseException, worker_id: int) -> BaseException:
    """A worker's exception as torch's loader raises it: the same type, with the message
    "Caught X in DataLoader worker process N." and the worker's traceback (a RuntimeError with
    that message when the type cannot be built from one string, as in torch)."""
    trace = next(
        (
            note.split(_TRACE_START, 1)[1]
            for note in getattr(error, "__notes__", ())
            if note.startswith(_TRACE_NOTE) and _TRACE_START in note
        ),
        f"{type(error).__name__}: {error}\n",
    )
    message = (
        f"Caught {type(error).__name__} in DataLoader worker process {worker_id}.\nOriginal {trace}"
    )
    try:
        worded = type(error)(message)
    except Exception:
        return RuntimeError(message)
    worded.__cause__ = None
    return worded


class Engine(LadleLoader):
    """ladle's loader with worker errors worded as torch words them."""

    _present_worker_error = staticmethod(_as_torch_words)


_DEFAULT_COLLATES = (torch_data.default_collate, default_collate)
_DEFAULT_CONVERTS = (torch_data.default_convert, default_convert)


class DataLoader(torch_data.DataLoader[Any]):
    """``torch.utils.data.DataLoader`` with ladle's engine underneath.

    Takes torch's arguments, plus ``seed`` (an int fixing the ``shuffle=True`` order, the
    workers' seeds and ``ladle.sample_rng()`` for every epoch, for any ``num_workers``; a
    sampler you pass keeps its own randomness) and ``worker_type`` (``"process"`` or
    ``"thread"``). Without a seed, randomness comes from torch's default generator as in
    torch, so ``torch.manual_seed`` governs it. ``state_dict()`` and ``load_state_dict()``
    save and restore the position in the stream, to the batch; frameworks that checkpoint
    stateful loaders (Lightning) use them.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
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
    ) -> None:
        seed = check_loader_seed(seed, generator)
        super().__init__(
            dataset,
            batch_size,
            shuffle,
            sampler,
            batch_sampler,
            num_workers,
            collate_fn,
            pin_memory,
            drop_last,
            timeout,
            worker_init_fn,
            multiprocessing_context,
            generator,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device,
            in_order=in_order,
        )
        self.seed = seed
        if collate_fn is None:  # the namespace's own defaults, as torch's loader holds torch's
            self.collate_fn = default_collate if self._auto_collation else default_convert
        # The seed's generator is the loader's own, not its ``generator`` attribute: a
        # framework that rebuilds the loader from its attributes passes seed= again, and the
        # rebuilt loader starts the same stream afresh.
        self._seeded: torch.Generator | None = None
        if seed is not None:
            self._seeded = torch.Generator()
            self._seeded.manual_seed(seed)
            if (
                sampler is None
                and batch_sampler is None
                and isinstance(self.sampler, torch_data.RandomSampler)
            ):
                self.sampler.generator = self._seeded  # the shuffle torch made for us
        self.worker_type = check_choice(
            worker_type, "worker_type", WORKER_TYPES, fix="processes are the default"
        )
        self._settings = self._engine_settings()
        self._engine = self._build_engine(self._settings)

    # -- the engine --------------------------------------------------------------------------

    def _collation(self) -> tuple[Callable[[Any], Any], str | None]:
        """The engine's collate function and output: torch's defaults become ladle's
        collater, whose NumPy batches turn into tensors in the main process."""
        collate = self.collate_fn
        if any(collate is default for default in _DEFAULT_COLLATES):
            return COLLATER, "torch"
        if any(collate is default for default in _DEFAULT_CONVERTS):
            return default_convert, None
        return collate, None

    def _engine_settings(self) -> dict[str, Any]:
        """The engine's settings from the loader's current attributes, in the form the
        engine accepts (it refuses what torch ignores, such as a timeout without workers)."""
        workers = self.num_workers
        processes = workers > 0 and self.worker_type == "process"
        context = self.multiprocessing_context
        if processes and context is None:
            context = multiprocessing.get_context()  # torch's default: the current start method
        collate, output = self._collation()
        return {
            "num_workers": workers,
            "collate_fn": collate,
            "timeout": self.timeout if workers else 0,
            "worker_init_fn": self.worker_init_fn,
            "multiprocessing_context": context if processes else None,
            "generator": self._generator(),
            "prefetch_factor": self.prefetch_factor if workers else None,
            "in_order": bool(self.in_order),
            "worker_type": self.worker_type,
            "output": output,
            "pin_memory": bool(self.pin_memory) and torch.accelerator.is_available(),
        }

    def _generator(self) -> torch.Generator:
        """What each pass draws its base seed from, as torch's loader does from its own."""
        if self._seeded is not None:
            return self._seeded
        return torch.default_generator if self.generator is None else self.generator

    def _build_engine(self, settings: dict[str, Any]) -> Engine:
        iterable = self._dataset_kind == torch_data.dataloader._DatasetKind.Iterable
        sampling: dict[str, Any]
        if iterable:
            sampling = {"batch_size": self.batch_size, "drop_last": bool(self.drop_last)}
        elif self.batch_sampler is not None:
            sampling = {"batch_sampler": SamplerState(self.batch_sampler)}
        else:
            sampling = {"sampler": SamplerState(self.sampler), "batch_size": None}
        return Engine(
            self.dataset,
            persistent_workers=bool(self.persistent_workers),
            **sampling,
            **settings,
        )

    def _sync(self) -> Engine:
        """The engine, with the settings reassigned on the loader since the last pass."""
        settings = self._engine_settings()
        changed = {
            name: value for name, value in settings.items() if value is not self._settings[name]
        }
        if changed:
            self._engine.reconfigure(**changed)
            self._settings = settings
        return self._engine

    # -- passes ------------------------------------------------------------------------------

    def __iter__(self) -> LoaderIterator:  # type: ignore[override]
        return self._get_iterator()

    def _get_iterator(self) -> LoaderIterator:  # type: ignore[override]
        engine = self._sync()
        if self.num_workers == 0 and self.timeout != 0:
            # torch asserts this when the pass starts, not when the loader is built
            raise ArgumentError(
                f"_SingleProcessDataLoaderIter requires timeout == 0, but got "
                f"timeout={self.timeout} with num_workers=0; the timeout applies to workers only"
            )
        if self.pin_memory:
            self._warn_pin_memory()
        return iter(engine)

    def _warn_pin_memory(self) -> None:
        # torch's warnings, in torch's words, each pass
        if self.pin_memory_device:
            warnings.warn(
                f"pin_memory_device is deprecated, the current accelerator will be used as the "
                f"device,ignore pin_memory_device='{self.pin_memory_device}'.",
                stacklevel=4,
            )
        if not torch.accelerator.is_available():
            warnings.warn(
                "'pin_memory' argument is set as true but no accelerator is found, then device "
                "pinned memory won't be used.",
                stacklevel=4,
            )

    def __len__(self) -> int:
        length: int = super().__len__()
        len(self._engine)  # what the engine's IterableDataset length warning compares with
        return length

    # -- position and lifecycle --------------------------------------------------------------

    def _draws_from_default(self) -> bool:
        return self._seeded is None and self.generator is None

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream, as a small JSON-serialisable dict (see
        ``ladle.DataLoader.state_dict``), plus, for a loader drawing from torch's default
        generator, that generator's state now: loading the state puts it back, so that a
        resumed run draws the next epochs (and everything else) as the uninterrupted one.

        Frameworks call this at every checkpoint. Where the position inside the pass cannot be
        saved (an IterableDataset without ``iter_from``), it warns and returns a state that
        begins the pass again, as torch's loader would on resuming."""
        engine = self._sync()
        try:
            state = engine.state_dict()
        except TypeError as error:
            warnings.warn(
                f"{error}; the state saved now begins this epoch again from its start",
                UserWarning,
                stacklevel=2,
            )
            state = engine.restart_state()
        if self._draws_from_default():
            state["torch_rng"] = encode_state(torch.get_rng_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state``: the next ``iter()`` yields the rest of the saved pass. A
        loader drawing from torch's default generator also puts that generator back in the
        state it had when ``state`` was saved."""
        state = dict(state)
        rng = state.pop("torch_rng", None)
        self._sync().load_state_dict(state)
        if rng is not None and self._draws_from_default():
            torch.set_rng_state(decode_state(rng))

    def close(self) -> None:
        """Stop every pass and the workers, and free the shared memory now."""
        self._engine.close()
