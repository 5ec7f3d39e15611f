"""Differential tests: ladle against torch.utils.data on the same inputs.

Every test builds the same pipeline twice, once with ladle and once with torch, and compares what
comes out. Deliberate differences (design.md §1) are accounted for, not flagged:

- ladle keeps sample types (NumPy in, NumPy out): :func:`assert_same` accepts a NumPy array where
  torch gives a tensor, as long as dtype, shape and values agree; containers must match exactly.
- Shuffled orders differ (different RNGs): only sequential orders are compared element-wise.
- ladle rejects ``timeout > 0`` with ``num_workers=0`` at construction (ValueError), torch at
  ``iter()`` (AssertionError).

A failing test here documents a disagreement with torch; the test names say which.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch  # the test gate installs torch 2.13: a missing torch must fail, not skip
import torch.utils.data as tud
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_ns_support import FrozenRecord, Labelled, Point, Record, Row

import ladle
from ladle.interop import to_torch

FAST = settings(max_examples=40, deadline=None)
SIZES = st.integers(0, 300)
BATCH_SIZES = st.integers(1, 64)
CHECKED_TYPES = (ValueError, TypeError, IndexError, RuntimeError)


# --------------------------------------------------------------------------------------------
# comparison helpers


def assert_same(got: Any, want: Any, *, tensors: bool = False, path: str = "batch") -> None:
    """``got`` (ladle) has the structure, leaf dtypes and values of ``want`` (torch).

    Where torch has a tensor, ladle may have a NumPy array or scalar (it keeps sample types)
    unless ``tensors`` is set, which demands a torch tensor (the samples were tensors).
    """
    if isinstance(want, torch.Tensor):
        if isinstance(got, np.ndarray | np.generic) and not tensors:
            assert got.dtype != object, f"{path}: object array {got!r}"
            got = torch.from_numpy(np.array(got))
        assert isinstance(got, torch.Tensor), (
            f"{path}: ladle gives {type(got).__name__}, torch a tensor"
            + ("" if tensors else " (a NumPy array would do)")
        )
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != torch's {want.dtype}"
        assert tuple(got.shape) == tuple(want.shape), f"{path}: shape {got.shape} != {want.shape}"
        assert torch.equal(got, want), f"{path}: values differ:\n{got}\n{want}"
        return
    assert type(got) is type(want), (
        f"{path}: ladle gives {type(got).__name__}, torch gives {type(want).__name__}"
    )
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        assert np.array_equal(got, want), f"{path}: values differ"
    elif isinstance(want, str | bytes):
        assert got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, Mapping):
        assert list(got.keys()) == list(want.keys()), f"{path}: keys differ"
        for key in want:
            assert_same(got[key], want[key], tensors=tensors, path=f"{path}[{key!r}]")
    elif isinstance(want, Sequence):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, tensors=tensors, path=f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def assert_same_batches(got: Sequence[Any], want: Sequence[Any], *, tensors: bool = False) -> None:
    assert len(got) == len(want), f"ladle yields {len(got)} batches, torch {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_same(g, w, tensors=tensors, path=f"batches[{i}]")


def first_error(make: Callable[[], Any], *, quiet: tuple[type[Warning], ...] = ()) -> Any:
    """The exception raised by ``make()`` or by the first ``next(iter(...))``, else None."""
    with warnings.catch_warnings():
        for category in quiet:
            warnings.simplefilter("ignore", category)
        try:
            obj = make()
            next(iter(obj))
        except StopIteration:
            return None
        except Exception as error:
            return error
    return None


def assert_raises_like_torch(
    make_torch: Callable[[], Any],
    make_ladle: Callable[[], Any],
    words: tuple[str, ...],
    what: str,
) -> None:
    """torch raises for ``what`` => ladle raises the matching type, naming every word."""
    torch_error = first_error(make_torch, quiet=(Warning,))
    assert torch_error is not None, f"table error: torch accepts {what}"
    ladle_error = first_error(make_ladle, quiet=(RuntimeWarning,))
    want = expected_type(torch_error)
    assert ladle_error is not None, (
        f"ladle accepts {what}, torch raises {type(torch_error).__name__}: {torch_error}"
    )
    assert isinstance(ladle_error, want), (
        f"torch raises {type(torch_error).__name__} ({torch_error}), ladle raises "
        f"{type(ladle_error).__name__} ({ladle_error}); expected a {want.__name__}"
    )
    message = str(ladle_error)
    for word in words:
        assert word in message, f"ladle's message does not name {word!r}: {message}"


def expected_type(torch_error: BaseException) -> type[BaseException]:
    """What ladle must raise where torch raised ``torch_error``.

    The builtin type torch raises when it is one of ValueError/TypeError/IndexError/RuntimeError;
    torch's AssertionErrors (argument checks written as asserts) become ValueError in ladle.
    """
    for kind in CHECKED_TYPES:
        if isinstance(torch_error, kind):
            return kind
    return ValueError


# --------------------------------------------------------------------------------------------
# datasets usable by both libraries


class Pairs:
    """Plain map-style dataset (no base class): ``(array, int)`` samples."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full(3, i, dtype=np.float32), i


