"""``ladle.torch`` behaves as ``torch.utils.data`` 2.13: names, the DataLoader class, batches.

Differential: every case runs with torch.utils.data and with the namespace under test (see
``torch_ns_support``) on the same inputs, and the outputs must agree exactly: values, dtypes,
tensor vs list vs other types, container types and structure. No case is marked xfail: a
failure is a difference from torch. Run with ``LADLE_TORCH_NS=torch.utils.data`` to check the
harness (torch against itself: everything passes, ladle's additions skip).

Siblings: ``test_torch_ns_rng.py`` (seeded orders, RNG state), ``test_torch_ns_workers.py``
(worker processes), ``test_torch_ns_errors.py`` (exceptions and warnings).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from torch_ns_support import (
    SAMPLES,
    Samples,
    Stream,
    arr,
    assert_exact,
    differential,
    identity,
    is_reference,
    namespace_under_test,
)

PUBLIC = sorted(name for name in tud.__all__ if not name.startswith("_"))


@pytest.fixture(scope="module")
def ns() -> ModuleType:
    return namespace_under_test()


def ladle_only(ns: ModuleType) -> None:
    if is_reference(ns):
        pytest.skip("ladle's addition: torch has none")


# --------------------------------------------------------------------------------------------
# names and the DataLoader class


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_importable(ns: ModuleType, name: str) -> None:
    assert hasattr(ns, name), f"{ns.__name__} lacks torch.utils.data.{name}"
    assert name in getattr(ns, "__all__", [name]), f"{name} missing from {ns.__name__}.__all__"


def test_dataloader_is_a_torch_dataloader(ns: ModuleType) -> None:
    assert issubclass(ns.DataLoader, tud.DataLoader)
    loader = ns.DataLoader(range(4))
    assert isinstance(loader, tud.DataLoader)
    assert type(loader).__name__ == "DataLoader"


def _parameters(cls: type) -> list[tuple[str, Any, Any]]:
    signature = inspect.signature(cls.__init__)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_dataloader_keeps_torch_parameters(ns: ModuleType) -> None:
    """torch's parameters, in torch's order, kinds and defaults, come first."""
    want = _parameters(tud.DataLoader)
    got = _parameters(ns.DataLoader)
    assert got[: len(want)] == want


def test_dataloader_adds_seed_and_worker_type_only(ns: ModuleType) -> None:
    ladle_only(ns)
    extra = _parameters(ns.DataLoader)[len(_parameters(tud.DataLoader)) :]
    keyword = inspect.Parameter.KEYWORD_ONLY
    assert extra == [("seed", keyword, None), ("worker_type", keyword, "process")]


def test_dataloader_state_dict_resumes(ns: ModuleType) -> None:
    ladle_only(ns)
    loader = ns.DataLoader(range(20), batch_size=3, shuffle=True, seed=5)
    it = iter(loader)
    head = [next(it) for _ in range(2)]
    state = loader.state_dict()
    json.dumps(state)  # JSON-serialisable
    rest = list(it)
    resumed = ns.DataLoader(range(20), batch_size=3, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    assert_exact(list(resumed), rest)
    assert_exact(head + rest, list(ns.DataLoader(range(20), batch_size=3, shuffle=True, seed=5)))


def test_get_worker_info_is_none_in_the_main_process(ns: ModuleType) -> None:
    assert ns.get_worker_info() is None
    assert tud.get_worker_info() is None


# --------------------------------------------------------------------------------------------
# the loader's public attributes after construction


def _attributes(ns: ModuleType, kwargs: dict[str, Any]) -> dict[str, Any]:
    ds = kwargs.pop("dataset", None) or Samples("int", 10)
    gen = kwargs.get("generator")
    loader = ns.DataLoader(ds, **kwargs)

    def kind(obj: Any) -> Any:
        if obj is None:
            return None
        name = type(obj).__name__
        return name, type(obj) is getattr(ns, name, None)

    return {
        "dataset": loader.dataset is ds,
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last,
        "sampler": kind(loader.sampler),
        "batch_sampler": kind(loader.batch_sampler),
        "inner sampler": kind(getattr(loader.batch_sampler, "sampler", None)),
        "collate_fn": (
            loader.collate_fn is ns.default_collate,
            loader.collate_fn is ns.default_convert,
            loader.collate_fn is kwargs.get("collate_fn", 0),
        ),
        "num_workers": loader.num_workers,
        "prefetch_factor": loader.prefetch_factor,
        "pin_memory": loader.pin_memory,
        "pin_memory_device": loader.pin_memory_device,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": type(loader.multiprocessing_context).__name__,
        "generator": loader.generator is gen,
        "persistent_workers": loader.persistent_workers,
        "in_order": loader.in_order,
    }


ATTRIBUTE_CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "defaults": lambda: {},
    "shuffle": lambda: {"shuffle": True, "batch_size": 4, "drop_last": True},
    "shuffle with generator": lambda: {"shuffle": True, "generator": torch.Generator()},
    "batch_size None": lambda: {"batch_size": None},
    "sampler list": lambda: {"sampler": [3, 1, 2]},
    "batch_sampler list": lambda: {"batch_sampler": [[0, 1], [2]]},
    "collate_fn": lambda: {"collate_fn": identity, "batch_size": 2},
    "workers": lambda: {"num_workers": 2, "persistent_workers": True, "timeout": 5},
    "workers prefetch": lambda: {"num_workers": 1, "prefetch_factor": 5, "in_order": False},
    "workers context": lambda: {"num_workers": 1, "multiprocessing_context": "spawn"},
    "pin_memory": lambda: {"pin_memory": True, "pin_memory_device": "cpu"},
    "iterable": lambda: {"dataset": Stream(5), "batch_size": 2},
    "iterable no batching": lambda: {"dataset": Stream(5), "batch_size": None},
    "iterable shuffle False": lambda: {"dataset": Stream(5), "shuffle": False},
}


@pytest.mark.parametrize("case", list(ATTRIBUTE_CASES))
def test_loader_attributes(ns: ModuleType, case: str) -> None:
    differential(lambda m: _attributes(m, ATTRIBUTE_CASES[case]()), ns)


# --------------------------------------------------------------------------------------------
# batches from map-style datasets, one sample kind at a time


def _epoch(ns: ModuleType, dataset: Any, **kwargs: Any) -> list[Any]:
    return list(ns.DataLoader(dataset, **kwargs))


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_batches_default_collate(ns: ModuleType, kind: str) -> None:
    differential(lambda m: _epoch(m, Samples(kind, 7), batch_size=3), ns)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_batches_batch_size_none_default_convert(ns: ModuleType, kind: str) -> None:
    differential(lambda m: _epoch(m, Samples(kind, 3), batch_size=None), ns)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_default_collate_directly(ns: ModuleType, kind: str) -> None:
    differential(lambda m: m.default_collate([SAMPLES[kind](i) for i in range(3)]), ns)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_default_convert_directly(ns: ModuleType, kind: str) -> None:
    differential(lambda m: m.default_convert(SAMPLES[kind](2)), ns)


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(30, dtype=torch.float32).reshape(10, 3), torch.arange(10) % 3


def _stream_cls(ns: ModuleType) -> type:
    """0..n-1 as a stream subclassing the namespace's own IterableDataset."""

    class NsStream(ns.IterableDataset):  # type: ignore[misc, name-defined]
        def __init__(self, n: int) -> None:
            self.n = n

        def __iter__(self) -> Any:
            return iter(range(self.n))

    return NsStream


