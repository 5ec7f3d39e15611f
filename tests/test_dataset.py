"""Datasets, their combinators and random_split."""

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ladle
from ladle import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    GatheredBatch,
    IterableDataset,
    StackDataset,
    Subset,
    TensorDataset,
    random_split,
)


class Squares(Dataset[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


class Count(IterableDataset[int]):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def test_base_dataset_says_what_to_implement() -> None:
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="__iter__"):
        iter(IterableDataset())


def test_tensor_dataset_rows_and_vectorised_gather() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.int64)
    ds = TensorDataset(x, y)
    assert len(ds) == 10
    row, label = ds[3]
    np.testing.assert_array_equal(row, x[3])
    assert label == 3
    row, label = ds[-1]
    assert label == 9
    batch = ds.__getitems__([4, 1, 7])
    assert isinstance(batch, GatheredBatch) and len(batch) == 3
    np.testing.assert_array_equal(batch.columns[0], x[[4, 1, 7]])
    assert [s[1] for s in batch] == [4, 1, 7]
    collated = ladle.default_collate(batch)
    assert isinstance(collated, list)
    np.testing.assert_array_equal(collated[1], [4, 1, 7])


def test_tensor_dataset_torch_tensors() -> None:
    import torch

    x = torch.arange(12).reshape(6, 2)
    ds = TensorDataset(x)
    (gathered,) = ladle.default_collate(ds.__getitems__(np.array([5, 0])))
    assert isinstance(gathered, torch.Tensor)
    assert gathered.tolist() == [[10, 11], [0, 1]]


def test_tensor_dataset_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(ValueError, match="argument 0 has 5 rows and argument 1 has 4"):
        TensorDataset(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="at least one array"):
        TensorDataset()
    with pytest.raises(TypeError, match="argument 0"):
        TensorDataset(3)


@pytest.mark.parametrize("index", [10, -11, 1000])
def test_index_out_of_range_names_index_and_size(index: int) -> None:
    ds = TensorDataset(np.zeros((10, 3)))
    message = f"index {index} is out of range for TensorDataset of size 10"
    with pytest.raises(IndexError, match=message):
        ds[index]
    with pytest.raises(IndexError, match=message):
        ds.__getitems__([0, index])


def test_subset_maps_indices_and_uses_parent_getitems() -> None:
    x = np.arange(10) * 10
    sub = Subset(TensorDataset(x), [9, 2, 5])
    assert len(sub) == 3
    assert sub[0][0] == 90
    (gathered,) = sub[[0, 2]]  # a list index goes to the parent in one call, as in torch
    assert gathered.tolist() == [90, 50]
    batch = sub.__getitems__(np.array([2, 1]))
    assert isinstance(batch, GatheredBatch)
    np.testing.assert_array_equal(batch.columns[0], [50, 20])
    with pytest.raises(IndexError, match="index 3 is out of range for Subset of size 3"):
        sub[3]
    with pytest.raises(IndexError, match="index 3 is out of range for Subset of size 3"):
        sub.__getitems__([0, 3])
    plain = Subset(Squares(10), [3, 4])
    assert plain.__getitems__([1, 0]) == [16, 9]


def test_concat_dataset_negative_indices_and_plus() -> None:
    ds = Squares(3) + Squares(2)
    assert isinstance(ds, ConcatDataset)
    assert len(ds) == 5
    assert [ds[i] for i in range(5)] == [0, 1, 4, 0, 1]
    assert [ds[-i] for i in range(1, 6)] == [1, 0, 4, 1, 0]
    assert ds.cumulative_sizes == [3, 5]
    with pytest.raises(IndexError, match="index -6 is out of range for ConcatDataset of size 5"):
        ds[-6]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        ds[5]
    with pytest.raises(ValueError, match="at least one dataset"):
        ConcatDataset([])
    with pytest.raises(TypeError, match="ChainDataset"):
        ConcatDataset([Squares(2), Count(0, 2)])


def test_chain_dataset_and_iterable_plus() -> None:
    chained = Count(0, 3) + Count(10, 12)
    assert isinstance(chained, ChainDataset)
    assert list(chained) == [0, 1, 2, 10, 11]
    assert len(chained) == 5
    with pytest.raises(TypeError, match="ConcatDataset"):
        list(ChainDataset([Squares(2)]))