class Dicts:
    """Map-style dataset of dict samples with nested tuples, strings and NumPy scalars."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return {
            "x": np.arange(i, i + 4, dtype=np.int64).reshape(2, 2),
            "y": float(i) / 2,
            "name": f"s{i}",
            "pair": (i, np.int16(i)),
            "flag": i % 2 == 0,
        }


class _Stream:
    def __init__(self, n: int, arrays: bool) -> None:
        self.n = n
        self.arrays = arrays

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.n):
            yield np.arange(i, i + 3, dtype=np.int32) if self.arrays else i


class LadleStream(_Stream, ladle.IterableDataset):  # type: ignore[misc]
    pass


class TorchStream(_Stream, tud.IterableDataset):  # type: ignore[misc]
    pass


def tensor_data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) * 7
    mask = np.arange(n) % 3 == 0
    return x, y, mask


def tensor_datasets(n: int, ladle_torch: bool = False) -> tuple[Any, Any]:
    """(ladle TensorDataset of NumPy arrays or tensors, torch TensorDataset of the same data)."""
    arrays = tensor_data(n)
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    ladle_inputs = [t.clone() for t in tensors] if ladle_torch else arrays
    return ladle.TensorDataset(*ladle_inputs), tud.TensorDataset(*tensors)


def both_loaders(ladle_ds: Any, torch_ds: Any, **kwargs: Any) -> tuple[Any, Any]:
    return ladle.DataLoader(ladle_ds, **kwargs), tud.DataLoader(torch_ds, **kwargs)


def check_loaders(ladle_ds: Any, torch_ds: Any, *, tensors: bool = False, **kwargs: Any) -> None:
    mine, theirs = both_loaders(ladle_ds, torch_ds, **kwargs)
    assert len(mine) == len(theirs)
    got, want = list(mine), list(theirs)
    assert len(got) == len(mine)
    assert_same_batches(got, want, tensors=tensors)
    assert_same_batches(list(mine), want, tensors=tensors)  # a second epoch is the same


# --------------------------------------------------------------------------------------------
# 1. DataLoader: sequential batches equal torch's, batch by batch


@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_tensor_dataset_numpy(n: int, b: int, drop_last: bool) -> None:
    ladle_ds, torch_ds = tensor_datasets(n)
    check_loaders(ladle_ds, torch_ds, batch_size=b, drop_last=drop_last)
    # converting ladle's batches with to_torch gives exactly torch's batches
    mine, theirs = both_loaders(ladle_ds, torch_ds, batch_size=b, drop_last=drop_last)
    for got, want in zip(mine, theirs, strict=True):
        assert_same(to_torch(got), want, tensors=True)


@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_tensor_dataset_torch_in_torch_out(n: int, b: int, drop_last: bool) -> None:
    ladle_ds, torch_ds = tensor_datasets(n, ladle_torch=True)
    check_loaders(ladle_ds, torch_ds, tensors=True, batch_size=b, drop_last=drop_last)


@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_plain_map_dataset_tuples(n: int, b: int, drop_last: bool) -> None:
    ds = Pairs(n)
    check_loaders(ds, ds, batch_size=b, drop_last=drop_last)


@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_dict_samples(n: int, b: int, drop_last: bool) -> None:
    ds = Dicts(n)
    check_loaders(ds, ds, batch_size=b, drop_last=drop_last)


@pytest.mark.parametrize("arrays", [False, True], ids=["ints", "arrays"])
@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_iterable_dataset(arrays: bool, n: int, b: int, drop_last: bool) -> None:
    check_loaders(LadleStream(n, arrays), TorchStream(n, arrays), batch_size=b, drop_last=drop_last)


@pytest.mark.parametrize("arrays", [False, True], ids=["ints", "arrays"])
@FAST
@given(st.integers(0, 100))
def test_loader_iterable_dataset_without_batching(arrays: bool, n: int) -> None:
    check_loaders(LadleStream(n, arrays), TorchStream(n, arrays), batch_size=None)


@pytest.mark.parametrize("kind", ["tensor", "pairs", "dicts"])
@FAST
@given(st.integers(0, 100))
def test_loader_batch_size_none_uses_default_convert(kind: str, n: int) -> None:
    if kind == "tensor":
        ladle_ds, torch_ds = tensor_datasets(n)
    else:
        ladle_ds = torch_ds = Pairs(n) if kind == "pairs" else Dicts(n)
    check_loaders(ladle_ds, torch_ds, batch_size=None)


@st.composite
def sampler_cases(draw: st.DrawFn) -> tuple[int, list[int], int, bool]:
    n = draw(st.integers(1, 200))
    indices = draw(st.lists(st.integers(0, n - 1), max_size=300))
    return n, indices, draw(BATCH_SIZES), draw(st.booleans())


@pytest.mark.parametrize("kind", ["tensor", "pairs"])
@FAST
@given(sampler_cases())
def test_loader_custom_sampler(kind: str, case: tuple[int, list[int], int, bool]) -> None:
    n, indices, b, drop_last = case
    ladle_ds, torch_ds = tensor_datasets(n) if kind == "tensor" else (Pairs(n), Pairs(n))
    check_loaders(ladle_ds, torch_ds, sampler=indices, batch_size=b, drop_last=drop_last)
    check_loaders(ladle_ds, torch_ds, sampler=indices, batch_size=None)


@st.composite
def batch_sampler_cases(draw: st.DrawFn) -> tuple[int, list[list[int]]]:
    n = draw(st.integers(1, 200))
    batch = st.lists(st.integers(0, n - 1), min_size=1, max_size=40)
    return n, draw(st.lists(batch, max_size=20))


@pytest.mark.parametrize("kind", ["tensor", "pairs", "dicts"])
@FAST
@given(batch_sampler_cases())
def test_loader_custom_batch_sampler(kind: str, case: tuple[int, list[list[int]]]) -> None:
    n, batches = case
    if kind == "tensor":
        ladle_ds, torch_ds = tensor_datasets(n)
    else:
        ladle_ds = torch_ds = Pairs(n) if kind == "pairs" else Dicts(n)
    check_loaders(ladle_ds, torch_ds, batch_sampler=batches)


@FAST
@given(SIZES, BATCH_SIZES, st.booleans())
def test_loader_identity_collate_plain_dataset(n: int, b: int, drop_last: bool) -> None:
    ds = Pairs(n)
    check_loaders(ds, ds, batch_size=b, drop_last=drop_last, collate_fn=lambda x: x)


@FAST
@given(st.integers(1, 100), BATCH_SIZES)
def test_loader_identity_collate_tensor_dataset_gives_lists(n: int, b: int) -> None:
    """torch hands collate_fn a list of samples; ladle must too, also on the __getitems__ path."""
    ladle_ds, torch_ds = tensor_datasets(n, ladle_torch=True)
    check_loaders(ladle_ds, torch_ds, tensors=True, batch_size=b, collate_fn=lambda x: x)


@FAST
@given(st.integers(1, 300), BATCH_SIZES, st.booleans())
def test_loader_shuffle_is_a_permutation_per_epoch(n: int, b: int, drop_last: bool) -> None:
    data = list(range(n))
    mine, theirs = both_loaders(data, data, batch_size=b, shuffle=True, drop_last=drop_last)
    assert len(mine) == len(theirs)
    for _ in range(2):
        got = [batch.tolist() for batch in mine]
        want = [batch.tolist() for batch in theirs]
        assert len(got) == len(want) == len(mine)
        assert [len(batch) for batch in got] == [len(batch) for batch in want]
        flat = [i for batch in got for i in batch]
        assert len(set(flat)) == len(flat), "an index repeats within an epoch"
        if drop_last:
            assert set(flat) <= set(data)
        else:
            assert sorted(flat) == data == sorted(i for batch in want for i in batch)


# --------------------------------------------------------------------------------------------
# 2. invalid DataLoader arguments: whatever torch rejects, ladle rejects with the same type

MAP = "map"
ITER = "iter"

# (dataset kind, kwargs, words ladle's message must contain)
INVALID_LOADER_ARGS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (MAP, {"shuffle": True, "sampler": [0, 1]}, ("sampler", "shuffle")),
    (MAP, {"batch_sampler": [[0]], "batch_size": 2}, ("batch_sampler", "batch_size")),
    (MAP, {"batch_sampler": [[0]], "batch_size": None}, ("batch_sampler", "batch_size")),
    (MAP, {"batch_sampler": [[0]], "shuffle": True}, ("batch_sampler", "shuffle")),
    (MAP, {"batch_sampler": [[0]], "sampler": [0]}, ("batch_sampler", "sampler")),
    (MAP, {"batch_sampler": [[0]], "drop_last": True}, ("batch_sampler", "drop_last")),
    (MAP, {"num_workers": -1}, ("num_workers",)),
    (MAP, {"num_workers": "2"}, ("num_workers",)),
    (MAP, {"num_workers": None}, ("num_workers",)),
    (MAP, {"timeout": -1}, ("timeout",)),
    (MAP, {"timeout": -0.5}, ("timeout",)),
    (MAP, {"timeout": 5}, ("timeout",)),  # torch: AssertionError at iter()
    (MAP, {"timeout": "1"}, ("timeout",)),  # torch: TypeError
    (MAP, {"timeout": None}, ("timeout",)),  # torch: TypeError
    (MAP, {"prefetch_factor": 2}, ("prefetch_factor",)),
    (MAP, {"prefetch_factor": 2, "num_workers": 0}, ("prefetch_factor",)),
    (MAP, {"prefetch_factor": -1, "num_workers": 2}, ("prefetch_factor",)),
    (MAP, {"prefetch_factor": "2", "num_workers": 2}, ("prefetch_factor",)),
    (MAP, {"persistent_workers": True}, ("persistent_workers",)),
    (MAP, {"batch_size": None, "drop_last": True}, ("batch_size", "drop_last")),
    (MAP, {"batch_size": 0}, ("batch_size",)),
    (MAP, {"batch_size": -1}, ("batch_size",)),
    (MAP, {"batch_size": True}, ("batch_size",)),
    (MAP, {"batch_size": 1.5}, ("batch_size",)),
    (MAP, {"batch_size": "2"}, ("batch_size",)),
    (MAP, {"drop_last": 1}, ("drop_last",)),
    (MAP, {"drop_last": "yes"}, ("drop_last",)),
    (MAP, {"drop_last": None}, ("drop_last",)),
    (MAP, {"multiprocessing_context": "fork"}, ("multiprocessing_context",)),
    (MAP, {"multiprocessing_context": "spawn", "num_workers": 0}, ("multiprocessing_context",)),
    (MAP, {"multiprocessing_context": "bogus", "num_workers": 2}, ("multiprocessing_context",)),
    (MAP, {"multiprocessing_context": 42, "num_workers": 2}, ("multiprocessing_context",)),
    (MAP, {"generator": "not a generator"}, ("generator",)),  # torch: TypeError at iter()
    (ITER, {"shuffle": True}, ("shuffle",)),
    (ITER, {"shuffle": "yes"}, ("shuffle",)),
    (ITER, {"sampler": [0]}, ("sampler",)),
    (ITER, {"batch_sampler": [[0]]}, ("batch_sampler",)),
    (ITER, {"shuffle": True, "sampler": [0]}, ("shuffle",)),
    (ITER, {"batch_size": None, "drop_last": True}, ("batch_size", "drop_last")),
    (ITER, {"batch_size": 0}, ("batch_size",)),
    (ITER, {"drop_last": "x"}, ("drop_last",)),
    (ITER, {"num_workers": -1}, ("num_workers",)),
    (ITER, {"persistent_workers": True}, ("persistent_workers",)),
]


def _row_id(row: tuple[str, dict[str, Any], tuple[str, ...]]) -> str:
    kind, kwargs, _ = row
    return kind + ":" + ",".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize("row", INVALID_LOADER_ARGS, ids=[_row_id(r) for r in INVALID_LOADER_ARGS])
def test_invalid_loader_arguments_raise_like_torch(
    row: tuple[str, dict[str, Any], tuple[str, ...]],
) -> None:
    kind, kwargs, words = row

    def make_torch() -> Any:
        dataset = TorchStream(4, False) if kind == ITER else list(range(4))
        return tud.DataLoader(dataset, **kwargs)

    def make_ladle() -> Any:
        dataset = LadleStream(4, False) if kind == ITER else list(range(4))
        return ladle.DataLoader(dataset, **kwargs)

    assert_raises_like_torch(make_torch, make_ladle, words, f"{kind} {kwargs}")


def test_invalid_loader_arguments_fail_at_construction() -> None:
    """ladle validates in the constructor, before any batch is requested."""
    for kind, kwargs, _ in INVALID_LOADER_ARGS:
        dataset = LadleStream(4, False) if kind == ITER else list(range(4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(CHECKED_TYPES):
                ladle.DataLoader(dataset, **kwargs)


def test_valid_edge_arguments_accepted_like_torch() -> None:
    """Combinations torch accepts, ladle accepts too (and behaves the same)."""
    cases: list[tuple[str, dict[str, Any]]] = [
        (MAP, {"shuffle": False, "sampler": [0, 1]}),
        (MAP, {"shuffle": None}),
        (MAP, {"batch_sampler": [[0, 1], [3]], "shuffle": False, "drop_last": False}),
        (MAP, {"batch_size": None, "drop_last": False}),
        (MAP, {"timeout": 0.0}),
        (ITER, {"shuffle": False}),
        (ITER, {"shuffle": None}),
        (ITER, {"shuffle": 0}),
    ]
    for kind, kwargs in cases:
        ladle_ds = LadleStream(4, False) if kind == ITER else list(range(4))
        torch_ds = TorchStream(4, False) if kind == ITER else list(range(4))
        check_loaders(ladle_ds, torch_ds, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"batch_size": 4, "drop_last": True},
        {"batch_size": None},
        {"shuffle": True},
        {"sampler": [3, 1, 2]},
        {"batch_sampler": [[0, 1], [2]]},
    ],
    ids=repr,
)
def test_loader_attributes_match_torch(kwargs: dict[str, Any]) -> None:
    mine, theirs = both_loaders(list(range(6)), list(range(6)), **kwargs)
    assert mine.batch_size == theirs.batch_size
    assert mine.drop_last == theirs.drop_last
    assert type(mine.sampler).__name__ == type(theirs.sampler).__name__
    assert type(mine.batch_sampler).__name__ == type(theirs.batch_sampler).__name__
    assert mine.collate_fn.__name__ == theirs.collate_fn.__name__
    for name in ("batch_size", "drop_last", "sampler", "batch_sampler", "dataset"):
        for loader in (theirs, mine):
            with pytest.raises(ValueError, match=name):
                setattr(loader, name, getattr(loader, name))


def test_loader_numpy_index_sampler_and_len_errors() -> None:
    ladle_ds, torch_ds = tensor_datasets(10)
    order = np.arange(10)[::-1]
    check_loaders(ladle_ds, torch_ds, sampler=order, batch_size=3)
    check_loaders(ladle_ds, torch_ds, sampler=order, batch_size=None)

    class Endless:
        def __iter__(self) -> Iterator[int]:
            return iter(range(3))

    class LadleEndless(Endless, ladle.IterableDataset):  # type: ignore[misc]
        pass

    class TorchEndless(Endless, tud.IterableDataset):  # type: ignore[misc]
        pass

    mine, theirs = both_loaders(LadleEndless(), TorchEndless(), batch_size=2)
    with pytest.raises(TypeError):
        len(theirs)
    with pytest.raises(TypeError):
        len(mine)
    assert_same_batches(list(mine), list(theirs))


# (sampler name, args, kwargs, words ladle's message must contain)
INVALID_SAMPLER_ARGS: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[str, ...]]] = [
    ("RandomSampler", (range(5),), {"replacement": 1}, ("replacement",)),
    ("RandomSampler", (range(5),), {"replacement": "yes"}, ("replacement",)),
    ("RandomSampler", (range(5),), {"num_samples": 0}, ("num_samples",)),
    ("RandomSampler", (range(5),), {"num_samples": -1}, ("num_samples",)),
    ("RandomSampler", (range(5),), {"num_samples": 2.5}, ("num_samples",)),
    ("RandomSampler", (range(0),), {}, ("num_samples",)),
    ("WeightedRandomSampler", ([1.0, 2.0],), {"num_samples": 0}, ("num_samples",)),
    ("WeightedRandomSampler", ([1.0, 2.0],), {"num_samples": -3}, ("num_samples",)),
    ("WeightedRandomSampler", ([1.0, 2.0],), {"num_samples": True}, ("num_samples",)),
    ("WeightedRandomSampler", ([1.0, 2.0], 2), {"replacement": 1}, ("replacement",)),
    ("WeightedRandomSampler", ([[1.0, 2.0], [3.0, 4.0]], 2), {}, ("weights",)),
    ("WeightedRandomSampler", (1.0, 2), {}, ("weights",)),
    ("BatchSampler", (range(5), 0, False), {}, ("batch_size",)),
    ("BatchSampler", (range(5), -1, False), {}, ("batch_size",)),
    ("BatchSampler", (range(5), True, False), {}, ("batch_size",)),
    ("BatchSampler", (range(5), 2.0, False), {}, ("batch_size",)),
    ("BatchSampler", (range(5), 2, 1), {}, ("drop_last",)),
    ("BatchSampler", (range(5), 2, None), {}, ("drop_last",)),
    ("DistributedSampler", (range(5),), {"num_replicas": 2, "rank": 2}, ("rank",)),
    ("DistributedSampler", (range(5),), {"num_replicas": 2, "rank": -1}, ("rank",)),
    ("DistributedSampler", (range(5),), {"num_replicas": 3, "rank": 7}, ("rank",)),
    ("DistributedSampler", (range(5),), {"num_replicas": 0, "rank": 0}, ("num_replicas",)),
    ("DistributedSampler", (range(5),), {"rank": 0}, ("num_replicas",)),  # no process group
]


@pytest.mark.parametrize(
    "row",
    INVALID_SAMPLER_ARGS,
    ids=[f"{r[0]}{r[1]!r}{r[2]!r}" for r in INVALID_SAMPLER_ARGS],
)
def test_invalid_sampler_arguments_raise_like_torch(
    row: tuple[str, tuple[Any, ...], dict[str, Any], tuple[str, ...]],
) -> None:
    name, args, kwargs, words = row
    assert_raises_like_torch(
        lambda: getattr(tud, name)(*args, **kwargs),
        lambda: getattr(ladle, name)(*args, **kwargs),
        words,
        f"{name}{args}{kwargs}",
    )


# --------------------------------------------------------------------------------------------
# 3. default_collate / default_convert on nested structures

# the sample types are shared with the ladle.torch differential suite


class TaggedMapping(FrozenRecord):
    """An immutable mapping that cannot be rebuilt from a dict: collate falls back to dict."""

    def __init__(self, data: dict[str, Any], tag: str) -> None:
        super().__init__(data)
        self.tag = tag


class TaggedRow(Row):
    """A custom sequence that cannot be rebuilt from a list: collate falls back to a list."""

    def __init__(self, items: Sequence[Any], tag: str) -> None:
        super().__init__(items)
        self.tag = tag


class MyList(list):  # type: ignore[type-arg]
    """A list subclass (a MutableSequence): collate clones it and assigns the items."""


def _arr(i: int, dtype: Any = np.float32, shape: tuple[int, ...] = (3,)) -> np.ndarray:
    return (np.arange(math.prod(shape)).reshape(shape) + i).astype(dtype)


COLLATE_CASES: dict[str, Callable[[], list[Any]]] = {
    "float32 arrays": lambda: [_arr(i) for i in range(4)],
    "int64 2-d arrays": lambda: [_arr(i, np.int64, (2, 3)) for i in range(3)],
    "uint8 image arrays": lambda: [_arr(i, np.uint8, (4, 4, 3)) for i in range(2)],
    "bool arrays": lambda: [np.array([True, i % 2 == 0]) for i in range(3)],
    "0-d arrays": lambda: [np.array(i * 1.5) for i in range(3)],
    "float16 arrays": lambda: [_arr(i, np.float16) for i in range(3)],
    "list of arrays": lambda: [[_arr(i), _arr(-i, np.int32)] for i in range(3)],
    "python ints": lambda: [1, -2, 3],
    "python floats": lambda: [1.5, -2.0, 3.25],
    "python bools": lambda: [True, False, True],
    "bool then int": lambda: [True, 2, 0],
    "float32 scalars": lambda: [np.float32(i) / 3 for i in range(3)],
    "int16 scalars": lambda: [np.int16(i) for i in range(3)],
    "bool_ scalars": lambda: [np.bool_(i % 2) for i in range(3)],
    "float64 scalars": lambda: [np.float64(i) for i in range(3)],
    "uint8 scalars": lambda: [np.uint8(i) for i in range(3)],
    "str": lambda: ["a", "bb", "ccc"],
    "bytes": lambda: [b"a", b"bb"],
    "dict of str": lambda: [{"name": f"s{i}"} for i in range(3)],
    "dict of tuples of arrays": lambda: [
        {"a": (_arr(i), np.int64(i)), "b": [i, float(i)]} for i in range(3)
    ],
    "nested dicts": lambda: [{"outer": {"inner": _arr(i), "n": i}, "k": i * 0.5} for i in range(2)],
    "namedtuple": lambda: [Point(_arr(i), i) for i in range(3)],
    "nested namedtuple": lambda: [Labelled(Point(i, float(i)), {"id": i}) for i in range(3)],
    "tuples": lambda: [(_arr(i), i, i * 0.5) for i in range(3)],
    "list of lists": lambda: [[[i, i + 1], [float(i), 1.0]] for i in range(3)],
    "OrderedDict": lambda: [OrderedDict([("b", i), ("a", _arr(i))]) for i in range(3)],
    "custom MutableMapping": lambda: [Record({"x": _arr(i), "y": i}) for i in range(3)],
    "custom Mapping": lambda: [FrozenRecord({"x": _arr(i), "y": i}) for i in range(3)],
    "custom Mapping, not rebuildable": lambda: [
        TaggedMapping({"x": _arr(i), "y": i}, "t") for i in range(3)
    ],
    "custom Sequence": lambda: [Row([_arr(i), i]) for i in range(3)],
    "custom Sequence, not rebuildable": lambda: [TaggedRow([_arr(i), i], "t") for i in range(3)],
    "list subclass": lambda: [MyList([_arr(i), i]) for i in range(3)],
    "dict of namedtuples of dicts": lambda: [
        {"p": Point({"a": i}, [np.int16(i), np.bool_(i % 2)])} for i in range(3)
    ],
}


@pytest.mark.parametrize("case", list(COLLATE_CASES))
def test_default_collate_matches_torch(case: str) -> None:
    batch = COLLATE_CASES[case]()
    want = tud.default_collate(copy.deepcopy(batch))
    got = ladle.default_collate(copy.deepcopy(batch))
    assert_same(got, want)
    if isinstance(got, Mapping) and not isinstance(got, Record):
        assert type(got) is type(want)


def test_collate_custom_mutable_mapping_keeps_its_state() -> None:
    batch = [Record({"x": _arr(i)}, tag="mine") for i in range(2)]
    got = ladle.default_collate(batch)
    assert type(got) is Record and got.tag == "mine"


@pytest.mark.parametrize(
    "case",
    ["tuple with str", "namedtuple with str", "list with str", "tuple with bytes"],
)
def test_default_collate_strings_inside_sequences_match_torch(case: str) -> None:
    """torch transposes sequences with zip, so a str column inside a tuple/list/namedtuple
    sample comes back as a tuple of str (a list only at the top level or under a dict key)."""
    batch: list[Any] = {
        "tuple with str": [(_arr(i), f"s{i}") for i in range(3)],
        "namedtuple with str": [Point(i, f"s{i}") for i in range(3)],
        "list with str": [[i, f"s{i}"] for i in range(3)],
        "tuple with bytes": [(i, b"x" * i) for i in range(3)],
    }[case]
    assert_same(ladle.default_collate(batch), tud.default_collate(batch))


TENSOR_CASES: dict[str, Callable[[], list[Any]]] = {
    "tensors": lambda: [torch.arange(3) + i for i in range(4)],
    "float tensors 2-d": lambda: [torch.ones(2, 3) * i for i in range(3)],
    "0-d tensors": lambda: [torch.tensor(i * 0.5) for i in range(3)],
    "bool tensors": lambda: [torch.tensor([True, i % 2 == 0]) for i in range(2)],
    "dict of tensors": lambda: [{"t": torch.full((2,), i), "u": torch.tensor(i)} for i in range(3)],
    "namedtuple of tensors": lambda: [
        Point(torch.tensor([i]), torch.tensor(float(i))) for i in range(2)
    ],
    "list of tensor lists": lambda: [[torch.ones(2) * i, [torch.tensor(i)]] for i in range(3)],
}


@pytest.mark.parametrize("case", list(TENSOR_CASES))
def test_default_collate_tensors_stay_tensors(case: str) -> None:
    batch = TENSOR_CASES[case]()
    want = tud.default_collate(batch)
    got = ladle.default_collate(batch)
    assert_same(got, want, tensors=True)


def test_default_collate_mixed_tensors_and_arrays() -> None:
    batch = [{"t": torch.arange(2) + i, "a": _arr(i), "n": i} for i in range(3)]
    got, want = ladle.default_collate(batch), tud.default_collate(batch)
    assert isinstance(got["t"], torch.Tensor)
    assert isinstance(got["a"], np.ndarray)
    assert_same(got, want)


def test_default_collate_int_then_float_matches_torch_dtype() -> None:
    """torch.tensor([1, 2.5]) infers float32 (the default dtype) when the first value is an
    int; a batch starting with a float gives float64."""
    for batch in ([1, 2.5, 3], [2.5, 1, 3]):
        assert_same(ladle.default_collate(batch), tud.default_collate(batch))


COLLATE_ERRORS: dict[str, Callable[[], list[Any]]] = {
    "lists of unequal length": lambda: [[1, 2], [1]],
    "tuples of unequal length": lambda: [(1, 2, 3), (1, 2)],
    "unequal lists under a key": lambda: [{"a": [1, 2]}, {"a": [1]}],
    "unequal namedtuple fields": lambda: [Point([1, 2], 0), Point([1], 0)],
    "custom sequences of unequal length": lambda: [Row([1, 2]), Row([1])],
    "arrays of unequal shape": lambda: [np.zeros(3), np.zeros(4)],
    "tensors of unequal shape": lambda: [torch.zeros(3), torch.zeros(2)],
    "None": lambda: [None, None],
    "sets": lambda: [{1}, {2}],
    "complex": lambda: [1j, 2j],
    "object arrays": lambda: [np.array([None, 1]), np.array([2, None])],
    "missing dict key": lambda: [{"a": 1, "b": 2}, {"a": 2}],
    "empty batch": lambda: [],
    "int too large": lambda: [2**63, 1],
}


@pytest.mark.parametrize("case", list(COLLATE_ERRORS))
def test_default_collate_errors_like_torch(case: str) -> None:
    batch = COLLATE_ERRORS[case]()
    torch_error = first_error(lambda: [tud.default_collate(copy.deepcopy(batch))])
    assert torch_error is not None, "table error: torch collates it"
    # torch's own types where they are the checked builtins; e.g. KeyError: any error will do
    want = expected_type(torch_error) if isinstance(torch_error, CHECKED_TYPES) else Exception
    ladle_error = first_error(lambda: [ladle.default_collate(copy.deepcopy(batch))])
    assert ladle_error is not None, f"ladle collates it, torch raises {torch_error!r}"
    assert isinstance(ladle_error, want), (
        f"torch raises {type(torch_error).__name__} ({torch_error}), ladle raises "
        f"{type(ladle_error).__name__} ({ladle_error})"
    )


CONVERT_CASES: dict[str, Callable[[], Any]] = {
    "array": lambda: _arr(1),
    "int array 2-d": lambda: _arr(2, np.int64, (2, 2)),
    "float32 scalar": lambda: np.float32(2.5),
    "int16 scalar": lambda: np.int16(7),
    "bool_ scalar": lambda: np.bool_(True),
    "python int": lambda: 3,
    "python float": lambda: 3.5,
    "str": lambda: "abc",
    "bytes": lambda: b"abc",
    "None": lambda: None,
    "str array": lambda: np.array(["a", "b"]),
    "tuple": lambda: (_arr(0), np.int64(3), "s", 4),
    "list": lambda: [_arr(0), [np.float32(1), 2]],
    "namedtuple": lambda: Point(_arr(0), np.int64(1)),
    "dict": lambda: {"a": _arr(0), "b": (np.int32(1), "x")},
    "OrderedDict": lambda: OrderedDict([("z", _arr(0)), ("a", 1)]),
    "custom MutableMapping": lambda: Record({"x": _arr(0), "y": np.int64(1)}),
    "custom Mapping": lambda: FrozenRecord({"x": _arr(0)}),
    "custom Sequence": lambda: Row([_arr(0), 1]),
    "list subclass": lambda: MyList([_arr(0), np.float64(1)]),
}


@pytest.mark.parametrize("case", list(CONVERT_CASES))
def test_default_convert_matches_torch(case: str) -> None:
    data = CONVERT_CASES[case]()
    want = tud.default_convert(copy.deepcopy(data))
    got = ladle.default_convert(copy.deepcopy(data))
    assert_same(got, want)
    if case not in ("custom Sequence", "str array"):  # to_torch does not descend into those
        assert_same(to_torch(got), want, tensors=True)


def test_default_convert_keeps_numpy_and_tensors() -> None:
    array = _arr(0)
    assert ladle.default_convert(array) is array
    tensor = torch.arange(3)
    assert ladle.default_convert(tensor) is tensor
    assert isinstance(ladle.default_convert(np.float32(1)), np.ndarray)


# --------------------------------------------------------------------------------------------
# 4. samplers without shuffling: identical index lists


@settings(max_examples=40, deadline=None)
@given(SIZES)
def test_sequential_sampler(n: int) -> None:
    mine, theirs = ladle.SequentialSampler(range(n)), tud.SequentialSampler(range(n))
    got = list(mine)
    assert got == list(theirs)
    assert all(type(i) is int for i in got)
    assert len(mine) == len(theirs)


@settings(max_examples=40, deadline=None)
@given(SIZES, BATCH_SIZES, st.booleans(), st.booleans())
def test_batch_sampler(n: int, b: int, drop_last: bool, plain: bool) -> None:
    if plain:  # any iterable of indices, not a ladle sampler
        inner_mine: Any = list(range(n))
        inner_theirs: Any = list(range(n))
    else:
        inner_mine, inner_theirs = (
            ladle.SequentialSampler(range(n)),
            tud.SequentialSampler(range(n)),
        )
    mine = ladle.BatchSampler(inner_mine, b, drop_last)
    theirs = tud.BatchSampler(inner_theirs, b, drop_last)
    got = list(mine)
    assert got == list(theirs)
    assert all(type(batch) is list and all(type(i) is int for i in batch) for batch in got)
    assert len(mine) == len(theirs)


@settings(max_examples=60, deadline=None)
@given(SIZES, st.integers(1, 8), st.data(), st.booleans())
def test_distributed_sampler_without_shuffle(
    n: int, replicas: int, data: st.DataObject, drop_last: bool
) -> None:
    rank = data.draw(st.integers(0, replicas - 1))
    kwargs = {"num_replicas": replicas, "rank": rank, "shuffle": False, "drop_last": drop_last}
    mine, theirs = (
        ladle.DistributedSampler(range(n), **kwargs),
        tud.DistributedSampler(range(n), **kwargs),
    )
    got = list(mine)
    assert got == list(theirs)
    assert all(type(i) is int for i in got)
    assert len(mine) == len(theirs) == len(got)
    assert mine.num_samples == theirs.num_samples and mine.total_size == theirs.total_size


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 200), st.integers(1, 6), st.integers(0, 100), st.integers(0, 3))
def test_distributed_sampler_with_shuffle_shards_like_torch(
    n: int, replicas: int, seed: int, epoch: int
) -> None:
    """Orders differ (different RNG); shard sizes and the covered set agree."""
    mine_shards, their_shards = [], []
    for rank in range(replicas):
        mine = ladle.DistributedSampler(range(n), replicas, rank, shuffle=True, seed=seed)
        theirs = tud.DistributedSampler(range(n), replicas, rank, shuffle=True, seed=seed)
        mine.set_epoch(epoch)
        theirs.set_epoch(epoch)
        mine_shards.append(list(mine))
        their_shards.append(list(theirs))
        assert len(mine) == len(theirs)
    assert [len(s) for s in mine_shards] == [len(s) for s in their_shards]
    assert {i for s in mine_shards for i in s} == set(range(n))


def test_distributed_sampler_pads_tiny_datasets_like_torch() -> None:
    for n, replicas in [(1, 8), (2, 5), (3, 7), (5, 2)]:
        for rank in range(replicas):
            kwargs = {"num_replicas": replicas, "rank": rank, "shuffle": False}
            assert list(ladle.DistributedSampler(range(n), **kwargs)) == list(
                tud.DistributedSampler(range(n), **kwargs)
            )


# --------------------------------------------------------------------------------------------
# 5. random_split


def _split_both(n: int, lengths: list[Any]) -> tuple[Any, Any, list[str], list[str]]:
    """(ladle result or error, torch result or error, ladle warnings, torch warnings)."""
    results: list[Any] = []
    caught: list[list[str]] = []
    for split, generator in (
        (ladle.random_split, np.random.default_rng(0)),
        (tud.random_split, torch.Generator().manual_seed(0)),
    ):
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            try:
                results.append(split(range(n), list(lengths), generator=generator))
            except Exception as error:
                results.append(error)
        caught.append([type(r.message).__name__ for r in records])
    return results[0], results[1], caught[0], caught[1]


def _check_split(n: int, lengths: list[Any]) -> None:
    mine, theirs, mine_warned, their_warned = _split_both(n, lengths)
    integral = all(isinstance(length, int) for length in lengths)
    if integral and sum(lengths) == 1:
        # ladle reads all-int lengths as counts (commit 97da5a3, dataset.py _split_lengths);
        # torch reads e.g. [1, 0] as the fractions [1.0, 0.0]
        if n == 1:
            assert [len(s) for s in mine] == lengths and not mine_warned
        else:
            assert isinstance(mine, ValueError)
        return
    if isinstance(theirs, Exception):
        assert isinstance(mine, expected_type(theirs)), f"torch: {theirs!r}, ladle: {mine!r}"
        return
    assert not isinstance(mine, Exception), f"ladle raises {mine!r}, torch splits"
    assert [len(s) for s in mine] == [len(s) for s in theirs]
    if not integral:
        assert mine_warned == their_warned, "both warn about each empty split"
    flat = [i for subset in mine for i in subset.indices]
    assert sorted(flat) == list(range(n)), "subsets must be disjoint and cover the dataset"
    for subset in mine:
        assert [subset[i] for i in range(len(subset))] == list(subset.indices)


@st.composite
def integer_lengths(draw: st.DrawFn) -> tuple[int, list[int]]:
    n = draw(st.integers(0, 200))
    k = draw(st.integers(1, 6))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    bounds = [0, *cuts, n]
    return n, [bounds[i + 1] - bounds[i] for i in range(k)]


@settings(max_examples=50, deadline=None)
@given(integer_lengths())
def test_random_split_integer_lengths(case: tuple[int, list[int]]) -> None:
    _check_split(*case)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 200), st.lists(st.integers(0, 10), min_size=1, max_size=6))
def test_random_split_fractions(n: int, weights: list[int]) -> None:
    total = sum(weights)
    if total == 0:
        return
    _check_split(n, [w / total for w in weights])


@pytest.mark.parametrize(
    ("n", "lengths"),
    [
        (30, [0.3, 0.3, 0.4]),
        (10, [0.33, 0.33, 0.34]),
        (7, [0.5, 0.5]),
        (5, [0.25, 0.25, 0.25, 0.25]),
        (2, [0.25, 0.25, 0.25, 0.25]),  # empty splits warn in both
        (10, [0.5, 0.4]),  # fractions not summing to 1: ValueError
        (10, [3, 3]),  # wrong total: ValueError
        (10, [1.5, -0.5]),
        (10, [0.7, 0.7, -0.4]),
        (5, [1, 0]),  # ints are counts in ladle: ValueError (torch: fractions, [5, 0])
        (1, [1, 0]),
    ],
)
def test_random_split_examples(n: int, lengths: list[Any]) -> None:
    _check_split(n, lengths)


def test_random_split_all_int_lengths_are_counts() -> None:
    """A documented ladle choice: torch reads [1, 0] as fractions, ladle as counts."""
    with pytest.warns(UserWarning):
        assert [len(s) for s in tud.random_split(range(5), [1, 0])] == [5, 0]
    with pytest.raises(ValueError, match="lengths"):
        ladle.random_split(range(5), [1, 0], seed=0)
    with pytest.warns(UserWarning):
        assert [len(s) for s in ladle.random_split(range(5), [1.0, 0.0], seed=0)] == [5, 0]


# --------------------------------------------------------------------------------------------
# 6. dataset combinators


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=5))
def test_concat_dataset_items(sizes: list[int]) -> None:
    parts = [[f"d{k}i{i}" for i in range(size)] for k, size in enumerate(sizes)]
    mine, theirs = ladle.ConcatDataset(parts), tud.ConcatDataset(parts)
    assert len(mine) == len(theirs)
    assert mine.cumulative_sizes == theirs.cumulative_sizes
    total = len(theirs)
    for i in range(-total, total):
        assert mine[i] == theirs[i]
    with pytest.raises(IndexError):
        theirs[total]
    with pytest.raises(IndexError):
        mine[total]


def test_concat_dataset_too_negative_index_is_an_index_error() -> None:
    """Deliberate: torch raises ValueError for index < -len, ladle the IndexError every other
    out-of-range index gets, naming the index and the size."""
    parts = [[1, 2], [3]]
    with pytest.raises(ValueError):
        tud.ConcatDataset(parts)[-4]
    with pytest.raises(IndexError, match="index -4 is out of range for ConcatDataset of size 3"):
        ladle.ConcatDataset(parts)[-4]


def test_concat_dataset_in_a_loader() -> None:
    parts_l = [tensor_datasets(5)[0], tensor_datasets(3)[0]]
    parts_t = [tensor_datasets(5)[1], tensor_datasets(3)[1]]
    check_loaders(ladle.ConcatDataset(parts_l), tud.ConcatDataset(parts_t), batch_size=3)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.data())
def test_subset_items_and_loader(n: int, data: st.DataObject) -> None:
    indices = data.draw(st.lists(st.integers(0, n - 1), max_size=60))
    base = [f"x{i}" for i in range(n)]
    mine, theirs = ladle.Subset(base, indices), tud.Subset(base, indices)
    assert len(mine) == len(theirs)
    for i in range(-len(indices), len(indices)):
        assert mine[i] == theirs[i]
    ladle_ds, torch_ds = tensor_datasets(n)
    b = data.draw(BATCH_SIZES)
    check_loaders(ladle.Subset(ladle_ds, indices), tud.Subset(torch_ds, indices), batch_size=b)


def test_subset_out_of_range_raises_index_error() -> None:
    for subset in (ladle.Subset([1, 2, 3], [0, 2]), tud.Subset([1, 2, 3], [0, 2])):
        with pytest.raises(IndexError):
            subset[2]


def test_subset_list_index_matches_torch() -> None:
    """torch's Subset[list] forwards the mapped list to the parent dataset in one call."""
    ladle_ds, torch_ds = tensor_datasets(6)
    got = ladle.Subset(ladle_ds, [1, 2, 3])[[0, 2]]
    want = tud.Subset(torch_ds, [1, 2, 3])[[0, 2]]
    assert_same(got, want)