LOADER_CASES: dict[str, Callable[[ModuleType], Any]] = {
    "range dataset": lambda m: _epoch(m, range(10), batch_size=4),
    "list dataset": lambda m: _epoch(m, [arr(i) for i in range(5)], batch_size=2),
    "drop_last": lambda m: _epoch(m, Samples("dict", 7), batch_size=3, drop_last=True),
    "drop_last exact": lambda m: _epoch(m, Samples("int", 6), batch_size=3, drop_last=True),
    "batch larger than data": lambda m: _epoch(m, Samples("tuple", 3), batch_size=8),
    "empty dataset": lambda m: _epoch(m, Samples("int", 0), batch_size=2),
    "custom collate_fn": lambda m: _epoch(
        m, Samples("nested mix", 5), batch_size=2, collate_fn=identity
    ),
    "collate_fn without batching": lambda m: _epoch(
        m, Samples("namedtuple", 3), batch_size=None, collate_fn=identity
    ),
    "sampler list": lambda m: _epoch(m, Samples("dict", 6), sampler=[5, 0, 3, 3], batch_size=3),
    "sampler object": lambda m: _epoch(
        m, range(6), sampler=m.SequentialSampler(range(4)), batch_size=3
    ),
    "batch_sampler list": lambda m: _epoch(
        m, Samples("tuple", 6), batch_sampler=[[4, 1], [0], [5, 2, 3]]
    ),
    "batch_sampler object": lambda m: _epoch(
        m, range(9), batch_sampler=m.BatchSampler(m.SequentialSampler(range(9)), 4, True)
    ),
    "batch_sampler, batch_size None": lambda m: _epoch(
        m, range(5), batch_sampler=[[0, 1], [2, 3, 4]], batch_size=None
    ),
    "sampler, batch_size None": lambda m: _epoch(
        m, Samples("dict", 5), sampler=[4, 2], batch_size=None
    ),
    "TensorDataset": lambda m: _epoch(m, m.TensorDataset(*_tensors()), batch_size=4),
    "TensorDataset no batching": lambda m: _epoch(m, m.TensorDataset(*_tensors()), batch_size=None),
    "StackDataset tuple": lambda m: _epoch(
        m, m.StackDataset(m.TensorDataset(_tensors()[0]), Samples("str", 10)), batch_size=4
    ),
    "StackDataset dict": lambda m: _epoch(
        m, m.StackDataset(a=Samples("float32 array", 5), b=range(5)), batch_size=2
    ),
    "ConcatDataset": lambda m: _epoch(
        m, m.ConcatDataset([Samples("int", 3), Samples("int", 4)]), batch_size=3
    ),
    "Subset": lambda m: _epoch(m, m.Subset(Samples("dict", 9), [8, 0, 4]), batch_size=2),
    "Subset of TensorDataset": lambda m: _epoch(
        m, m.Subset(m.TensorDataset(*_tensors()), [9, 1, 2]), batch_size=2
    ),
    "iterable batched": lambda m: _epoch(m, Stream(7), batch_size=3),
    "iterable drop_last": lambda m: _epoch(m, Stream(7), batch_size=3, drop_last=True),
    "iterable no batching": lambda m: _epoch(m, Stream(4), batch_size=None),
    "iterable collate_fn": lambda m: _epoch(m, Stream(5), batch_size=2, collate_fn=identity),
    "iterable shuffle False": lambda m: _epoch(m, Stream(3), shuffle=False),
    "ns IterableDataset subclass": lambda m: _epoch(m, _stream_cls(m)(5), batch_size=2),
    "ChainDataset": lambda m: _epoch(m, m.ChainDataset([Stream(3), Stream(2)]), batch_size=2),
    "iterable + iterable": lambda m: _epoch(m, Stream(3) + Stream(2), batch_size=4),
    "IterDataPipe": lambda m: _epoch(m, _datapipe(7), batch_size=3),
    "two epochs": lambda m: [
        *(loader := m.DataLoader(Samples("tuple", 5), batch_size=2)),
        *loader,
    ],
    "pin_memory without accelerator": lambda m: _quiet(
        lambda: _epoch(m, Samples("tensor pair", 4), batch_size=2, pin_memory=True)
    ),
}


