"""Samplers: which indices to load, in which order. Index arithmetic only. The random ones
are in ``random_sampler.py``.

The built-in samplers derive from :class:`EpochSampler`: an epoch's order is a pure function of
the sampler's configuration and the epoch number, so a sampler can report its position as two
integers (``state_dict``) and resume from them (``load_state_dict``). The loader reads batches
from them as NumPy slices instead of lists of Python ints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any, Generic, TypeVar

import numpy as np

from ladle.seeding import check_seed
from ladle.validation import check_bool

__all__ = [
    "BatchSampler",
    "EpochSampler",
    "Sampler",
    "SequentialSampler",
    "check_flag",
    "check_positive_int",
    "check_sized",
    "load_sampler_state",
    "sampler_state",
]

T_co = TypeVar("T_co", covariant=True)

_CHUNK = 4096  # indices converted to Python ints at a time when iterating one by one


class Sampler(Generic[T_co]):
    """Base class: ``__iter__`` yields indices (or lists of indices, for batch samplers)."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__()")


def check_positive_int(value: object, name: str) -> int:
    """torch's check and message for a sampler's counts (ValueError, even for a wrong type)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """torch's check and message for a sampler's flags (ValueError, even for a wrong type)."""
    return check_bool(value, name, type_error=ValueError)


def check_sized(value: object, name: str) -> Sized:
    if not isinstance(value, Sized):
        raise TypeError(
            f"{name} should be a dataset or sequence with a length (__len__), but got "
            f"{name}={value!r} ({type(value).__name__})"
        )
    return value


class EpochSampler(Sampler[int]):
    """A sampler whose epoch ``e`` is the index array ``self.epoch_order(e)``.

    Position: ``epoch`` is the epoch the next iteration yields (or the running one yields), and
    the running iteration counts how many indices it has handed out. Samplers that advance by
    themselves (``advances = True``, the random ones) move to the next epoch each time an
    iteration starts, as torch's do; ``set_epoch`` fixes the epoch explicitly.
    """

    advances = False

    def __init__(self) -> None:
        self.epoch = 0
        self._running: tuple[int, int] | None = None  # (epoch, indices handed out)
        self._resume_offset = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        """All indices of ``epoch``, in order, as int64 (a pure function of config and epoch)."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._compute_order(epoch))
        return self._cache[1]

    def _compute_order(self, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield ``epoch`` from its start, unless a resumed position
        in that very epoch is pending (``load_state_dict``): a training loop that calls
        ``set_epoch(e)`` at the top of each epoch then resumes mid-epoch unchanged."""
        epoch = check_seed(epoch, "epoch")
        if epoch != self.epoch:
            self._resume_offset = 0
        self.epoch = epoch

    def _begin(self) -> tuple[int, int]:
        epoch, start = self.epoch, self._resume_offset
        self._resume_offset = 0
        if self.advances:
            self.epoch = epoch + 1
        self._running = (epoch, start)
        return epoch, start

    def indices_from(self, epoch: int, position: int) -> Iterator[int]:
        """Epoch ``epoch`` from index ``position`` on, one int at a time. A pure function of
        its arguments: the sampler's own position is not touched."""
        order = self.epoch_order(epoch)
        while position < len(order):
            chunk = order[position : position + _CHUNK].tolist()
            position += len(chunk)
            yield from chunk

    def batches_from(
        self, epoch: int, position: int, batch_size: int, drop_last: bool
    ) -> Iterator[np.ndarray]:
        """Epoch ``epoch`` from index ``position`` on, as int64 slices of ``batch_size`` (the
        loader's fast path). A pure function of its arguments, like :meth:`indices_from`."""
        order = self.epoch_order(epoch)
        total = len(order)
        end = position + (total - position) // batch_size * batch_size if drop_last else total
        while position < end:
            yield order[position : position + batch_size]
            position += batch_size

    def will_read(self, epoch: int, position: int) -> None:
        """A reader of the epoch order that does not go through :meth:`batches_from` (the
        shares of ``DistributedBatchSampler``) is about to read from ``position`` of
        ``epoch``: a sampler over remote data fetches ahead here. Nothing by default."""

    def __iter__(self) -> Iterator[int]:
        epoch, position = self._begin()
        for index in self.indices_from(epoch, position):
            position += 1
            self._running = (epoch, position)
            yield index
        self._running = None

    def iter_batches(self, batch_size: int, drop_last: bool) -> Iterator[np.ndarray]:
        """The rest of an epoch as int64 slices of ``batch_size``."""

        def batches(epoch: int, position: int) -> Iterator[tuple[np.ndarray, int]]:
            for batch in self.batches_from(epoch, position, batch_size, drop_last):
                position += len(batch)
                yield batch, position

        return self.run(batches)

    def run(
        self, batches: Callable[[int, int], Iterator[tuple[np.ndarray, int]]]
    ) -> Iterator[np.ndarray]:
        """An iteration of the rest of an epoch, read by ``batches(epoch, position)``: it
        yields each batch with the epoch position after it, which the sampler's state reports
        while the iteration runs (a batch sampler that takes a share of each batch moves the
        position by the whole batch)."""
        epoch, start = self._begin()
        for batch, position in batches(epoch, start):
            self._running = (epoch, position)
            yield batch
        self._running = None

    def state_at(self, epoch: int, offset: int) -> dict[str, Any]:
        """The state of this sampler positioned at index ``offset`` of ``epoch``: what
        :meth:`state_dict` returns there."""
        return {"epoch": epoch, "offset": offset}

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "offset"}``: the next index to yield is ``offset`` into ``epoch``."""
        if self._running is not None:
            epoch, offset = self._running
            if offset < len(self.epoch_order(epoch)):
                return self.state_at(epoch, offset)
            return self.state_at(epoch + 1 if self.advances else epoch, 0)
        return self.state_at(self.epoch, self._resume_offset)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration continue from ``state`` (from :meth:`state_dict`)."""
        epoch = check_seed(state["epoch"], "state['epoch']")
        offset = check_seed(state["offset"], "state['offset']")
        self.epoch = epoch
        self._resume_offset = offset
        self._running = None