def test_stack_dataset_positional_and_keyword() -> None:
    a, b = Squares(4), TensorDataset(np.arange(4) + 100)
    pos = StackDataset(a, b)
    assert pos[2] == (4, (102,))
    kw = StackDataset(sq=a, t=b)
    assert kw[3] == {"sq": 9, "t": (103,)}
    batch = kw.__getitems__([1, 3])
    assert list(batch) == [{"sq": 1, "t": (101,)}, {"sq": 9, "t": (103,)}]
    collated = ladle.default_collate(batch)
    np.testing.assert_array_equal(collated["sq"], [1, 9])
    np.testing.assert_array_equal(collated["t"][0], [101, 103])
    with pytest.raises(ValueError, match="not both"):
        StackDataset(a, t=b)
    with pytest.raises(ValueError, match="dataset 'y' has 3"):
        StackDataset(x=a, y=Squares(3))


@given(st.integers(0, 200), st.lists(st.integers(0, 50), min_size=1, max_size=5), st.integers(0))
def test_random_split_lengths_disjoint_complete(total: int, parts: list[int], seed: int) -> None:
    lengths = [*parts[:-1], total - sum(parts[:-1])]
    if lengths[-1] < 0:
        with pytest.raises(ValueError, match=r"lengths\[\d\]=-"):
            random_split(Squares(total), lengths, seed=seed)
        return
    splits = random_split(Squares(total), lengths, seed=seed)
    assert [len(s) for s in splits] == lengths
    seen = Counter(i for s in splits for i in s.indices)
    assert sorted(seen) == list(range(total)) and set(seen.values()) <= {1}
    again = random_split(Squares(total), lengths, seed=seed)
    assert [s.indices for s in again] == [s.indices for s in splits]


def test_random_split_fractions_round_robin_remainder() -> None:
    splits = random_split(Squares(10), [0.33, 0.33, 0.34], seed=1)
    assert [len(s) for s in splits] == [4, 3, 3]
    with pytest.warns(UserWarning, match="split at index 1 is empty"):
        random_split(Squares(2), [0.9, 0.1], seed=0)
    with pytest.raises(ValueError, match="sum to 11"):
        random_split(Squares(10), [5, 6])
    with pytest.raises(ValueError, match="seed or generator"):
        random_split(Squares(10), [5, 5], np.random.default_rng(0), seed=1)


def test_random_split_accepts_numpy_and_torch_generators() -> None:
    import torch

    a = random_split(Squares(20), [10, 10], np.random.default_rng(7))
    b = random_split(Squares(20), [10, 10], np.random.default_rng(7))
    assert a[0].indices == b[0].indices
    c = random_split(Squares(20), [10, 10], torch.Generator().manual_seed(3))
    d = random_split(Squares(20), [10, 10], torch.Generator().manual_seed(3))
    assert c[0].indices == d[0].indices
    with pytest.raises(TypeError, match="generator should be"):
        random_split(Squares(20), [10, 10], 42)


# --- a nested __getitems__ that returns the wrong number of samples -------------------------


class Short(Dataset[int]):
    """A dataset whose __getitems__ drops (or repeats) the last sample."""

    def __init__(self, n: int, extra: int) -> None:
        self.n, self.extra = n, extra

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

    def __getitems__(self, indices: list[int]) -> list[int]:
        got = list(indices)
        return got[:-1] if self.extra < 0 else got + got[-1:] * self.extra


@pytest.mark.parametrize(("extra", "got"), [(-1, 2), (1, 4)])
def test_stack_dataset_refuses_a_nested_batch_of_the_wrong_size(extra: int, got: int) -> None:
    for stack in (StackDataset(Squares(5), Short(5, extra)), StackDataset(a=Short(5, extra))):
        with pytest.raises(ValueError, match=rf"Expected 3, got {got}: StackDataset asked"):
            stack.__getitems__([0, 1, 2])
    with pytest.raises(ValueError, match=rf"Expected 3, got {got}"):
        list(ladle.DataLoader(StackDataset(Short(5, extra)), batch_size=3))


def test_subset_refuses_a_parent_batch_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match=r"Expected 2, got 1: Subset asked dataset 'dataset'"):
        Subset(Short(5, -1), [0, 1]).__getitems__([0, 1])


# --- a subclass that overrides only __getitem__ ------------------------------------------


def _subclass_overriding_getitem(base: type) -> type:
    class Doubled(base):  # type: ignore[valid-type, misc]
        def __getitem__(self, index: int) -> Any:
            return ("mine", super().__getitem__(index))

    return Doubled