@pytest.mark.parametrize("index", [slice(0, 3), slice(None), [0, 2], np.array([1, 3])])
def test_tensor_dataset_fancy_index_matches_torch(index: Any) -> None:
    """torch's TensorDataset[i] is ``tuple(t[i] for t in tensors)``: slices and lists work."""
    ladle_ds, torch_ds = tensor_datasets(5)
    torch_index = torch.from_numpy(index) if isinstance(index, np.ndarray) else index
    assert_same(ladle_ds[index], torch_ds[torch_index])


def test_tensor_dataset_items() -> None:
    ladle_ds, torch_ds = tensor_datasets(5)
    for i in range(-5, 5):
        assert_same(ladle_ds[i], torch_ds[i])
    for i in (5, -6):
        with pytest.raises(IndexError):
            torch_ds[i]
        with pytest.raises(IndexError):
            ladle_ds[i]


def test_stack_dataset_items() -> None:
    ladle_td, torch_td = tensor_datasets(6)
    names = [f"n{i}" for i in range(6)]
    for mine, theirs in (
        (ladle.StackDataset(ladle_td, names), tud.StackDataset(torch_td, names)),
        (ladle.StackDataset(a=ladle_td, b=names), tud.StackDataset(a=torch_td, b=names)),
    ):
        assert len(mine) == len(theirs)
        for i in range(6):
            assert_same(mine[i], theirs[i])
        got = list(mine.__getitems__([4, 0, 2]))
        assert_same(got, theirs.__getitems__([4, 0, 2]))


@pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keyword"])
@pytest.mark.parametrize("b", [1, 4])
def test_stack_dataset_in_a_loader(keyword: bool, b: int) -> None:
    ladle_td, torch_td = tensor_datasets(6)
    ints = list(range(100, 106))
    if keyword:
        mine, theirs = (
            ladle.StackDataset(t=ladle_td, i=ints, p=Pairs(6)),
            tud.StackDataset(t=torch_td, i=ints, p=Pairs(6)),
        )
    else:
        mine = ladle.StackDataset(ladle_td, ints, Pairs(6))
        theirs = tud.StackDataset(torch_td, ints, Pairs(6))
    check_loaders(mine, theirs, batch_size=b)


def test_stack_dataset_str_column_in_a_loader() -> None:
    """A str column of tuple samples collates to a tuple of str in torch (see the collate test)."""
    ladle_td, torch_td = tensor_datasets(4)
    names = [f"n{i}" for i in range(4)]
    check_loaders(
        ladle.StackDataset(ladle_td, names), tud.StackDataset(torch_td, names), batch_size=2
    )


def test_stack_dataset_rejections() -> None:
    for args, kwargs in [
        (([1, 2], [1]), {}),
        ((), {"a": [1, 2], "b": [1]}),
        ((), {}),
        (([1],), {"a": [1]}),
    ]:
        with pytest.raises(ValueError):
            tud.StackDataset(*args, **kwargs)
        with pytest.raises(ValueError):
            ladle.StackDataset(*args, **kwargs)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=4), st.booleans())