def _datapipe(n: int) -> Any:
    from torch.utils.data.datapipes.iter import IterableWrapper

    return IterableWrapper(range(n))


def _quiet(fn: Callable[[], Any]) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


@pytest.mark.parametrize("case", list(LOADER_CASES))
def test_loader_batches(ns: ModuleType, case: str) -> None:
    differential(LOADER_CASES[case], ns)


def test_memmap_batches(ns: ModuleType, tmp_path: Any) -> None:
    path = tmp_path / "rows.dat"
    rows = np.memmap(path, dtype=np.float32, mode="w+", shape=(7, 3))
    rows[:] = np.arange(21, dtype=np.float32).reshape(7, 3)
    rows.flush()
    # copy-on-write: torch warns (once per program) about read-only arrays
    mm = np.memmap(path, dtype=np.float32, mode="c", shape=(7, 3))
    differential(lambda m: _epoch(m, mm, batch_size=3), ns)
    differential(lambda m: _epoch(m, mm, batch_size=None), ns)
    differential(lambda m: m.default_collate([mm[0], mm[1]]), ns)
    differential(lambda m: m.default_convert(mm[2]), ns)


# --------------------------------------------------------------------------------------------
# len(loader), and datasets on their own


LEN_CASES: dict[str, Callable[[ModuleType], Any]] = {
    "map": lambda m: len(m.DataLoader(range(10), batch_size=3)),
    "map drop_last": lambda m: len(m.DataLoader(range(10), batch_size=3, drop_last=True)),
    "map no batching": lambda m: len(m.DataLoader(range(10), batch_size=None)),
    "map empty": lambda m: len(m.DataLoader(range(0), batch_size=3)),
    "sampler list": lambda m: len(m.DataLoader(range(10), sampler=[1, 2, 3], batch_size=2)),
    "batch_sampler list": lambda m: len(m.DataLoader(range(10), batch_sampler=[[1], [2, 3]])),
    "iterable with len": lambda m: len(m.DataLoader(Stream(10, length=10), batch_size=3)),
    "iterable with len drop_last": lambda m: len(
        m.DataLoader(Stream(10, length=10), batch_size=3, drop_last=True)
    ),
    "iterable with len no batching": lambda m: len(
        m.DataLoader(Stream(10, length=7), batch_size=None)
    ),
    "iterator length": lambda m: len(iter(m.DataLoader(range(10), batch_size=4))),
    "sampler lens": lambda m: [
        len(m.SequentialSampler(range(5))),
        len(m.RandomSampler(range(5))),
        len(m.RandomSampler(range(5), replacement=True, num_samples=12)),
        len(m.SubsetRandomSampler([1, 2])),
        len(m.WeightedRandomSampler([1.0, 2.0], 7)),
        len(m.BatchSampler(range(10), 3, False)),
        len(m.BatchSampler(range(10), 3, True)),
        len(m.DistributedSampler(range(10), num_replicas=3, rank=0)),
        len(m.DistributedSampler(range(10), num_replicas=3, rank=0, drop_last=True)),
    ],
}