class SequentialSampler(EpochSampler):
    """``0, 1, ..., len(data_source) - 1``, every epoch."""

    def __init__(self, data_source: Sized) -> None:
        super().__init__()
        self.data_source = check_sized(data_source, "data_source")

    def _compute_order(self, epoch: int) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data_source)


class BatchSampler(Sampler[list[int]]):
    """Groups a sampler's indices into lists of ``batch_size``; ``drop_last`` drops a short tail."""

    def __init__(
        self, sampler: Sampler[int] | Iterable[int], batch_size: int, drop_last: bool
    ) -> None:
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.drop_last = check_flag(drop_last, "drop_last")
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[int]]:
        if isinstance(self.sampler, EpochSampler):
            for array in self.sampler.iter_batches(self.batch_size, self.drop_last):
                yield array.tolist()
            return
        batch: list[int] = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def iter_batches(self) -> Iterator[Any]:
        """Batches as int64 arrays when the sampler allows it, else as lists."""
        if isinstance(self.sampler, EpochSampler):
            return self.sampler.iter_batches(self.batch_size, self.drop_last)
        return iter(self)

    def __len__(self) -> int:
        count = len(self.sampler)  # type: ignore[arg-type]
        if self.drop_last:
            return count // self.batch_size
        return (count + self.batch_size - 1) // self.batch_size

    def state_dict(self) -> dict[str, Any]:
        return sampler_state(self.sampler)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_sampler_state(self.sampler, state)


def sampler_state(sampler: object, between_passes: bool = False) -> dict[str, Any]:
    """``sampler.state_dict()``; ``{}`` for a fixed sequence (a list, an array).

    ``between_passes``: the state is saved while no pass runs, to start the next one afresh; a
    sampler whose state at a pass's start holds more than that (the random state it is about
    to draw from) says so with a ``state_between_passes()`` method."""
    state_dict = getattr(sampler, "state_dict", None)
    if between_passes:
        state_dict = getattr(sampler, "state_between_passes", state_dict)
    if state_dict is None and isinstance(sampler, Sequence | np.ndarray):
        return {}  # a fixed sequence: the same order every time
    if state_dict is None:
        raise TypeError(
            f"{type(sampler).__name__} cannot report its position: give it state_dict() and "
            f"load_state_dict(state) (returning {{}} if its order never changes), or use a "
            f"ladle sampler"
        )
    return state_dict()  # type: ignore[no-any-return]


def load_sampler_state(sampler: object, state: dict[str, Any]) -> None:
    """``sampler.load_state_dict(state)``; nothing for a fixed sequence."""
    load = getattr(sampler, "load_state_dict", None)
    if load is None and isinstance(sampler, Sequence | np.ndarray):
        return
    if load is None:
        raise TypeError(
            f"{type(sampler).__name__} cannot restore a position: give it load_state_dict(state)"
        )
    load(state)
