"""Time series: WindowedDataset against a naive reference, ChunkShuffleSampler's invariants,
resume through the DataLoader, the argument errors, and the docs page's examples."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_support import resumed_in_a_child

import ladle
from ladle import ChunkShuffleSampler, WindowedDataset
from ladle.testing import assert_batches_equal, assert_resumes

seeds = st.integers(0, 2**63 - 1)


def make_series(lengths: list[int], features: int = 2) -> list[np.ndarray]:
    """Series ``s``'s step ``t`` holds ``1000 * s + t`` (in every feature, times 1, 2, ...):
    a window that crossed into the next series would show it."""
    return [
        (1000 * s + np.arange(n, dtype=np.int64))[:, None] * np.arange(1, features + 1)
        for s, n in enumerate(lengths)
    ]


def reference(series: list[np.ndarray], window: int, stride: int, horizon: int) -> list[Any]:
    """Every (series, start, x, y) by the obvious loops."""
    out = []
    for s, values in enumerate(series):
        for t in range(0, len(values) - window - horizon + 1, stride):
            out.append((s, t, values[t : t + window], values[t + window : t + window + horizon]))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=6),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(0, 3),
)
def test_windows_match_the_naive_reference(
    lengths: list[int], window: int, stride: int, horizon: int
) -> None:
    series = make_series(lengths)
    expected = reference(series, window, stride, horizon)
    if not expected:
        with pytest.raises(ValueError, match="no series has window \\+ horizon"):
            WindowedDataset(series, window, stride, horizon, drop_short=True)
        return
    ds = WindowedDataset(series, window, stride, horizon, drop_short=True)
    # the count formula, per series and in all
    span = window + horizon
    counts = [(n - span) // stride + 1 if n >= span else 0 for n in lengths]
    assert ds.windows_per_series.tolist() == counts
    assert len(ds) == sum(counts) == len(expected)
    for i, (s, t, x, y) in enumerate(expected):
        assert ds.locate(i) == (s, t)
        sample = ds[i]
        if horizon:
            np.testing.assert_array_equal(sample[0], x)
            np.testing.assert_array_equal(sample[1], y)
        else:
            np.testing.assert_array_equal(sample, x)
        # no crossing: every step of the window and its target is of series s
        assert np.all(np.concatenate([x, y])[:, 0] // 1000 == s)
    assert ds.locate(-1) == expected[-1][:2]
    # the vectorised gather equals the per-sample one, in any order, repeats included
    picks = np.random.default_rng(len(ds)).integers(-len(ds), len(ds), size=17)
    batch = ds.__getitems__(picks)
    assert len(batch) == len(picks)
    columns = batch.columns if horizon else (batch.columns,)
    assert columns[0].shape == (len(picks), window, 2)
    for row, i in enumerate(picks.tolist()):
        sample = ds[i] if horizon else (ds[i],)
        for column, part in zip(columns, sample, strict=True):
            np.testing.assert_array_equal(column[row], part)
    which, starts = ds.locate_many(picks)
    assert list(zip(which.tolist(), starts.tolist(), strict=True)) == [
        ds.locate(i) for i in picks.tolist()
    ]


def test_one_array_is_one_series_and_batches_have_the_documented_shapes() -> None:
    values = np.arange(30, dtype=np.float32).reshape(10, 3)
    ds = WindowedDataset(values, window=4, horizon=2, stride=2)
    assert len(ds) == 3 and ds.locate(2) == (0, 4)
    x, y = next(iter(ladle.DataLoader(ds, batch_size=3)))
    assert x.shape == (3, 4, 3) and y.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(y[1], values[6:8])
    only_x = next(iter(ladle.DataLoader(WindowedDataset(values, 5), batch_size=2)))
    assert isinstance(only_x, np.ndarray) and only_x.shape == (2, 5, 3)
    assert list(ds.series_range(0)) == [0, 1, 2]
    assert "3 samples" in repr(ds)


def test_series_that_do_not_stack_and_torch_tensors_go_sample_by_sample() -> None:
    mixed = WindowedDataset([np.arange(5), np.arange(5.0)], 2)
    batch = mixed.__getitems__([0, 5])
    assert isinstance(batch, list) and batch[1].dtype == np.float64
    torch = pytest.importorskip("torch")
    ds = WindowedDataset([torch.arange(6), torch.arange(10, 14)], 3, horizon=1)
    x, y = next(iter(ladle.DataLoader(ds, batch_size=4, shuffle=False)))
    assert isinstance(x, torch.Tensor) and x.tolist()[3] == [10, 11, 12] and y.tolist()[3] == [13]


def test_short_series_are_an_error_unless_dropped() -> None:
    series = [np.arange(10), np.arange(3), np.arange(2)]
    with pytest.raises(ValueError) as error:
        WindowedDataset(series, 3, horizon=1)
    message = str(error.value)
    assert "series[1] has 3 steps (and 1 more)" in message
    assert "window + horizon = 3 + 1 = 4" in message and "drop_short=True" in message
    ds = WindowedDataset(series, 3, horizon=1, drop_short=True)
    assert len(ds) == 7 and ds.windows_per_series.tolist() == [7, 0, 0]
    with pytest.raises(ValueError, match="the longest has 3"):
        WindowedDataset([np.arange(3)], 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"window": 0}, ValueError, r"window should be an int >= 1, but got window=0"),
        ({"window": 2.0}, TypeError, r"window should be an int, but got window=2.0"),
        ({"stride": 0}, ValueError, r"stride should be an int >= 1, but got stride=0"),
        ({"horizon": -1}, ValueError, r"horizon should be an int >= 0, but got horizon=-1"),
        ({"drop_short": 1}, TypeError, r"drop_short should be True or False"),
        ({"series": 5}, TypeError, r"series should be an array .* convert it with np.asarray"),
        ({"series": []}, ValueError, r"non-empty list of arrays"),
        ({"series": [1.0, 2.0]}, TypeError, r"series\[0\] should be an array .* np.asarray"),
        ({"series": [np.arange(4), np.float64(1)]}, TypeError, r"series\[1\] .* 0-d array"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_fix(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    arguments: dict[str, Any] = {"series": np.arange(10), "window": 2, **kwargs}
    with pytest.raises(error, match=pattern):
        WindowedDataset(**arguments)


def test_indices_out_of_range_name_the_size() -> None:
    ds = WindowedDataset(np.arange(10), 4)
    with pytest.raises(IndexError, match="index 7 is out of range for WindowedDataset of size 7"):
        ds[7]
    with pytest.raises(IndexError, match="index -8 is out of range"):
        ds.__getitems__([0, -8])
    with pytest.raises(TypeError, match="index should be an int"):
        ds[1.0]  # type: ignore[index]


def runs_of(order: list[int]) -> list[list[int]]:
    """``order`` cut where an index is not its predecessor plus one."""
    runs: list[list[int]] = []
    for i in order:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), seeds)
def test_chunks_keep_their_order_and_are_permuted(n: int, chunk: int, seed: int) -> None:
    sampler = ChunkShuffleSampler(n, chunk, seed=seed)
    starts, lengths = sampler.chunks()
    expected = [
        list(range(a, a + m)) for a, m in zip(starts.tolist(), lengths.tolist(), strict=True)
    ]
    assert expected == [list(range(a, min(a + chunk, n))) for a in range(0, n, chunk)]
    first, second = list(sampler), list(sampler)
    for order in (first, second):
        assert sorted(order) == list(range(n))  # every index exactly once per epoch
        # the order is the chunks, each whole and in order, one after another
        position, seen = 0, []
        while position < n:
            k = int(np.searchsorted(starts, order[position], side="right")) - 1
            assert order[position : position + lengths[k]] == expected[k]
            seen.append(k)
            position += int(lengths[k])
        assert sorted(seen) == list(range(len(starts)))
    if len(starts) >= 6:
        assert first != second, "each epoch shuffles the chunks anew"
    again = ChunkShuffleSampler(n, chunk, seed=seed)
    again.set_epoch(1)
    assert list(again) == second  # epoch e's order is a pure function of (seed, e)


def test_chunks_are_cut_at_series_boundaries() -> None:
    ds = WindowedDataset(make_series([12, 2, 9, 30]), 3, drop_short=True)  # 10, 0, 7, 28
    sampler = ChunkShuffleSampler(ds, 4, seed=5)
    assert sampler.align_to_series
    starts, lengths = sampler.chunks()
    assert lengths.tolist() == [4, 4, 2, 4, 3, 4, 4, 4, 4, 4, 4, 4]
    order = list(sampler)
    assert sorted(order) == list(range(len(ds)))
    for a, m in zip(starts.tolist(), lengths.tolist(), strict=True):
        assert len({ds.locate(i)[0] for i in range(a, a + m)}) == 1
    position = 0
    while position < len(order):  # each chunk in time order, from one series
        k = int(np.searchsorted(starts, order[position], side="right")) - 1
        run = order[position : position + lengths[k]]
        assert run == list(range(starts[k], starts[k] + lengths[k]))
        position += int(lengths[k])
    plain = ChunkShuffleSampler(ds, 4, seed=5, align_to_series=False)
    assert plain.chunks()[1].tolist() == [4] * 11 + [1]


def test_seed_decides_the_order() -> None:
    a = ChunkShuffleSampler(100, 5, seed=1)
    assert list(a) == list(ChunkShuffleSampler(100, 5, seed=1))
    assert list(ChunkShuffleSampler(100, 5, seed=1)) != list(ChunkShuffleSampler(100, 5, seed=2))
    assert list(ChunkShuffleSampler(100, 5)) != list(ChunkShuffleSampler(100, 5))  # fresh entropy
    g = np.random.default_rng(0)
    assert sorted(ChunkShuffleSampler(100, 5, generator=g)) == list(range(100))


def test_sampler_errors() -> None:
    with pytest.raises(ValueError, match="chunk_size should be a positive integer value"):
        ChunkShuffleSampler(10, 0)
    with pytest.raises(ValueError, match=r"needs at least one index.*length 0"):
        ChunkShuffleSampler([], 2)
    with pytest.raises(TypeError, match="data_source should be a dataset with a length or an int"):
        ChunkShuffleSampler(2.5, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"align_to_series=True needs .*cumulative_counts"):
        ChunkShuffleSampler(range(10), 2, align_to_series=True)
    with pytest.raises(ValueError, match="seed or generator, not both"):
        ChunkShuffleSampler(10, 2, seed=1, generator=np.random.default_rng())
    state = ChunkShuffleSampler(10, 2, seed=1).state_dict()
    assert state == {"epoch": 0, "offset": 0, "seed": 1, "chunk_size": 2, "align_to_series": False}
    with pytest.raises(ValueError, match="saved from a ChunkShuffleSampler with chunk_size=2"):
        ChunkShuffleSampler(10, 3, seed=1).load_state_dict(state)


def windows_loader(**kwargs: Any) -> ladle.DataLoader:
    ds = WindowedDataset(make_series([40, 7, 25]), 4, stride=1, horizon=2)  # 35, 2, 20
    return ladle.DataLoader(
        ds, batch_size=5, sampler=ChunkShuffleSampler(ds, 6, seed=3), num_workers=0, **kwargs
    )


def test_loader_resumes_mid_epoch_exactly() -> None:
    whole = windows_loader()
    uninterrupted = [list(whole), list(whole)]  # two epochs
    loader = windows_loader()
    iterator = iter(loader)
    head = [next(iterator) for _ in range(4)]
    state = json.loads(json.dumps(loader.state_dict()))
    del iterator
    resumed = windows_loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(head) + len(rest) == len(uninterrupted[0]) == 12
    for got, wanted in zip(head + rest, uninterrupted[0], strict=True):
        assert_batches_equal(got, wanted)
    for got, wanted in zip(list(resumed), uninterrupted[1], strict=True):
        assert_batches_equal(got, wanted)  # and the next epoch as if never interrupted


def test_loader_resumes_at_every_cut() -> None:
    def make() -> ladle.DataLoader:
        ds = WindowedDataset([np.arange(20.0), np.arange(9.0)], 3, stride=2, horizon=1)
        return ladle.DataLoader(ds, batch_size=3, sampler=ChunkShuffleSampler(ds, 2, seed=3))

    assert_resumes(make, epochs=2)


def test_loader_with_two_workers_resumes_exactly() -> None:
    setup = """
import numpy as np
import ladle
def make():
    ds = ladle.WindowedDataset([np.arange(60.0), np.arange(1000.0, 1030.0)], 5, horizon=2)
    sampler = ladle.ChunkShuffleSampler(ds, 7, seed=3)
    return ladle.DataLoader(ds, batch_size=6, sampler=sampler, num_workers=2, timeout=30)
"""
    result = resumed_in_a_child(setup, cut=3)
    assert len(result["reference"]) == 13
    assert result["resumed"] == result["reference"]