@pytest.mark.parametrize("case", list(LEN_CASES))
def test_len(ns: ModuleType, case: str) -> None:
    differential(LEN_CASES[case], ns)


def _list_ds(m: ModuleType) -> Any:
    return [10 * i for i in range(6)]


DATASET_CASES: dict[str, Callable[[ModuleType], Any]] = {
    "TensorDataset item": lambda m: m.TensorDataset(*_tensors())[3],
    "TensorDataset slice": lambda m: m.TensorDataset(*_tensors())[2:5],
    "TensorDataset list index": lambda m: m.TensorDataset(*_tensors())[[0, 7]],
    "TensorDataset len": lambda m: len(m.TensorDataset(*_tensors())),
    "TensorDataset tensors": lambda m: m.TensorDataset(*_tensors()).tensors,
    "Subset item": lambda m: m.Subset(_list_ds(m), [5, 1, 3])[1],
    "Subset negative": lambda m: m.Subset(_list_ds(m), [5, 1, 3])[-1],
    "Subset len": lambda m: len(m.Subset(_list_ds(m), [5, 1, 3])),
    "Subset indices": lambda m: m.Subset(_list_ds(m), [5, 1, 3]).indices,
    "Subset of tensors, slice": lambda m: m.Subset(m.TensorDataset(*_tensors()), [5, 1, 3])[0:2],
    "Subset of tensors, list": lambda m: m.Subset(m.TensorDataset(*_tensors()), [5, 1, 3])[[2, 0]],
    "Subset of list, slice": lambda m: m.Subset(_list_ds(m), [5, 1, 3])[0:2],
    "Subset of list, list": lambda m: m.Subset(_list_ds(m), [5, 1, 3])[[2, 0]],
    "Subset __getitems__": lambda m: m.Subset(_list_ds(m), [5, 1, 3]).__getitems__([2, 0]),
    "Subset out of range": lambda m: m.Subset(_list_ds(m), [5, 1, 3])[3],
    "ConcatDataset items": lambda m: [
        m.ConcatDataset([range(3), range(10, 14)])[i] for i in (0, 2, 3, 6, -1, -7)
    ],
    "ConcatDataset sizes": lambda m: (
        m.ConcatDataset([range(3), range(0), range(4)]).cumulative_sizes
    ),
    "ConcatDataset len": lambda m: len(m.ConcatDataset([range(3), range(4)])),
    "ConcatDataset too negative": lambda m: m.ConcatDataset([range(3), range(4)])[-8],
    "ConcatDataset past the end": lambda m: m.ConcatDataset([range(3), range(4)])[7],
    "ConcatDataset cumsum": lambda m: m.ConcatDataset.cumsum([range(2), range(5)]),
    "Dataset + Dataset": lambda m: [
        type(d := m.TensorDataset(*_tensors()) + m.TensorDataset(*_tensors())).__name__,
        len(d),
        d[12],
    ],
    "StackDataset tuple": lambda m: m.StackDataset(range(3), _list_ds(m)[:3])[2],
    "StackDataset dict": lambda m: m.StackDataset(a=range(3), b=_list_ds(m)[:3])[1],
    "StackDataset len": lambda m: len(m.StackDataset(a=range(3), b=range(3))),
    "StackDataset __getitems__": lambda m: m.StackDataset(
        m.TensorDataset(_tensors()[0]), range(10)
    ).__getitems__([1, 4]),
    "StackDataset dict __getitems__": lambda m: m.StackDataset(
        a=m.Subset(range(10), [3, 4, 5]), b=range(3)
    ).__getitems__([2, 0]),
    "ChainDataset": lambda m: list(m.ChainDataset([Stream(3), Stream(2)])),
    "ChainDataset len": lambda m: len(m.ChainDataset([Stream(3, length=3), Stream(2, length=2)])),
    "iterable + iterable": lambda m: [type(d := Stream(2) + Stream(3)).__name__, list(d)],
    "SequentialSampler": lambda m: list(m.SequentialSampler(range(5))),
    "BatchSampler": lambda m: list(m.BatchSampler(m.SequentialSampler(range(10)), 3, False)),
    "BatchSampler drop_last": lambda m: list(m.BatchSampler(range(10), 3, True)),
    "BatchSampler over list": lambda m: list(m.BatchSampler([9, 8, 7, 6, 5], 2, False)),
    "DistributedSampler": lambda m: [
        list(m.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False))
        for r in range(3)
    ],
    "DistributedSampler drop_last": lambda m: [
        list(m.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False, drop_last=True))
        for r in range(3)
    ],
    "DistributedSampler shuffled epochs": lambda m: _distributed_epochs(m),
    "DistributedSampler tiny": lambda m: [
        list(m.DistributedSampler(range(2), num_replicas=5, rank=r, shuffle=False))
        for r in range(5)
    ],
}


def _distributed_epochs(m: ModuleType) -> list[list[int]]:
    out = []
    for epoch in range(3):
        for rank in range(3):
            sampler = m.DistributedSampler(range(11), num_replicas=3, rank=rank, seed=7)
            sampler.set_epoch(epoch)
            out.append(list(sampler))
    return out


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_datasets_and_samplers(ns: ModuleType, case: str) -> None:
    differential(DATASET_CASES[case], ns)