def _make(kind: str, tmp_path: Path) -> Any:
    x = np.arange(6) * 10
    if kind == "TensorDataset":
        return _subclass_overriding_getitem(TensorDataset)(x)
    if kind == "Subset":
        return _subclass_overriding_getitem(Subset)(TensorDataset(x), [5, 4, 3, 2, 1, 0])
    if kind == "StackDataset":
        return _subclass_overriding_getitem(StackDataset)(TensorDataset(x))
    if kind == "NpyDataset":
        np.save(tmp_path / "x.npy", x)
        return _subclass_overriding_getitem(ladle.NpyDataset)(tmp_path / "x.npy")
    ladle.write_shards([{"x": v} for v in x.tolist()], tmp_path / "shards")
    return _subclass_overriding_getitem(ladle.ShardDataset)(tmp_path / "shards")


@pytest.mark.parametrize(
    "kind", ["TensorDataset", "Subset", "StackDataset", "NpyDataset", "ShardDataset"]
)
def test_an_overridden_getitem_is_what_the_loader_serves(kind: str, tmp_path: Path) -> None:
    dataset = _make(kind, tmp_path)
    expected = [dataset[i] for i in range(len(dataset))]
    assert all(sample[0] == "mine" for sample in expected)
    assert dataset.__getitems__([1, 0]) == [expected[1], expected[0]]
    assert dataset.__getitems__(np.array([2])) == [expected[2]]
    served = [
        s for batch in ladle.DataLoader(dataset, batch_size=4, collate_fn=list) for s in batch
    ]
    assert repr(served) == repr(expected)


def test_a_subclass_with_its_own_getitems_keeps_it() -> None:
    class Both(TensorDataset):
        def __getitem__(self, index: Any) -> Any:
            return "one"

        def __getitems__(self, indices: Any) -> Any:
            return ["batch"] * len(indices)

    class Deeper(Both):
        pass

    assert Deeper(np.arange(3)).__getitems__([0, 1]) == ["batch", "batch"]

    class Plain(TensorDataset):  # no override at all: the vectorised gather stays
        pass

    assert isinstance(Plain(np.arange(3)).__getitems__([0]), GatheredBatch)


# --- indices are checked, never truncated --------------------------------------------------


def test_float_and_bool_indices_are_refused_not_truncated() -> None:
    ds = TensorDataset(np.arange(5))
    with pytest.raises(
        IndexError, match=r"TensorDataset index should be an int, but got index=1\.5"
    ):
        ds[1.5]  # type: ignore[index]
    with pytest.raises(IndexError, match=r"index=True"):
        ds[True]
    with pytest.raises(TypeError, match=r"indices should be integers, but got an array of float64"):
        ds.__getitems__([1.5])
    with pytest.raises(TypeError, match=r"np\.flatnonzero\(mask\)"):
        ds.__getitems__(np.array([True, False]))
    with pytest.raises(TypeError, match=r"Subset indices should be integers.*indices=\[1\.5\]"):
        Subset(ds, [1.5])  # type: ignore[list-item]
    with pytest.raises(
        TypeError, match=r"ConcatDataset index should be an int, but got index=1\.5"
    ):
        ConcatDataset([ds])[1.5]  # type: ignore[index]
    with pytest.raises(TypeError, match=r"StackDataset index should be an int"):
        StackDataset(ds)[0.0]  # type: ignore[index]
    sub = Subset(ds, [4, 3])
    with pytest.raises(TypeError, match=r"Subset indices should be integers"):
        sub.indices = [0.5]  # type: ignore[list-item]
    assert sub[np.int64(0)] == (4,) and ds[np.int32(-1)] == (4,)
    np.testing.assert_array_equal(ds[np.array([True, False, False, False, True])][0], [0, 4])


class Noisy(Dataset[float]):
    """Each sample is a draw from ladle.sample_rng()."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> float:
        return float(ladle.sample_rng().random()) + i


class PerSample(Dataset[Any]):
    """The same samples, through the loader's per-sample path (no __getitems__)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]


@pytest.mark.parametrize(
    "make", [lambda: Subset(Noisy(), [3, 1, 4, 1, 5]), lambda: StackDataset(Noisy())]
)
def test_nested_per_sample_fetches_key_sample_rng_like_the_per_sample_path(make: Any) -> None:
    def served(dataset: Any) -> list[Any]:
        loader = ladle.DataLoader(dataset, batch_size=2, seed=0, collate_fn=list)
        return [sample for batch in loader for sample in batch]

    assert served(make()) == served(PerSample(make()))