def test_chain_dataset(sizes: list[int], arrays: bool) -> None:
    mine = ladle.ChainDataset([LadleStream(n, arrays) for n in sizes])
    theirs = tud.ChainDataset([TorchStream(n, arrays) for n in sizes])
    assert len(mine) == len(theirs)
    assert_same(list(mine), list(theirs))
    check_loaders(mine, theirs, batch_size=3)


class _Letters:
    def __init__(self, text: str) -> None:
        self.text = text

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i: int) -> str:
        return self.text[i]


class LadleLetters(_Letters, ladle.Dataset):  # type: ignore[misc]
    pass


class TorchLetters(_Letters, tud.Dataset):  # type: ignore[misc]
    pass


def test_dataset_add() -> None:
    mine = LadleLetters("abc") + LadleLetters("de")
    theirs = TorchLetters("abc") + TorchLetters("de")
    assert isinstance(mine, ladle.ConcatDataset) and isinstance(theirs, tud.ConcatDataset)
    assert len(mine) == len(theirs)
    assert [mine[i] for i in range(-5, 5)] == [theirs[i] for i in range(-5, 5)]
    assert mine.cumulative_sizes == theirs.cumulative_sizes
    mine3 = mine + LadleLetters("f")
    theirs3 = theirs + TorchLetters("f")
    assert [mine3[i] for i in range(len(mine3))] == [theirs3[i] for i in range(len(theirs3))]


