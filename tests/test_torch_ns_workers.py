"""``ladle.torch`` with worker processes behaves as torch's DataLoader with ``num_workers=2``.

Worker starts are expensive (~0.3 s each), so each pipeline runs once per namespace (a
module-scoped cache) and several tests read different fields of its result: the worker info
seen inside workers through torch's and the namespace's ``get_worker_info()``, the seeds
(``base_seed + id``), ``torch.initial_seed()``, the draws of torch/random/NumPy in a worker, the
batches, the global RNG state afterwards. Every loader has ``timeout=60``; after each run the
test process must have no child left (helpers of multiprocessing aside), else they are killed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.utils.data as tud
from torch_ns_support import (
    FailAt,
    Samples,
    Sharded,
    Stream,
    WhoAmI,
    differential,
    namespace_under_test,
    outcome,
    record_worker_init,
    recorded_warnings,
    wait_no_children,
)

SEED = 4321
WORKERS = {"num_workers": 2, "timeout": 60}


@pytest.fixture(scope="module")
def ns() -> ModuleType:
    return namespace_under_test()


def _digest(state: torch.Tensor) -> str:
    return hashlib.sha1(state.numpy().tobytes()).hexdigest()[:16]


def _info(m: ModuleType) -> dict[str, Any]:
    torch.manual_seed(SEED)
    loader = m.DataLoader(
        WhoAmI(6, m.__name__), batch_size=None, worker_init_fn=record_worker_init, **WORKERS
    )
    records = list(loader)
    return {"records": records, "global state": _digest(torch.get_rng_state())}


def _generator(m: ModuleType) -> dict[str, Any]:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    loader = m.DataLoader(WhoAmI(4, m.__name__), batch_size=None, generator=g, **WORKERS)
    records = list(loader)
    return {
        "records": records,
        "global state": _digest(torch.get_rng_state()),
        "generator state": _digest(g.get_state()),
    }


def _sharded(m: ModuleType) -> dict[str, Any]:
    return {"batches": list(m.DataLoader(Sharded(11), batch_size=2, **WORKERS))}


def _mixed(m: ModuleType) -> dict[str, Any]:
    torch.manual_seed(SEED)
    loader = m.DataLoader(Samples("nested mix", 7), batch_size=3, shuffle=True, **WORKERS)
    return {"batches": list(loader), "global state": _digest(torch.get_rng_state())}


def _persistent(m: ModuleType) -> dict[str, Any]:
    torch.manual_seed(SEED)
    loader = m.DataLoader(
        WhoAmI(6, m.__name__), batch_size=2, shuffle=True, persistent_workers=True, **WORKERS
    )
    epochs = [list(loader), list(loader)]
    return {"epochs": epochs, "global state": _digest(torch.get_rng_state())}


def _failing(m: ModuleType) -> dict[str, Any]:
    loader = m.DataLoader(FailAt(8, 3, ValueError, "bad sample 3"), batch_size=1, **WORKERS)
    return {"error": outcome(lambda: list(loader))}


def _unsharded_stream(m: ModuleType) -> dict[str, Any]:
    loader = m.DataLoader(Stream(3, length=3), batch_size=None, **WORKERS)

    def run() -> Any:
        return len(loader), list(loader)

    result, caught = recorded_warnings(run)
    return {"batches": result, "warnings": caught}


RUNS: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "info": _info,
    "generator": _generator,
    "sharded": _sharded,
    "mixed": _mixed,
    "persistent": _persistent,
    "failing": _failing,
    "unsharded stream": _unsharded_stream,
}


@pytest.fixture(scope="module")
def runs() -> Any:
    """runs(m, name): the result of pipeline ``name`` with namespace ``m``, computed once."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def get(m: ModuleType, name: str) -> dict[str, Any]:
        key = (m.__name__, name)
        if key not in cache:
            result = dict(RUNS[name](m))
            gc.collect()  # persistent workers shut down with their loader
            left = wait_no_children()
            for pid in left:  # ours: started by this run's loader
                os.kill(pid, signal.SIGKILL)
            result["children left"] = len(left)
            cache[key] = result
        return cache[key]

    yield get
    assert wait_no_children() == []


def _field(run: str, *path: Any) -> Callable[..., Callable[[ModuleType], Any]]:
    def pick(runs: Any) -> Callable[[ModuleType], Any]:
        def read(m: ModuleType) -> Any:
            value: Any = runs(m, run)
            for key in path:
                value = value[key] if not callable(key) else key(value)
            return value

        return read

    return pick


def _records(key: str) -> Callable[[list[dict[str, Any]]], Any]:
    return lambda records: [r[key] for r in records]


def _without_numpy(epochs: list[list[dict[str, Any]]]) -> Any:
    """The batches without their NumPy draws, which have their own test."""
    return [[{k: v for k, v in b.items() if k != "numpy_draw"} for b in e] for e in epochs]


FIELDS: dict[str, Callable[..., Callable[[ModuleType], Any]]] = {
    "info: sample order": _field("info", "records", _records("index")),
    "info: torch get_worker_info": _field("info", "records", _records("torch_info")),
    "info: ns get_worker_info": _field("info", "records", _records("ns_info")),
    "info: torch.initial_seed": _field("info", "records", _records("initial_seed")),
    "info: worker_init_fn ran once per worker": _field("info", "records", _records("init_ids")),
    "info: torch draws": _field("info", "records", _records("torch_draw")),
    "info: random draws": _field("info", "records", _records("random_draw")),
    "info: numpy draws": _field("info", "records", _records("numpy_draw")),
    "info: global state": _field("info", "global state"),
    "info: children left": _field("info", "children left"),
    "generator: worker info": _field("generator", "records", _records("torch_info")),
    "generator: torch.initial_seed": _field("generator", "records", _records("initial_seed")),
    "generator: global state": _field("generator", "global state"),
    "generator: generator state": _field("generator", "generator state"),
    "sharded: batches": _field("sharded", "batches"),
    "mixed: batches": _field("mixed", "batches"),
    "mixed: global state": _field("mixed", "global state"),
    "persistent: epochs, numpy draws aside": _field("persistent", "epochs", _without_numpy),
    "persistent: global state": _field("persistent", "global state"),
    "persistent: children left": _field("persistent", "children left"),
    "failing: exception": _field("failing", "error"),
    "failing: children left": _field("failing", "children left"),
    "unsharded stream: batches": _field("unsharded stream", "batches"),
    "unsharded stream: warnings": _field("unsharded stream", "warnings"),
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_workers(ns: ModuleType, runs: Any, field: str) -> None:
    differential(FIELDS[field](runs), ns)


def test_sharded_stream_yields_each_sample_once(ns: ModuleType, runs: Any) -> None:
    for m in (tud, ns):
        samples = sorted(int(x) for batch in runs(m, "sharded")["batches"] for x in batch)
        assert samples == list(range(11)), f"{m.__name__}: {samples}"


def test_worker_seeds_are_base_seed_plus_id(ns: ModuleType, runs: Any) -> None:
    """Within one run the seeds of workers 0 and 1 differ by exactly 1, and each is the
    worker's torch.initial_seed()."""
    for m in (tud, ns):
        seeds = {}
        for record in runs(m, "info")["records"]:
            info = record["torch_info"]
            assert record["initial_seed"] == info["seed"], m.__name__
            seeds[info["id"]] = info["seed"]
        assert sorted(seeds) == [0, 1] and seeds[1] == seeds[0] + 1, (m.__name__, seeds)
