"""The DataLoader's and the samplers' arguments: bad values are refused and named, at
construction and on assignment; good ones (NumPy integers too) pass; torch's warnings."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ladle
from ladle import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

DS = list(range(10))

Row = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], type[Exception], str]

BAD: list[Row] = [
    (DataLoader, (DS,), {"num_workers": -1}, ValueError, "num_workers=-1"),
    (DataLoader, (DS,), {"num_workers": 1.0}, TypeError, "num_workers=1.0"),
    (DataLoader, (DS,), {"num_workers": "2"}, TypeError, "num_workers='2'"),
    (DataLoader, (DS,), {"num_workers": True}, TypeError, "num_workers=True"),
    (DataLoader, (DS,), {"batch_size": 0}, ValueError, "batch_size=0"),
    (DataLoader, (DS,), {"batch_size": 2.0}, ValueError, "batch_size=2.0"),
    (DataLoader, (DS,), {"batch_size": -3}, ValueError, "batch_size=-3"),
    (DataLoader, (DS,), {"num_workers": 2, "prefetch_factor": 0}, ValueError, "prefetch_factor=0"),
    (DataLoader, (DS,), {"num_workers": 2, "prefetch_factor": 1.5}, TypeError, "prefetch_factor"),
    (DataLoader, (DS,), {"prefetch_factor": 2}, ValueError, "prefetch_factor=2"),
    (
        DataLoader,
        (DS,),
        {"num_workers": 2, "persistent_workers": "no"},
        TypeError,
        "persistent_workers='no'",
    ),
    (DataLoader, (DS,), {"persistent_workers": True}, ValueError, "persistent_workers"),
    (DataLoader, (DS,), {"num_workers": 2, "timeout": math.nan}, ValueError, "timeout=nan"),
    (DataLoader, (DS,), {"num_workers": 2, "timeout": math.inf}, ValueError, "timeout=inf"),
    (DataLoader, (DS,), {"num_workers": 2, "timeout": -1}, ValueError, "timeout=-1"),
    (DataLoader, (DS,), {"num_workers": 2, "timeout": "5"}, TypeError, "timeout='5'"),
    (DataLoader, (DS,), {"timeout": 5}, ValueError, "timeout=5"),
    (DataLoader, (DS,), {"in_order": "no"}, TypeError, "in_order='no'"),
    (DataLoader, (DS,), {"pin_memory": "yes"}, TypeError, "pin_memory='yes'"),
    (DataLoader, (DS,), {"pin_memory_device": 5}, TypeError, "pin_memory_device=5"),
    (DataLoader, (DS,), {"drop_last": "no"}, ValueError, "drop_last='no'"),
    (DataLoader, (DS,), {"worker_type": "proc"}, ValueError, "worker_type='proc'"),
    (DataLoader, (DS,), {"seed": -1}, ValueError, "seed=-1"),
    (DataLoader, (DS,), {"seed": 1.5}, TypeError, "seed=1.5"),
    (DataLoader, (DS,), {"collate_fn": 5}, TypeError, "collate_fn=5"),
    (DataLoader, (DS,), {"worker_init_fn": 5}, TypeError, "worker_init_fn=5"),
    (DataLoader, (DS,), {"sampler": 5}, TypeError, "sampler=5"),
    (DataLoader, (DS,), {"batch_sampler": 5}, TypeError, "batch_sampler=5"),
    (DataLoader, (5,), {}, TypeError, "dataset=5"),
    (DataLoader, (DS,), {"output": "np"}, ValueError, "output='np'"),
    (DataLoader, (DS,), {"multiprocessing_context": "fork"}, ValueError, "num_workers=0"),
    (
        DataLoader,
        (DS,),
        {"num_workers": 1, "multiprocessing_context": "nope"},
        ValueError,
        "multiprocessing_context='nope'",
    ),
    (DataLoader, (DS,), {"shuffle": True, "sampler": [0]}, ValueError, "shuffle"),
    (DataLoader, (DS,), {"batch_sampler": [[0]], "batch_size": 2}, ValueError, "batch_sampler"),
    (DataLoader, (DS,), {"batch_size": None, "drop_last": True}, ValueError, "drop_last"),
    (DataLoader, (DS,), {"seed": 1, "generator": np.random.default_rng()}, ValueError, "seed"),
    (RandomSampler, (DS,), {"replacement": "no"}, TypeError, "replacement='no'"),
    (RandomSampler, (DS,), {"num_samples": 1.5}, ValueError, "num_samples=1.5"),
    (RandomSampler, (DS,), {"num_samples": 0}, ValueError, "num_samples=0"),
    (RandomSampler, (5,), {}, TypeError, "data_source=5"),
    (RandomSampler, ([],), {}, ValueError, "num_samples"),
    (SequentialSampler, (5,), {}, TypeError, "data_source=5"),
    (SubsetRandomSampler, ([1.5, 2],), {}, TypeError, "indices=[1.5, 2]"),
    (SubsetRandomSampler, (5,), {}, TypeError, "indices=5"),
    (WeightedRandomSampler, ([1, math.nan], 2), {}, ValueError, "weights"),
    (WeightedRandomSampler, ([1, -1], 2), {}, ValueError, "weights"),
    (WeightedRandomSampler, ([1, 2], 0), {}, ValueError, "num_samples=0"),
    (WeightedRandomSampler, ([1, 2], 2), {"replacement": 1}, ValueError, "replacement=1"),
    (WeightedRandomSampler, ([1, 0], 2), {"replacement": False}, ValueError, "num_samples=2"),
    (BatchSampler, (DS, 1.5, False), {}, ValueError, "batch_size=1.5"),
    (BatchSampler, (DS, 2, "no"), {}, ValueError, "drop_last='no'"),
    (DistributedSampler, (DS, 0, 0), {}, ValueError, "num_replicas=0"),
    (DistributedSampler, (DS, 2, 5), {}, ValueError, "rank 5"),
    (DistributedSampler, (DS, 2, 1.5), {}, ValueError, "rank=1.5"),
    (DistributedSampler, (DS, 2, 0), {"shuffle": "no"}, ValueError, "shuffle='no'"),
    (DistributedSampler, (DS, 2, 0), {"seed": -1}, ValueError, "seed=-1"),
    (DistributedSampler, (5, 2, 0), {}, TypeError, "dataset=5"),
]


@pytest.mark.parametrize(
    ("call", "args", "kwargs", "kind", "needle"),
    BAD,
    ids=[f"{row[0].__name__}-{row[4]}" for row in BAD],
)
def test_bad_arguments_are_refused_and_named(
    call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], kind: type, needle: str
) -> None:
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    assert needle in str(caught.value)


def test_numpy_integers_are_accepted_as_python_ints() -> None:
    loader = DataLoader(
        DS, batch_size=np.int64(4), num_workers=np.int64(1), prefetch_factor=np.int32(3)
    )
    assert (loader.batch_size, loader.num_workers, loader.prefetch_factor) == (4, 1, 3)
    assert all(type(v) is int for v in (loader.batch_size, loader.num_workers))
    assert len(list(loader)) == 3
    assert len(RandomSampler(DS, num_samples=np.int64(3), seed=0)) == 3
    assert len(DistributedSampler(DS, np.int64(2), np.int64(1))) == 5


@pytest.mark.parametrize(
    ("name", "value", "kind", "needle"),
    [
        ("num_workers", -1, ValueError, "num_workers=-1"),
        ("num_workers", 1.5, TypeError, "num_workers=1.5"),
        ("timeout", math.nan, ValueError, "timeout=nan"),
        ("worker_type", "fiber", ValueError, "worker_type='fiber'"),
        ("collate_fn", 3, TypeError, "collate_fn=3"),
        ("batch_size", 4, ValueError, "batch_size attribute should not be set"),
        ("sampler", [0], ValueError, "sampler attribute should not be set"),
        ("dataset", DS, ValueError, "dataset attribute should not be set"),
        ("drop_last", True, ValueError, "drop_last attribute should not be set"),
        ("shuffle", True, ValueError, "shuffle attribute should not be set"),
        ("persistent_workers", True, ValueError, "persistent_workers attribute"),
        ("seed", 5, ValueError, "seed attribute should not be set"),
    ],
)
def test_assignment_is_checked_and_leaves_the_loader_as_it_was(
    name: str, value: Any, kind: type, needle: str
) -> None:
    loader = DataLoader(DS, batch_size=2)
    with pytest.raises(kind) as caught:
        setattr(loader, name, value)
    assert needle in str(caught.value)
    assert len(loader) == 5
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_assigned_settings_take_effect() -> None:
    loader = DataLoader(DS, batch_size=5)
    loader.num_workers = 2
    loader.worker_type = "thread"
    loader.collate_fn = list
    assert loader.num_workers == 2 and loader.prefetch_factor == 2
    assert list(loader) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    loader.num_workers = 0
    assert loader.prefetch_factor is None
    assert list(loader) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    loader.tag = "a framework's own attribute"  # type: ignore[attr-defined]
    assert loader.tag == "a framework's own attribute"  # type: ignore[attr-defined]


def test_more_workers_than_cpus_warns_as_torch_does() -> None:
    cpus = len(os.sched_getaffinity(0))
    loader = DataLoader(DS, batch_size=5, num_workers=cpus + 1)
    with pytest.warns(UserWarning, match=f"will create {cpus + 1} worker processes"):
        assert len(list(loader)) == 2


class Overlong(ladle.IterableDataset[int]):
    """Claims 4 samples, yields 6."""

    def __len__(self) -> int:
        return 4

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(6))


def test_an_iterable_longer_than_its_len_warns_as_torch_does() -> None:
    loader = DataLoader(Overlong(), batch_size=None)
    assert len(loader) == 4
    with pytest.warns(UserWarning, match="was reported to be 4") as record:
        assert list(loader) == list(range(6))
    assert len(record) == 2, "one warning per batch past the length, as torch's"
    quiet = DataLoader(Overlong(), batch_size=None)  # len() never asked for: torch is silent
    assert [sample for sample in quiet] == list(range(6))  # list() would ask len()
