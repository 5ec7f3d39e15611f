"""num_workers > 0: equal to the single-process reference, and clean on every exit path."""

from __future__ import annotations

import gc
import random
from typing import Any

import numpy as np
import pytest
from workers_support import Blocks, Pairs, PickleCounting, child_pids, our_segments, worker_threads

import ladle
from ladle import DataLoader, TensorDataset

WORKER_TYPES = ["process", "thread"]


@pytest.fixture(autouse=True)
def nothing_left_behind():  # type: ignore[no-untyped-def]
    yield
    gc.collect()
    assert child_pids() == [], "a worker process outlived its loader"
    assert our_segments() == [], "a shared-memory segment outlived its loader"
    for thread in worker_threads():
        thread.join(5)
    assert worker_threads() == [], "a worker thread outlived its loader"


def as_lists(batches: list[Any]) -> list[Any]:
    def leaf(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, list):
            return [leaf(v) for v in value]
        return value

    return [leaf(b) for b in batches]


def describe(batch: Any) -> Any:
    """Structure, container types, dtypes and values, for exact comparisons."""
    if isinstance(batch, np.ndarray):
        return (batch.dtype.name, batch.tolist())
    if isinstance(batch, dict):
        return {key: describe(value) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return (type(batch).__name__, [describe(value) for value in batch])
    return (type(batch).__name__, batch)


def datasets() -> dict[str, tuple[Any, dict[str, Any]]]:
    x = np.arange(57 * 40, dtype=np.float32).reshape(57, 40) * 1.5
    return {
        "map": (Pairs(57), {"batch_size": 5}),
        "getitems": (TensorDataset(x, np.arange(57)), {"batch_size": 5}),
        "iterable": (Blocks(57, 5), {"batch_size": 5}),
        "unbatched": (Pairs(9), {"batch_size": None}),
    }


@pytest.mark.parametrize("kind", ["map", "getitems", "iterable", "unbatched"])
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("num_workers", [1, 2, 3])
@pytest.mark.parametrize("in_order", [True, False])
def test_batches_equal_the_single_process_reference(
    kind: str, worker_type: str, num_workers: int, in_order: bool
) -> None:
    dataset, kwargs = datasets()[kind]
    reference = [describe(b) for b in DataLoader(dataset, **kwargs)]
    loader = DataLoader(
        dataset, num_workers=num_workers, worker_type=worker_type, in_order=in_order, **kwargs
    )
    got = [describe(b) for b in loader]
    if in_order:
        assert got == reference
    else:
        assert sorted(map(repr, got)) == sorted(map(repr, reference))


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_shuffled_seeded_passes_match_and_persistent_workers_are_reused(worker_type: str) -> None:
    def epochs(**kwargs: Any) -> list[Any]:
        loader = DataLoader(Pairs(40), batch_size=4, shuffle=True, seed=5, **kwargs)
        try:
            return [as_lists(list(loader)) for _ in range(3)]
        finally:
            loader.close()

    reference = epochs()
    assert epochs(num_workers=2, worker_type=worker_type) == reference
    assert epochs(num_workers=2, worker_type=worker_type, persistent_workers=True) == reference

    loader = DataLoader(Pairs(8), batch_size=2, num_workers=2, persistent_workers=True)
    first = iter(loader)
    pids = list(first.worker_pids)  # type: ignore[union-attr]
    list(first)
    second = iter(loader)
    assert second.worker_pids == pids  # type: ignore[union-attr]
    list(second)
    loader.close()


def test_batches_are_views_of_shared_memory_and_stay_valid_while_held() -> None:
    loader = DataLoader(Pairs(64, (3, 64, 64)), batch_size=8, num_workers=2)
    held = list(loader)  # every batch kept: none may be recycled under our feet
    for k, (images, labels) in enumerate(held):
        assert labels.tolist() == list(range(8 * k, 8 * k + 8))
        np.testing.assert_array_equal(images[:, 0, 0, 0], labels.astype(np.float32))
    views = [b[0] for b in held[2:]]
    assert all(not v.flags.owndata for v in views)
    assert any(type(v.base).__name__ == "ndarray" and v.base.base is not None for v in views)
    del held, views


def test_slabs_are_recycled_when_batches_are_dropped() -> None:
    loader = DataLoader(Pairs(400, (3, 64, 64)), batch_size=8, num_workers=2)
    iterator = iter(loader)
    segments = set()
    for _ in iterator:
        segments.update(our_segments())
    # prefetch depth (2 workers x 2) plus a few in flight, not one per batch (50 batches)
    assert 0 < len(segments) <= 10


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_worker_info_init_fn_and_seeds(worker_type: str) -> None:
    class Probe(ladle.Dataset[Any]):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> Any:
            info = ladle.get_worker_info()
            assert info is not None and info.dataset is not None
            return info.id, info.num_workers, info.seed, random.random(), np.random.random()

    loader = DataLoader(
        Probe(), batch_size=1, num_workers=2, worker_type=worker_type, seed=9, collate_fn=list
    )
    rows = [batch[0] for batch in loader]
    assert {r[0] for r in rows} == {0, 1} and {r[1] for r in rows} == {2}
    seeds = {r[0]: r[2] for r in rows}
    assert seeds[1] == seeds[0] + 1, "torch's rule: base seed + worker id"
    again = [batch[0] for batch in loader]
    assert {r[2] for r in again} != set(seeds.values()), "each pass draws a new base seed"
    if worker_type == "process":  # each worker's global RNGs are seeded differently
        by_worker = {r[0]: r[3] for r in rows}
        assert by_worker[0] != by_worker[1]
    twin = DataLoader(
        Probe(), batch_size=1, num_workers=2, worker_type=worker_type, seed=9, collate_fn=list
    )
    assert [b[0][2] for b in twin] == [r[2] for r in rows], "seed fixes the workers' seeds"


def init_marker(worker_id: int) -> None:
    random.seed(1000 + worker_id)


def test_worker_init_fn_runs_in_each_worker_after_seeding() -> None:
    class Draw(ladle.Dataset[float]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> float:
            return random.random()

    loader = DataLoader(Draw(), batch_size=1, num_workers=2, worker_init_fn=init_marker)
    draws = [b.tolist()[0] for b in loader]
    expected = [random.Random(1000 + w).random() for w in (0, 1)]
    assert draws == expected


def test_fork_never_pickles_the_dataset_and_spawn_pickles_it_once() -> None:
    PickleCounting.pickles = 0
    dataset = PickleCounting(12)
    list(DataLoader(dataset, batch_size=3, num_workers=3, multiprocessing_context="fork"))
    assert PickleCounting.pickles == 0
    got = list(DataLoader(dataset, batch_size=3, num_workers=3, multiprocessing_context="spawn"))
    assert PickleCounting.pickles == 1
    assert [b[1].tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_worker_exception_keeps_its_type_and_says_where(worker_type: str) -> None:
    class Broken(Pairs):
        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            if i == 7:
                raise KeyError(f"sample {i} has no label")
            return super().__getitem__(i)

    it = iter(DataLoader(Broken(12), batch_size=4, num_workers=2, worker_type=worker_type))
    assert next(it)[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="sample 7 has no label") as caught:
        next(it)
    notes = "".join(getattr(caught.value, "__notes__", []))
    assert "ladle worker 1" in notes
    assert "samples [4, 5, 6, 7]" in notes
    assert "__getitem__" in notes and "Traceback" in notes
    assert next(it)[1].tolist() == [8, 9, 10, 11], "the pass goes on after a sample error"


def test_unpicklable_exception_still_arrives() -> None:
    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a)

    class Broken(Pairs):
        def __getitem__(self, i: int) -> Any:
            raise Odd(1, 2)

    with pytest.raises(RuntimeError, match="Odd in ladle worker 0"):
        next(iter(DataLoader(Broken(2), batch_size=2, num_workers=1)))


def test_pin_memory_with_workers_warns_once_without_accelerator() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("an accelerator is present: pinning is real here")
    loader = DataLoader(Pairs(4), batch_size=2, num_workers=1, pin_memory=True)
    with pytest.warns(UserWarning, match="no accelerator") as record:
        list(loader)
        list(loader)
    assert len(record) == 1


def test_pickled_payload_fallback_for_small_and_odd_batches() -> None:
    class Mixed(ladle.Dataset[Any]):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> Any:
            return {"name": f"s{i}", "small": np.int16(i), "ids": [i, i + 1]}

    got = list(DataLoader(Mixed(), batch_size=2, num_workers=2))
    reference = list(DataLoader(Mixed(), batch_size=2))
    assert describe(got) == describe(reference)
    assert describe(got)[1][0]["small"] == ("int16", [0, 1])


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("kind", ["map", "iterable"])
def test_abandoned_pass_does_not_leak_into_the_next(worker_type: str, kind: str) -> None:
    dataset, kwargs = datasets()[kind]
    reference = [describe(b) for b in DataLoader(dataset, **kwargs)]
    loader = DataLoader(
        dataset, num_workers=2, worker_type=worker_type, persistent_workers=True, **kwargs
    )
    try:
        for k, _ in enumerate(loader):
            if k == 1:
                break  # tasks of this pass are still in flight
        assert [describe(b) for b in loader] == reference
        assert [describe(b) for b in loader] == reference
    finally:
        loader.close()


def test_two_loaders_with_workers_at_once() -> None:
    a = DataLoader(Pairs(24), batch_size=4, num_workers=1)
    b = DataLoader(Pairs(24), batch_size=4, num_workers=2, shuffle=True, seed=1)
    pairs = list(zip(a, b, strict=True))
    assert [x[1].tolist() for x, _ in pairs] == [list(range(k, k + 4)) for k in range(0, 24, 4)]
    assert sorted(i for _, y in pairs for i in y[1].tolist()) == list(range(24))


def test_no_segment_is_left_in_dev_shm_after_a_full_pass() -> None:
    loader = DataLoader(Pairs(64, (3, 64, 64)), batch_size=8, num_workers=2)
    first = list(loader)
    assert our_segments() == [], "a finished pass unlinks every name, held batches or not"
    second = list(loader)  # forked workers of the next pass reuse the memory, by inheritance
    assert our_segments() == []
    for k, ((x1, y1), (x2, y2)) in enumerate(zip(first, second, strict=True)):
        assert y1.tolist() == y2.tolist() == list(range(8 * k, 8 * k + 8))
        np.testing.assert_array_equal(x1, x2)
    del first, second
    loader.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_start_method(method: str) -> None:
    dataset, kwargs = datasets()["getitems"]
    reference = [describe(b) for b in DataLoader(dataset, **kwargs)]
    loader = DataLoader(dataset, num_workers=2, multiprocessing_context=method, **kwargs)
    assert [describe(b) for b in loader] == reference


def failing_init(worker_id: int) -> None:
    raise OSError(f"worker {worker_id} cannot open its database")


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_a_failing_worker_init_fn_is_raised_not_hung(worker_type: str) -> None:
    loader = DataLoader(
        Pairs(8), batch_size=2, num_workers=2, worker_type=worker_type, worker_init_fn=failing_init
    )
    with pytest.raises(OSError, match="cannot open its database") as caught:
        next(iter(loader))
    assert "failed to start" in "".join(caught.value.__notes__)
