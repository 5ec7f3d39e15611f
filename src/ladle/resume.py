"""Exact resume: where a loader stands in its stream, as a small JSON-serialisable dict.

A loader's stream is a sequence of passes (epochs). Pass ``p`` is fixed by what stood at its
start: the sampler's state (an epoch and an offset for ladle's samplers), the generator's state
if there is one, and the loader's seed; the pass seed of workers and ``sample_rng()`` is a pure
function of ``(seed, p)``. So a position is "pass p, these batches of it consumed": a few
integers, whatever ``num_workers`` was. Resuming loads the start-of-pass state and skips the
consumed batches without fetching them (for ladle's samplers, by offset arithmetic).

An iterable dataset decides its own order, so its position is per stream: how many samples each
worker's stream delivered in consumed batches. It resumes through its ``iter_from(position)``
method (the resume protocol, see ``IterableDataset``), with as many streams as were saved.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ladle.sampler import BatchSampler, EpochSampler, load_sampler_state, sampler_state
from ladle.seeding import check_seed, generator_state, restore_generator, sample_key

if TYPE_CHECKING:
    from ladle.loader import DataLoader

__all__ = ["FORMAT", "PassPlan", "Progress", "begin_pass", "load_state", "save_state"]

FORMAT = "ladle.DataLoader/1"
SampleKey = tuple[int, int, int, int]


class _Renumbered(Iterator[Any]):
    """The index batches of a resumed pass minus those consumed before the cut (``skip``, only
    non-empty after ``in_order=False``); maps the n-th batch handed out to its number in the
    pass."""

    def __init__(self, batches: Iterator[Any], start: int, skip: set[int]) -> None:
        self._batches = batches
        self._next = start
        self._skip = skip
        self._last_skipped = max(skip)
        self._numbers: list[int] = []  # numbers handed out while skips lie ahead

    def __next__(self) -> Any:
        while True:
            item = next(self._batches)
            number, self._next = self._next, self._next + 1
            if number in self._skip:
                continue
            if number <= self._last_skipped:
                self._numbers.append(number)
            return item

    def number(self, handed_out: int) -> int:
        if handed_out < len(self._numbers):
            return self._numbers[handed_out]
        return self._last_skipped + 1 + handed_out - len(self._numbers)


@dataclass
class Progress:
    """Where one pass stands: what held at its start, and which of its batches are consumed
    (yielded, or raised to the caller)."""

    pass_index: int
    sampler: dict[str, Any] | None  # the index sampler's state at the start of the pass
    unsaveable: str | None  # why the sampler's state could not be taken, if it could not
    generator: dict[str, Any] | None  # the loader generator's state at the start of the pass
    consumed: int = 0  # batches 0 .. consumed-1 of the pass are consumed
    beyond: set[int] = field(default_factory=set)  # consumed out of order (in_order=False)
    positions: list[int] | None = None  # iterable: samples each stream delivered
    next_stream: int = 0  # iterable: the stream whose batch comes next (round-robin)
    finished: bool = False
    _renumbered: _Renumbered | None = None
    _base: int = 0  # batches consumed before this iterator started (a resumed pass)

    def consume(self, handed_out: int) -> None:
        """The batch this iterator handed out ``handed_out``-th (0-based) is consumed."""
        if self._renumbered is not None:
            number = self._renumbered.number(handed_out)
        else:
            number = self._base + handed_out
        if number != self.consumed:
            self.beyond.add(number)
            return
        self.consumed += 1
        while self.consumed in self.beyond:
            self.beyond.discard(self.consumed)
            self.consumed += 1

    def stream_done(self, stream: int, position: int | None, streams: int) -> None:
        """A batch of ``stream`` was consumed; ``position``: that stream's count after it."""
        if self.positions is not None and position is not None:
            self.positions[stream] = position
        self.next_stream = (stream + 1) % streams


@dataclass
class PassPlan:
    """What an iterator needs to run pass ``progress.pass_index``."""

    seed: int
    indices: Iterator[Any] | None  # None for an iterable dataset
    starts: list[int]  # iterable: where each stream starts
    keys: list[SampleKey]  # each stream's (or worker's) sample_rng() key
    progress: Progress


def _streams(loader: DataLoader) -> int:
    return max(loader.num_workers, 1)


def _index_sampler(loader: DataLoader) -> Any:
    return loader.batch_sampler if loader.batch_sampler is not None else loader.sampler


def _epoch_sampler_step(loader: DataLoader) -> tuple[EpochSampler, int] | None:
    """The EpochSampler under the index sampler and how many indices one batch takes, when
    skipping batches is offset arithmetic."""
    if isinstance(loader.batch_sampler, BatchSampler):
        inner = loader.batch_sampler.sampler
        if isinstance(inner, EpochSampler):
            return inner, loader.batch_sampler.batch_size
        return None
    if loader.batch_sampler is None and isinstance(loader.sampler, EpochSampler):
        return loader.sampler, 1
    return None