def test_iterable_dataset_add() -> None:
    mine = LadleStream(3, False) + LadleStream(2, True)
    theirs = TorchStream(3, False) + TorchStream(2, True)
    assert isinstance(mine, ladle.ChainDataset) and isinstance(theirs, tud.ChainDataset)
    assert_same(list(mine), list(theirs))


# Deliberate differences from torch, asserted as ladle's documented behaviour.


def test_numpy_integers_are_accepted_where_torch_wants_int() -> None:
    """torch rejects np.int64 batch sizes and sample counts; ladle takes any integer."""
    with pytest.raises(ValueError):
        tud.DataLoader(range(5), batch_size=np.int64(2))
    assert [b.tolist() for b in ladle.DataLoader(range(5), batch_size=np.int64(2))] == [
        [0, 1],
        [2, 3],
        [4],
    ]
    assert len(list(ladle.RandomSampler(range(5), num_samples=np.int64(3), seed=0))) == 3


@pytest.mark.parametrize("weights", [[1.0, -1.0], [0.0, 0.0]])
def test_bad_weights_fail_at_construction(weights: list[float]) -> None:
    """torch raises RuntimeError only when iterating; ladle raises ValueError at once."""
    sampler = tud.WeightedRandomSampler(weights, 2)
    with pytest.raises(RuntimeError):
        list(sampler)
    with pytest.raises(ValueError, match="weights"):
        ladle.WeightedRandomSampler(weights, 2)


def test_numpy_string_arrays_stack() -> None:
    """torch cannot hold strings in tensors; ladle stacks NumPy str and bytes arrays."""
    with pytest.raises(TypeError):
        tud.default_collate([np.array(["a", "b"]), np.array(["c", "d"])])
    stacked = ladle.default_collate([np.array(["a", "b"]), np.array(["c", "d"])])
    assert stacked.tolist() == [["a", "b"], ["c", "d"]]
    assert ladle.default_collate([np.array([b"a"]), np.array([b"c"])]).dtype.kind == "S"
