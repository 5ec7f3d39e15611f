"""Time series as samples: sliding windows over one or many series, and a shuffle that keeps
stretches of consecutive windows together.

``WindowedDataset(series, window, stride, horizon)`` makes sample ``i`` the ``i``-th window of
``window`` consecutive steps (and, with ``horizon > 0``, the ``horizon`` steps that follow it as
the target). Windows never cross from one series into the next. ``ChunkShuffleSampler`` shuffles
chunks of consecutive indices per epoch and keeps each chunk in order (for stateful models, or
for reading long series with locality), as a seeded sampler that resumes exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence, Sized
from typing import Any

import numpy as np

from ladle.dataset import Dataset
from ladle.gathered import GatheredBatch
from ladle.indexing import (
    as_index_array,
    batched,
    check_index,
    first_out_of_range,
    getitems_per_sample,
    out_of_range,
)
from ladle.random_sampler import _SeededSampler
from ladle.sampler import check_positive_int
from ladle.validation import check_bool, check_int

__all__ = ["ChunkShuffleSampler", "WindowedDataset"]


def _check_series(series: Any) -> list[Any]:
    """``series`` as a list of arrays with a time axis: one array, or a list/tuple of them."""
    if hasattr(series, "shape"):
        listed = [series]
    elif isinstance(series, list | tuple):
        listed = list(series)
        if not listed:
            raise ValueError(
                "series should be an array or a non-empty list of arrays, but got an empty "
                f"{type(series).__name__}; pass at least one series"
            )
    else:
        raise TypeError(
            f"series should be an array (time on the first axis) or a list of arrays, but got "
            f"series={series!r:.60} ({type(series).__name__}); convert it with np.asarray"
        )
    for where, item in enumerate(listed):
        if not hasattr(item, "shape") or len(item.shape) == 0:
            what = "a 0-d array" if hasattr(item, "shape") else type(item).__name__
            raise TypeError(
                f"series[{where}] should be an array with time on its first axis, but got "
                f"{what} {item!r:.40}; convert each series with np.asarray (for a single "
                f"series given as a list of numbers, pass np.asarray(series))"
            )
    return listed


class WindowedDataset(Dataset[Any]):
    """Sliding windows over one array or a list of arrays (time on the first axis).

    Sample ``i`` is ``x``, the ``window`` steps ``s[t : t + window]`` of some series ``s``, or,
    when ``horizon > 0``, the tuple ``(x, y)`` with ``y = s[t + window : t + window + horizon]``
    (the steps to predict). Shapes: ``x`` is ``(window, *features)``, ``y`` is
    ``(horizon, *features)``; batched, ``(batch, window, *features)``. Windows start at steps
    ``0, stride, 2 * stride, ...`` of each series, and a window with its horizon never crosses
    the end of its series, so series ``s`` of length ``T`` gives
    ``(T - window - horizon) // stride + 1`` samples, numbered series after series.

    A series shorter than ``window + horizon`` gives no window: that is a ValueError naming it,
    unless ``drop_short=True``, which leaves it out (``locate`` still reports the original
    series numbers). Series may be NumPy arrays (memory-mapped ones too) or anything sliced
    like them (torch tensors); a batch of NumPy series is gathered with one fancy index per
    series in the batch, not one slice per sample.
    """

    accepts_index_array = True

    def __init__(
        self,
        series: Any,
        window: int,
        stride: int = 1,
        horizon: int = 0,
        *,
        drop_short: bool = False,
    ) -> None:
        self.window = check_int(window, "window", minimum=1, fix="pass the input length, e.g. 24")
        self.stride = check_int(
            stride, "stride", minimum=1, fix="pass 1 for every window, or the step between starts"
        )
        self.horizon = check_int(
            horizon, "horizon", minimum=0, fix="pass 0 for inputs only, or the steps to predict"
        )
        self.drop_short = check_bool(drop_short, "drop_short")
        self.series = _check_series(series)
        span = self.window + self.horizon
        lengths = np.array([int(s.shape[0]) for s in self.series], dtype=np.int64)
        counts = np.where(lengths >= span, (lengths - span) // self.stride + 1, 0)
        if not counts.any():
            raise ValueError(
                f"no series has window + horizon = {span} steps (the longest has "
                f"{int(lengths.max())}), so the dataset would be empty; pass a smaller window "
                f"or horizon"
            )
        short = np.flatnonzero(lengths < span)
        if short.size and not self.drop_short:
            first = int(short[0])
            more = f" (and {short.size - 1} more)" if short.size > 1 else ""
            raise ValueError(
                f"series[{first}] has {lengths[first]} steps{more}, fewer than window + horizon "
                f"= {self.window} + {self.horizon} = {span}, so it gives no window; pass "
                f"drop_short=True to leave such series out, or a smaller window or horizon"
            )
        self.lengths = lengths
        #: ``cumulative_counts[s] : cumulative_counts[s + 1]`` are the samples of series ``s``.
        self.cumulative_counts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._size = int(self.cumulative_counts[-1])
        first_series = self.series[0]
        self._stackable = all(
            isinstance(s, np.ndarray)
            and s.dtype == first_series.dtype
            and s.shape[1:] == first_series.shape[1:]
            for s in self.series
        )

    def __len__(self) -> int:
        return self._size

    @property
    def windows_per_series(self) -> np.ndarray:
        """The number of samples each series gives (0 for a series left out as too short)."""
        return np.diff(self.cumulative_counts)

    def series_range(self, series: int) -> range:
        """The sample indices that come from series number ``series``."""
        s = check_index(series, len(self.series), "WindowedDataset series")
        return range(int(self.cumulative_counts[s]), int(self.cumulative_counts[s + 1]))

    def locate(self, index: int) -> tuple[int, int]:
        """``(series, start)``: sample ``index`` is ``self.series[series][start : start +
        window]`` (and the horizon after it)."""
        i = check_index(index, self._size, "WindowedDataset")
        which = int(np.searchsorted(self.cumulative_counts, i, side="right")) - 1
        return which, (i - int(self.cumulative_counts[which])) * self.stride

    def locate_many(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` for many indices at once: int64 arrays ``(series, start)``."""
        idx = as_index_array(indices, "WindowedDataset")
        if idx.size and (idx.min() < -self._size or idx.max() >= self._size):
            raise out_of_range(first_out_of_range(idx, self._size), self._size, "WindowedDataset")
        idx = np.where(idx < 0, idx + self._size, idx)
        which = np.searchsorted(self.cumulative_counts, idx, side="right") - 1
        starts = (idx - self.cumulative_counts[which]) * self.stride
        return which.astype(np.int64, copy=False), starts.astype(np.int64, copy=False)

    def __getitem__(self, index: int) -> Any:
        which, start = self.locate(index)
        series = self.series[which]
        x = series[start : start + self.window]
        if not self.horizon:
            return x
        end = start + self.window
        return x, series[end : end + self.horizon]

    def _gather(self, which: np.ndarray, starts: np.ndarray, offset: int, steps: int) -> Any:
        first = self.series[0]
        picks = starts[:, None] + (offset + np.arange(steps, dtype=np.int64))
        if len(self.series) == 1:
            return first[picks]
        out = np.empty((len(starts), steps, *first.shape[1:]), dtype=first.dtype)
        present = np.unique(which)
        if present.size == 1:
            out[...] = self.series[int(present[0])][picks]
            return out
        for s in present.tolist():
            rows = which == s
            out[rows] = self.series[s][picks[rows]]
        return out

    @batched
    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> Any:
        if not self._stackable:  # torch tensors, or series that would not stack anyway
            return getitems_per_sample(self, indices)
        which, starts = self.locate_many(indices)
        x = self._gather(which, starts, 0, self.window)
        if not self.horizon:
            return GatheredBatch(x, len(starts))
        y = self._gather(which, starts, self.window, self.horizon)
        return GatheredBatch((x, y), len(starts))

    def __repr__(self) -> str:
        return (
            f"WindowedDataset({len(self.series)} series, window={self.window}, "
            f"stride={self.stride}, horizon={self.horizon}, {self._size} samples)"
        )


