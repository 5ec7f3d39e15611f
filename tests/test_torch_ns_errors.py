"""``ladle.torch`` raises and warns as torch.utils.data does.

The table of invalid arguments was built by reading torch 2.13's ``dataloader.py``,
``sampler.py``, ``dataset.py``, ``distributed.py`` and ``_utils/collate.py``. Each case runs with
torch and with the namespace under test; both must raise the same exception type (exactly) with
the same opening: torch's text up to its first ';' or line break, at most 60 characters (ladle
may append a fix; object reprs come later). Collate errors compare torch's whole text.
Warnings compare category and full text of every warning raised, in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from torch_ns_support import (
    FailAt,
    Raised,
    Stream,
    Unsized,
    assert_same_outcome,
    differential,
    namespace_under_test,
    recorded_warnings,
)


@pytest.fixture(scope="module")
def ns() -> ModuleType:
    return namespace_under_test()


def _loader(m: ModuleType, dataset: Any = None, **kwargs: Any) -> Any:
    return m.DataLoader(range(6) if dataset is None else dataset, **kwargs)


def _first(m: ModuleType, dataset: Any = None, **kwargs: Any) -> Any:
    return next(iter(_loader(m, dataset, **kwargs)))


def _set(m: ModuleType, attr: str, value: Any, **kwargs: Any) -> Any:
    loader = _loader(m, **kwargs)
    setattr(loader, attr, value)
    return getattr(loader, attr) if attr != "multiprocessing_context" else None


def _subset_overriding_getitem(m: ModuleType) -> Any:
    class MySubset(m.Subset):  # type: ignore[misc, name-defined]
        def __getitem__(self, idx: Any) -> Any:
            return 0

    return MySubset(range(4), [0, 1])


def _contexts() -> str:
    return "fork"  # a valid start method on Linux


LOADER_ERRORS: dict[str, Callable[[ModuleType], Any]] = {
    "num_workers negative": lambda m: _loader(m, num_workers=-1),
    "timeout negative": lambda m: _loader(m, timeout=-1),
    "timeout without workers (at iter)": lambda m: _first(m, timeout=5),
    "prefetch_factor without workers": lambda m: _loader(m, prefetch_factor=2),
    "prefetch_factor negative": lambda m: _loader(m, num_workers=1, prefetch_factor=-1),
    "persistent_workers without workers": lambda m: _loader(m, persistent_workers=True),
    "shuffle with sampler": lambda m: _loader(m, shuffle=True, sampler=[0, 1]),
    "batch_sampler with batch_size": lambda m: _loader(m, batch_sampler=[[0]], batch_size=2),
    "batch_sampler with shuffle": lambda m: _loader(m, batch_sampler=[[0]], shuffle=True),
    "batch_sampler with sampler": lambda m: _loader(m, batch_sampler=[[0]], sampler=[0]),
    "batch_sampler with drop_last": lambda m: _loader(m, batch_sampler=[[0]], drop_last=True),
    "batch_size None with drop_last": lambda m: _loader(m, batch_size=None, drop_last=True),
    "batch_size 0": lambda m: _loader(m, batch_size=0),
    "batch_size negative": lambda m: _loader(m, batch_size=-2),
    "batch_size float": lambda m: _loader(m, batch_size=2.0),
    "batch_size bool": lambda m: _loader(m, batch_size=True),
    "drop_last not bool": lambda m: _loader(m, batch_size=2, drop_last=1),
    "iterable with shuffle": lambda m: _loader(m, Stream(3), shuffle=True),
    "iterable with sampler": lambda m: _loader(m, Stream(3), sampler=[0]),
    "iterable with batch_sampler": lambda m: _loader(m, Stream(3), batch_sampler=[[0]]),
    "iterable with shuffle and sampler": lambda m: _loader(m, Stream(3), shuffle=True, sampler=[0]),
    "multiprocessing_context bogus": lambda m: _loader(
        m, num_workers=1, multiprocessing_context="bogus"
    ),
    "multiprocessing_context not a context": lambda m: _loader(
        m, num_workers=1, multiprocessing_context=5
    ),
    "multiprocessing_context without workers": lambda m: _loader(
        m, multiprocessing_context=_contexts()
    ),
    "set dataset": lambda m: _set(m, "dataset", range(3)),
    "set batch_size": lambda m: _set(m, "batch_size", 3),
    "set sampler": lambda m: _set(m, "sampler", [0]),
    "set batch_sampler": lambda m: _set(m, "batch_sampler", [[0]]),
    "set drop_last": lambda m: _set(m, "drop_last", True),
    "set persistent_workers": lambda m: _set(m, "persistent_workers", True),
    "set num_workers (allowed)": lambda m: _set(m, "num_workers", 2),
    "set timeout (allowed)": lambda m: _set(m, "timeout", 3),
    "set collate_fn (allowed)": lambda m: _set(m, "collate_fn", None),
    "set multiprocessing_context without workers": lambda m: _set(
        m, "multiprocessing_context", "spawn"
    ),
    "len of unsized iterable": lambda m: len(_loader(m, Unsized(3))),
    "len of unsized iterable, no batching": lambda m: len(_loader(m, Unsized(3), batch_size=None)),
    "sampler index out of range": lambda m: _first(m, sampler=[9]),
    "dataset error, no workers": lambda m: list(_loader(m, FailAt(4, 2, ValueError, "bad 2"))),
    "dataset KeyError, no workers": lambda m: list(_loader(m, FailAt(4, 1, KeyError, "k"))),
    "dataset IndexError, no workers": lambda m: list(
        _loader(m, FailAt(4, 3, IndexError, "no 3"), batch_size=2)
    ),
    "collate_fn error": lambda m: _first(m, collate_fn=lambda b: 1 / 0),
    "unsized iterable in a loop (accepted)": lambda m: list(_loader(m, Unsized(3), batch_size=2)),
}

SAMPLER_ERRORS: dict[str, Callable[[ModuleType], Any]] = {
    "RandomSampler replacement int": lambda m: m.RandomSampler(range(5), replacement=1),
    "RandomSampler replacement None": lambda m: m.RandomSampler(range(5), replacement=None),
    "RandomSampler num_samples 0": lambda m: m.RandomSampler(range(5), num_samples=0),
    "RandomSampler num_samples negative": lambda m: m.RandomSampler(range(5), num_samples=-3),
    "RandomSampler num_samples float": lambda m: m.RandomSampler(range(5), num_samples=2.0),
    "RandomSampler num_samples True (accepted)": lambda m: len(
        m.RandomSampler(range(5), num_samples=True)
    ),
    "RandomSampler empty dataset": lambda m: m.RandomSampler(range(0)),
    "RandomSampler unsized": lambda m: m.RandomSampler(Unsized(3)),
    "BatchSampler batch_size 0": lambda m: m.BatchSampler(range(5), 0, False),
    "BatchSampler batch_size negative": lambda m: m.BatchSampler(range(5), -1, False),
    "BatchSampler batch_size float": lambda m: m.BatchSampler(range(5), 2.0, False),
    "BatchSampler batch_size bool": lambda m: m.BatchSampler(range(5), True, False),
    "BatchSampler batch_size None": lambda m: m.BatchSampler(range(5), None, False),
    "BatchSampler drop_last int": lambda m: m.BatchSampler(range(5), 2, 1),
    "BatchSampler drop_last None": lambda m: m.BatchSampler(range(5), 2, None),
    "WeightedRandomSampler num_samples 0": lambda m: m.WeightedRandomSampler([1, 2], 0),
    "WeightedRandomSampler num_samples negative": lambda m: m.WeightedRandomSampler([1, 2], -1),
    "WeightedRandomSampler num_samples float": lambda m: m.WeightedRandomSampler([1, 2], 2.0),
    "WeightedRandomSampler num_samples bool": lambda m: m.WeightedRandomSampler([1, 2], True),
    "WeightedRandomSampler replacement int": lambda m: m.WeightedRandomSampler(
        [1, 2], 2, replacement=1
    ),
    "WeightedRandomSampler 2-d weights": lambda m: m.WeightedRandomSampler([[1, 2], [3, 4]], 2),
    "WeightedRandomSampler 0-d weights": lambda m: m.WeightedRandomSampler(3.0, 2),
    "WeightedRandomSampler str weights": lambda m: m.WeightedRandomSampler(["a", "b"], 2),
    "WeightedRandomSampler negative weight": lambda m: list(m.WeightedRandomSampler([1, -1], 2)),
    "WeightedRandomSampler zero weights": lambda m: list(m.WeightedRandomSampler([0, 0], 2)),
    "WeightedRandomSampler too many without replacement": lambda m: list(
        m.WeightedRandomSampler([1, 2], 3, replacement=False)
    ),
    "SequentialSampler unsized": lambda m: list(m.SequentialSampler(5)),
    "Sampler base iter": lambda m: iter(m.Sampler()),
    "Sampler base len": lambda m: len(m.Sampler()),
    "DistributedSampler rank too large": lambda m: m.DistributedSampler(
        range(10), num_replicas=2, rank=2
    ),
    "DistributedSampler rank negative": lambda m: m.DistributedSampler(
        range(10), num_replicas=2, rank=-1
    ),
    "DistributedSampler without a process group": lambda m: m.DistributedSampler(range(10)),
    "DistributedSampler rank without a process group": lambda m: m.DistributedSampler(
        range(10), num_replicas=2
    ),
}

DATASET_ERRORS: dict[str, Callable[[ModuleType], Any]] = {
    "TensorDataset size mismatch": lambda m: m.TensorDataset(torch.zeros(3), torch.zeros(4)),
    "TensorDataset no tensors": lambda m: len(m.TensorDataset()),
    "TensorDataset index out of range": lambda m: m.TensorDataset(torch.zeros(3))[3],
    "ConcatDataset empty": lambda m: m.ConcatDataset([]),
    "ConcatDataset of an iterable": lambda m: m.ConcatDataset([range(2), Stream(3)]),
    "ConcatDataset too negative": lambda m: m.ConcatDataset([range(3)])[-4],
    "ConcatDataset unsized member": lambda m: m.ConcatDataset([range(2), 5]),
    "ChainDataset of a map dataset": lambda m: list(m.ChainDataset([Stream(2), range(3)])),
    "ChainDataset len of a map dataset": lambda m: len(m.ChainDataset([range(3)])),
    "ChainDataset len of unsized": lambda m: len(m.ChainDataset([Unsized(2)])),
    "StackDataset nothing": lambda m: m.StackDataset(),
    "StackDataset size mismatch": lambda m: m.StackDataset(range(2), range(3)),
    "StackDataset keyword size mismatch": lambda m: m.StackDataset(a=range(2), b=range(3)),
    "StackDataset args and kwargs": lambda m: m.StackDataset(range(2), a=range(2)),
    "Subset overriding __getitem__ only": _subset_overriding_getitem,
    "Subset index out of range": lambda m: m.Subset(range(3), [0, 1])[5],
    "Subset of a list, slice": lambda m: m.Subset([1, 2, 3], [0, 1])[0:2],
    "Subset of a list, list": lambda m: m.Subset([1, 2, 3], [0, 1])[[0, 1]],
    "Dataset base getitem": lambda m: m.Dataset()[0],
    "Dataset base len": lambda m: len(m.Dataset()),
    "IterableDataset base iter": lambda m: list(m.IterableDataset()),
    "random_split lengths too short": lambda m: m.random_split(range(10), [3, 3]),
    "random_split lengths too long": lambda m: m.random_split(range(10), [3, 8]),
    "random_split fractions over 1": lambda m: m.random_split(range(10), [0.5, 0.6]),
    "random_split fractions under 1": lambda m: m.random_split(range(10), [0.5, 0.4]),
    "random_split negative fraction": lambda m: m.random_split(range(10), [1.5, -0.5]),
    "random_split negative length": lambda m: [
        s.indices for s in m.random_split(range(10), [11, -1], torch.Generator().manual_seed(0))
    ],
    "random_split float counts": lambda m: m.random_split(range(3), [2.0, 1.0]),
    "random_split unsized": lambda m: m.random_split(Unsized(3), [1, 2]),
}

COLLATE_ERRORS: dict[str, Callable[[ModuleType], Any]] = {
    "str arrays": lambda m: m.default_collate([np.array(["a"]), np.array(["b"])]),
    "bytes arrays": lambda m: m.default_collate([np.array([b"a"]), np.array([b"b"])]),
    "object arrays": lambda m: m.default_collate([np.array([None, 1]), np.array([2, None])]),
    "str arrays in a dict": lambda m: m.default_collate([{"a": np.array(["x"])}] * 2),
    "sets": lambda m: m.default_collate([{1}, {2}]),
    "None": lambda m: m.default_collate([None, None]),
    "complex": lambda m: m.default_collate([1j, 2j]),
    "objects": lambda m: m.default_collate([object(), object()]),
    "lists of unequal length": lambda m: m.default_collate([[1, 2], [1]]),
    "tuples of unequal length": lambda m: m.default_collate([(1, 2, 3), (1, 2)]),
    "tensors of unequal shape": lambda m: m.default_collate([torch.zeros(3), torch.zeros(2)]),
    "arrays of unequal shape": lambda m: m.default_collate([np.zeros(3), np.zeros(4)]),
    "sparse tensors": lambda m: m.default_collate([torch.zeros(2).to_sparse()] * 2),
    "missing dict key": lambda m: m.default_collate([{"a": 1, "b": 2}, {"a": 2}]),
    "empty batch": lambda m: m.default_collate([]),
    "int too large": lambda m: m.default_collate([2**63, 1]),
    "default_convert of a set (returned)": lambda m: m.default_convert({1, 2}),
    "default_convert of a str array (returned)": lambda m: m.default_convert(np.array(["a"])),
    "in a loader": lambda m: list(m.DataLoader([{1}, {2}], batch_size=2)),
}


def _check(case: Callable[[ModuleType], Any], ns: ModuleType, *, full: bool = False) -> None:
    want, _ = recorded_warnings(lambda: case(tud))  # warnings have their own tests
    got, _ = recorded_warnings(lambda: case(ns))
    assert_same_outcome(got, want, full=full)


@pytest.mark.parametrize("case", list(LOADER_ERRORS))
def test_loader_errors(ns: ModuleType, case: str) -> None:
    _check(LOADER_ERRORS[case], ns)


@pytest.mark.parametrize("case", list(SAMPLER_ERRORS))
def test_sampler_errors(ns: ModuleType, case: str) -> None:
    _check(SAMPLER_ERRORS[case], ns)


@pytest.mark.parametrize("case", list(DATASET_ERRORS))
def test_dataset_errors(ns: ModuleType, case: str) -> None:
    _check(DATASET_ERRORS[case], ns)


@pytest.mark.parametrize("case", list(COLLATE_ERRORS))
def test_collate_errors(ns: ModuleType, case: str) -> None:
    _check(COLLATE_ERRORS[case], ns, full=True)


# Where torch's text is an accident of its implementation (torch.tensor's "new(): invalid data
# type", len() of the dataset), ladle raises torch's type in words that name the problem.
TYPE_ONLY: dict[str, tuple[Callable[[ModuleType], Any], type[Exception]]] = {
    "dataset without len": (lambda m: _first(m, 5), TypeError),
    "mixed int and str": (lambda m: m.default_collate([1, "a"]), TypeError),
}


@pytest.mark.parametrize("case", list(TYPE_ONLY))
def test_errors_of_torchs_type_in_ladles_words(ns: ModuleType, case: str) -> None:
    make, kind = TYPE_ONLY[case]
    for namespace in (ns, tud):
        with pytest.raises(kind):
            make(namespace)


def test_every_error_case_raises_in_torch() -> None:
    """Table check: the error cases do raise in torch (those marked as accepted/returned aside)."""
    tables = {**LOADER_ERRORS, **SAMPLER_ERRORS, **DATASET_ERRORS, **COLLATE_ERRORS}
    quiet = ("(accepted)", "(allowed)", "(returned)", "negative length")
    for name, case in tables.items():
        result, _ = recorded_warnings(lambda c=case: c(tud))
        assert isinstance(result, Raised) != any(q in name for q in quiet), (name, result)


# --------------------------------------------------------------------------------------------
# warnings


def _excess_workers(m: ModuleType) -> Any:
    return m.DataLoader(range(4), num_workers=len(os.sched_getaffinity(0)) + 1).num_workers


def _iterable_too_long(m: ModuleType, **kwargs: Any) -> Any:
    loader = m.DataLoader(Stream(8, length=3), **kwargs)
    return len(loader), list(loader)


WARNING_CASES: dict[str, Callable[[ModuleType], Any]] = {
    "none for a plain loader": lambda m: list(m.DataLoader(range(4), batch_size=2)),
    "excessive num_workers": _excess_workers,
    "IterableDataset longer than its len, no batching": lambda m: _iterable_too_long(
        m, batch_size=None
    ),
    "IterableDataset longer than its len, batched": lambda m: _iterable_too_long(m, batch_size=2),
    "IterableDataset longer than its len, len not asked": lambda m: list(
        m.DataLoader(Stream(5, length=3), batch_size=None)
    ),
    "pin_memory without accelerator": lambda m: list(
        m.DataLoader(range(4), batch_size=2, pin_memory=True)
    ),
    "pin_memory_device": lambda m: list(
        m.DataLoader(range(4), batch_size=2, pin_memory=True, pin_memory_device="cuda")
    ),
    "pin_memory_device without pin_memory": lambda m: list(
        m.DataLoader(range(4), batch_size=2, pin_memory_device="cuda")
    ),
    "random_split empty split": lambda m: [
        len(s) for s in m.random_split(range(3), [0.5, 0.5, 0.0], torch.Generator())
    ],
    "ConcatDataset.cummulative_sizes": lambda m: m.ConcatDataset([range(2)]).cummulative_sizes,
}


@pytest.mark.parametrize("case", list(WARNING_CASES))
def test_warnings(ns: ModuleType, case: str) -> None:
    differential(lambda m: recorded_warnings(lambda: WARNING_CASES[case](m))[1], ns)
    differential(lambda m: recorded_warnings(lambda: WARNING_CASES[case](m))[0], ns)