def _restore_sampler(loader: DataLoader, state: dict[str, Any], skip: int) -> int:
    """Put the index sampler at ``state`` plus ``skip`` batches; returns the batches still to
    skip by iterating (0 when offset arithmetic did it)."""
    fast = _epoch_sampler_step(loader)
    if fast is not None and "offset" in state:
        epoch_sampler, step = fast
        moved = dict(state)
        moved["offset"] = int(state["offset"]) + skip * step
        epoch_sampler.load_state_dict(moved)
        return 0
    load_sampler_state(_index_sampler(loader), state)
    return skip


def begin_pass(loader: DataLoader) -> PassPlan:
    """Start the loader's next pass: a pending loaded state first, else the one after the last."""
    pending, loader._pending_state = loader._pending_state, None
    streams = _streams(loader)
    skip = 0
    beyond: set[int] = set()
    unsaveable = None
    if pending is not None:
        loader._passes = pending["epoch"]
        start_state = pending["sampler"]
        generator = pending["generator"]
        if generator is not None:
            restore_generator(loader.generator, generator)
        skip, beyond = pending["batches"], set(pending["beyond"])
        to_iterate = 0
        if not loader._is_iterable:
            to_iterate = _restore_sampler(loader, start_state, skip)
        starts = list(pending["streams"]) if loader._is_iterable else [0] * streams
        next_stream = pending["next_stream"]
    else:
        try:
            start_state = None if loader._is_iterable else sampler_state(_index_sampler(loader))
        except TypeError as error:  # raised by state_dict() only: a pass needs no state
            start_state, unsaveable = None, str(error)
        generator = generator_state(loader.generator) if loader.generator is not None else None
        to_iterate = 0
        starts = [0] * streams
        next_stream = 0
    pass_index, loader._passes = loader._passes, loader._passes + 1
    progress = Progress(
        pass_index,
        start_state,
        unsaveable,
        generator,
        consumed=skip,
        beyond=set(beyond),
        positions=list(starts) if loader._is_iterable else None,
        next_stream=next_stream,
        _base=skip,
    )
    seed = loader._pass_seed(pass_index)  # after the snapshot: it may draw from the generator
    indices: Iterator[Any] | None = None
    if loader._is_iterable:
        keys = [sample_key(seed, 1, stream) for stream in range(streams)]
    else:
        # The sampler's epoch keys the samples too: a loader built afresh for each epoch, with
        # set_epoch() on its sampler, still draws new augmentations every epoch.
        fast = _epoch_sampler_step(loader)
        keys = [sample_key(seed, 0, fast[0].epoch if fast is not None else 0)] * streams
        indices = loader._index_iter()
        if to_iterate:
            indices = itertools.islice(indices, to_iterate, None)
        if beyond:
            renumbered = _Renumbered(indices, skip, beyond)
            progress._renumbered = renumbered
            indices = renumbered
    loader._progress = progress
    return PassPlan(seed, indices, starts, keys, progress)


def _check_values(loader: DataLoader) -> dict[str, Any]:
    """What must agree between the saved loader and the resuming one."""
    dataset = loader.dataset
    length = len(dataset) if hasattr(dataset, "__len__") else None
    sampler = None if loader._is_iterable else _index_sampler(loader)
    sampler_length = None
    if sampler is not None and hasattr(sampler, "__len__"):
        sampler_length = len(sampler)
    return {
        "dataset_length": length,
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last,
        "sampler": None if sampler is None else _describe(sampler),
        "sampler_length": sampler_length,
        "streams": _streams(loader) if loader._is_iterable else None,
    }


def _describe(sampler: Any) -> str:
    if isinstance(sampler, BatchSampler):
        return f"BatchSampler({type(sampler.sampler).__name__})"
    return type(sampler).__name__


def save_state(loader: DataLoader) -> dict[str, Any]:
    """The loader's position (``DataLoader.state_dict``)."""
    if loader._pending_state is not None:
        return copy.deepcopy(loader._pending_state)
    progress = loader._progress
    streams = _streams(loader)
    if progress is None or progress.finished:
        state = {
            "epoch": loader._passes,
            "batches": 0,
            "beyond": [],
            "sampler": None if loader._is_iterable else sampler_state(_index_sampler(loader)),
            "generator": (
                generator_state(loader.generator) if loader.generator is not None else None
            ),
            "streams": [0] * streams if loader._is_iterable else None,
            "next_stream": 0,
        }
    else:
        if progress.unsaveable is not None:
            raise TypeError(progress.unsaveable)
        if progress.positions is not None and any(progress.positions):
            _require_iter_from(loader.dataset)
        state = {
            "epoch": progress.pass_index,
            "batches": progress.consumed,
            "beyond": sorted(progress.beyond),
            "sampler": copy.deepcopy(progress.sampler),
            "generator": copy.deepcopy(progress.generator),
            "streams": list(progress.positions) if progress.positions is not None else None,
            "next_stream": progress.next_stream,
        }
    return {"format": FORMAT, "seed": loader._seed, **state, "check": _check_values(loader)}