class ChunkShuffleSampler(_SeededSampler):
    """Indices in chunks of ``chunk_size`` consecutive ones, the chunks shuffled each epoch.

    Within a chunk the indices keep their order (a WindowedDataset's windows in time order);
    the chunks come in a new random order each epoch, a pure function of (seed, epoch), as for
    RandomSampler. ``data_source`` is a dataset (its length) or an int, the length itself.

    ``align_to_series``: cut chunks at series boundaries, so no chunk holds windows of two
    series (the last chunk of a series may then be shorter than ``chunk_size``). It needs a
    dataset with ``cumulative_counts`` (a WindowedDataset) and is the default for one; without
    it, chunks are cut every ``chunk_size`` indices from 0, and only the last may be shorter.
    """

    def __init__(
        self,
        data_source: Sized | int,
        chunk_size: int,
        *,
        seed: int | None = None,
        generator: Any = None,
        align_to_series: bool | None = None,
    ) -> None:
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        bounds = getattr(data_source, "cumulative_counts", None)
        if align_to_series is None:
            align_to_series = bounds is not None
        self.align_to_series = check_bool(align_to_series, "align_to_series")
        if isinstance(data_source, bool) or not isinstance(data_source, int | np.integer | Sized):
            raise TypeError(
                f"data_source should be a dataset with a length or an int (the length), but got "
                f"data_source={data_source!r:.60} ({type(data_source).__name__})"
            )
        self.data_source = data_source
        size = int(data_source) if isinstance(data_source, int | np.integer) else len(data_source)
        if size <= 0:
            raise ValueError(
                f"ChunkShuffleSampler needs at least one index, but data_source has length "
                f"{size}; pass a non-empty dataset"
            )
        if self.align_to_series:
            if bounds is None:
                raise ValueError(
                    f"align_to_series=True needs a dataset that says where its series start "
                    f"(cumulative_counts, as WindowedDataset has), but data_source is "
                    f"{type(data_source).__name__}; pass align_to_series=False"
                )
            edges = np.asarray(bounds, dtype=np.int64)
        else:
            edges = np.array([0, size], dtype=np.int64)
        if int(edges[-1]) != size:
            raise ValueError(
                f"data_source has {size} samples but its cumulative_counts end at "
                f"{int(edges[-1])}; rebuild the sampler after changing the dataset"
            )
        starts = [np.arange(a, b, self.chunk_size) for a, b in itertools.pairwise(edges)]
        self._starts = np.concatenate(starts).astype(np.int64)
        # a chunk ends where the next begins: at a series boundary too, as the next series'
        # first chunk starts there (a series without windows has no chunk)
        self._lengths = np.diff(np.append(self._starts, size)).astype(np.int64)
        self._size = size
        super().__init__(generator, seed)

    def __len__(self) -> int:
        return self._size

    @property
    def num_chunks(self) -> int:
        return len(self._starts)

    def chunks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)`` of the chunks, in index order (int64 arrays)."""
        return self._starts.copy(), self._lengths.copy()

    def _compute_order(self, epoch: int) -> np.ndarray:
        perm = self._rng(epoch).permutation(len(self._starts))
        lengths = self._lengths[perm]
        before = np.cumsum(lengths) - lengths  # where each chunk lands in the epoch
        shift = np.repeat(self._starts[perm] - before, lengths)
        return (shift + np.arange(self._size, dtype=np.int64)).astype(np.int64, copy=False)

    def state_at(self, epoch: int, offset: int) -> dict[str, Any]:
        """The position and seed, and the chunking, which the order depends on too."""
        state = super().state_at(epoch, offset)
        state["chunk_size"] = self.chunk_size
        state["align_to_series"] = self.align_to_series
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("chunk_size", "align_to_series"):
            saved, here = state.get(key, getattr(self, key)), getattr(self, key)
            if saved != here:
                raise ValueError(
                    f"the state was saved from a ChunkShuffleSampler with {key}={saved!r}, but "
                    f"this one has {key}={here!r}, so the epoch would be cut into other chunks "
                    f"and samples lost or repeated; pass {key}={saved!r}"
                )
        super().load_state_dict(state)