def _require_iter_from(dataset: Any) -> None:
    if not callable(getattr(dataset, "iter_from", None)):
        raise TypeError(
            f"{type(dataset).__name__} is an IterableDataset without the resume protocol, so "
            f"the loader cannot save a position inside its stream: give it "
            f"iter_from(position), which yields the stream from sample `position` on (see "
            f"ladle.IterableDataset), or save only between epochs"
        )


_KEYS = ("epoch", "batches", "beyond", "sampler", "generator", "streams", "next_stream", "check")


def load_state(loader: DataLoader, state: Any) -> None:
    """Check ``state`` against the loader and keep it for the next pass
    (``DataLoader.load_state_dict``)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"load_state_dict expects a dict from DataLoader.state_dict() with "
            f"format={FORMAT!r}, but got {found!r}"
        )
    missing = [key for key in (*_KEYS, "seed") if key not in state]
    if missing:
        raise ValueError(f"the saved loader state lacks {missing}; pass a whole state_dict()")
    saved, here = state["check"], _check_values(loader)
    if loader._is_iterable:
        sampler_ok = state["sampler"] is None
    else:
        sampler_ok = isinstance(state["sampler"], dict)
    if not (sampler_ok and isinstance(saved, dict) and isinstance(state["beyond"], list)):
        raise ValueError("the saved loader state is malformed; pass a whole state_dict()")
    for key, fix in _FIXES.items():
        if saved.get(key) != here[key]:
            raise ValueError(
                f"the saved loader state does not fit this DataLoader: it was saved with "
                f"{key}={saved.get(key)!r}, but this loader has {key}={here[key]!r}; {fix}"
            )
    if (state["generator"] is None) != (loader.generator is None):
        has = "with" if state["generator"] is not None else "without"
        raise ValueError(
            f"the saved loader state comes from a DataLoader {has} generator=, and this one "
            f"differs; resume with the same kind of randomness (seed= or generator=)"
        )
    check_seed(state["epoch"], "state['epoch']")
    check_seed(state["batches"], "state['batches']")
    for number in state["beyond"]:
        check_seed(number, "state['beyond'][i]")
    if loader._is_iterable:
        positions = state["streams"]
        if not isinstance(positions, list) or len(positions) != here["streams"]:
            raise ValueError(
                f"the saved loader state has stream positions {positions!r}, but this loader "
                f"reads {here['streams']} streams; pass the state_dict() of the same loader"
            )
        for position in positions:
            check_seed(position, "state['streams'][i]")
        if not 0 <= check_seed(state["next_stream"], "state['next_stream']") < here["streams"]:
            raise ValueError(
                f"state['next_stream']={state['next_stream']} names no stream of "
                f"{here['streams']}; pass the state_dict() of the same loader"
            )
        if any(positions):
            _require_iter_from(loader.dataset)
    seed = _saved_seed(loader, state["seed"])
    if not loader._is_iterable:
        # The sampler checks its own part (a seed of its own, a generator) now rather than at
        # the next iter(); the next pass loads the state again, with the consumed batches.
        _restore_sampler(loader, state["sampler"], 0)
    if seed is not None:
        loader._seed = seed
    loader._pending_state = copy.deepcopy({key: state[key] for key in ("format", "seed", *_KEYS)})
    loader._progress = None


def _saved_seed(loader: DataLoader, seed: Any) -> int | None:
    """The seed the loader adopts from a state, after checking it may; None when both loaders
    draw from a generator (that both do, or neither, is checked before)."""
    if seed is None:
        return None
    seed = check_seed(seed, "state['seed']")
    if loader.seed is not None and seed != loader.seed:
        raise ValueError(
            f"the saved loader state was made with seed={seed}, but this DataLoader has "
            f"seed={loader.seed}, so it would load another stream; build it with seed={seed} "
            f"(or seed=None, which adopts the saved seed)"
        )
    return seed  # type: ignore[no-any-return]


_FIXES = {
    "dataset_length": "resume over the same dataset",
    "batch_size": "resume with the batch_size the state was saved with",
    "drop_last": "resume with the drop_last the state was saved with",
    "sampler": "resume with the same sampler, batch_sampler and shuffle arguments",
    "sampler_length": "resume with the same sampler arguments",
    "streams": (
        "an IterableDataset's stream is split across the workers, so resume it with the same "
        "number of workers (0 and 1 both mean one stream)"
    ),
}
