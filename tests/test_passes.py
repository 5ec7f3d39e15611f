"""Passes of one loader: independent of each other, of abandoned passes and of threads.

Each case that starts worker processes runs in a subprocess with a hard time limit.
"""

from __future__ import annotations

import json
import pickle
import threading
from typing import Any

import numpy as np
import pytest
from script_support import run_json

import ladle
from ladle.testing import assert_batches_equal

WORKERS = [(0, "process"), (2, "thread"), (2, "process")]


def _flat(batches: list[Any]) -> list[int]:
    return [int(i) for batch in batches for i in np.asarray(batch).ravel()]


def test_two_live_iterators_are_independent() -> None:
    result = run_json(
        """
        import json, ladle
        out = {}
        for workers, kind in [(0, "process"), (2, "thread"), (2, "process")]:
            loader = ladle.DataLoader(list(range(20)), batch_size=4, num_workers=workers,
                                      worker_type=kind)
            pairs = [(a.tolist(), b.tolist()) for a, b in zip(loader, loader)]
            nested = [(a.tolist(), b.tolist()) for a in loader for b in loader]
            out[f"{workers}-{kind}"] = [len(pairs), pairs == [(b, b) for b, _ in pairs],
                                        len(nested)]
        print(json.dumps(out))
        """
    )
    assert result == {key: [5, True, 25] for key in ("0-process", "2-thread", "2-process")}


def test_a_newer_pass_over_persistent_workers_closes_the_older_loudly() -> None:
    result = run_json(
        """
        import json, ladle
        loader = ladle.DataLoader(list(range(20)), batch_size=4, num_workers=2,
                                  persistent_workers=True)
        first = iter(loader)
        head = next(first).tolist()
        second = iter(loader)
        try:
            next(first)
            error = None
        except ladle.LoaderClosedError as caught:
            error = str(caught)
        print(json.dumps({"head": head, "error": error,
                          "second": [b.tolist() for b in second],
                          "again": [b.tolist() for b in loader]}))
        """
    )
    whole = [list(range(i, i + 4)) for i in range(0, 20, 4)]
    assert result["head"] == whole[0]
    assert "persistent workers" in result["error"] and "persistent_workers=False" in result["error"]
    assert result["second"] == whole
    assert result["again"] == whole


@pytest.mark.parametrize(("workers", "kind"), WORKERS)
def test_a_thrown_away_iter_changes_nothing(workers: int, kind: str) -> None:
    def make() -> ladle.DataLoader:
        return ladle.DataLoader(
            list(range(200)),
            batch_size=16,
            shuffle=True,
            seed=0,
            num_workers=workers,
            worker_type=kind if workers else "process",
        )

    reference = make()
    expected = [list(reference) for _ in range(2)]
    loader = make()
    iter(loader)  # what Lightning does before every fit
    assert loader.state_dict() == reference_state(make)
    iterator = iter(loader)
    head = [next(iterator) for _ in range(3)]
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (0, 3)
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(state)))
    rest = list(resumed)
    assert_batches_equal(head + rest, expected[0])
    assert sorted(_flat(head + rest)) == list(range(200))
    assert_batches_equal(list(resumed), expected[1])
    loader.close()


def reference_state(make: Any) -> dict[str, Any]:
    state: dict[str, Any] = make().state_dict()
    return state


def test_a_thrown_away_iter_keeps_a_loaded_state_pending() -> None:
    def make() -> ladle.DataLoader:
        return ladle.DataLoader(list(range(40)), batch_size=4, shuffle=True, seed=1)

    loader = make()
    iterator = iter(loader)
    head = [next(iterator) for _ in range(4)]
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    iter(resumed)  # a framework's probe
    assert resumed.state_dict() == state
    assert_batches_equal(head + list(resumed), list(make()))


def test_a_broken_off_pass_counts_as_its_epoch() -> None:
    loader = ladle.DataLoader(list(range(64)), batch_size=8, shuffle=True, seed=3)
    firsts = []
    for _ in range(3):
        for batch in loader:
            firsts.append(batch.tolist())
            break
    assert len({tuple(first) for first in firsts}) == 3, "each epoch its own shuffle"
    assert loader.state_dict()["epoch"] == 2


@pytest.mark.parametrize(("workers", "kind"), [(0, "process"), (2, "thread")])
def test_set_epoch_around_abandoned_passes_gives_each_epoch_its_shuffle(
    workers: int, kind: str
) -> None:
    sampler = ladle.RandomSampler(range(64), seed=5)
    loader = ladle.DataLoader(
        list(range(64)), batch_size=8, sampler=sampler, num_workers=workers, worker_type=kind
    )
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)  # what Lightning and accelerate do
        iter(loader)  # a probe, thrown away
        epochs.append(_flat(list(loader)))
    direct = ladle.RandomSampler(range(64), seed=5)
    assert epochs == [direct.epoch_order(epoch).tolist() for epoch in range(3)]


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_two_threads_each_iterating_one_loader(kind: str) -> None:
    result = run_json(
        f"""
        import json, threading, ladle
        loader = ladle.DataLoader(list(range(48)), batch_size=4, num_workers=2,
                                  worker_type={kind!r})
        got, errors = {{}}, []
        def run(name):
            try:
                got[name] = [b.tolist() for _ in range(3) for b in loader]
            except BaseException as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=run, args=(n,)) for n in "ab"]
        for t in threads: t.start()
        for t in threads: t.join(60)
        print(json.dumps({{"alive": [t.is_alive() for t in threads], "errors": errors,
                          "a": got.get("a"), "b": got.get("b")}}))
        """
    )
    whole = [list(range(i, i + 4)) for i in range(0, 48, 4)] * 3
    assert result == {"alive": [False, False], "errors": [], "a": whole, "b": whole}


@pytest.mark.parametrize(("workers", "kind"), WORKERS)
def test_one_iterator_shared_by_two_threads_hands_out_each_batch_once(
    workers: int, kind: str
) -> None:
    result = run_json(
        f"""
        import json, threading, ladle
        loader = ladle.DataLoader(list(range(400)), batch_size=2, num_workers={workers},
                                  worker_type={kind!r})
        iterator = iter(loader)
        seen, errors = [], []
        def run():
            try:
                for batch in iterator:
                    seen.extend(batch.tolist())
            except BaseException as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join(60)
        print(json.dumps({{"errors": errors, "seen": sorted(seen)}}))
        """
    )
    assert result == {"errors": [], "seen": list(range(400))}


def test_thread_workers_in_two_threads_at_once_in_process() -> None:
    loader = ladle.DataLoader(list(range(40)), batch_size=5, num_workers=2, worker_type="thread")
    results: dict[int, list[int]] = {}

    def run(name: int) -> None:
        results[name] = _flat(list(loader))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: list(range(40)) for n in range(3)}


def test_a_loader_pickles_after_an_epoch_and_goes_on_where_it_stood() -> None:
    loader = ladle.DataLoader(list(range(30)), batch_size=4, shuffle=True, seed=2, num_workers=0)
    list(loader)
    iterator = iter(loader)
    next(iterator)
    clone = pickle.loads(pickle.dumps(loader))
    assert clone.state_dict() == loader.state_dict()
    assert_batches_equal(list(clone), list(iterator))
    threads = ladle.DataLoader(list(range(8)), batch_size=4, num_workers=2, worker_type="thread")
    list(threads)
    assert _flat(list(pickle.loads(pickle.dumps(threads)))) == list(range(8))


def test_a_dropped_loader_with_persistent_workers_stops_them() -> None:
    result = run_json(
        """
        import json, threading, ladle
        from workers_support import Pairs, child_pids, worker_threads

        def evaluate(kind):
            loader = ladle.DataLoader(Pairs(32), batch_size=8, num_workers=2,
                                      persistent_workers=True, worker_type=kind)
            return sum(len(batch[1]) for batch in loader)

        counts = []
        for kind in ("process", "thread", "process"):
            assert evaluate(kind) == 32
            for thread in worker_threads():
                thread.join(5)
            counts.append([len(child_pids()), len(worker_threads())])
        print(json.dumps(counts))
        """
    )
    assert result == [[0, 0]] * 3, "no gc.collect() needed, as in torch"


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_out_of_order_persistent_passes_after_an_abandoned_one_are_whole(kind: str) -> None:
    result = run_json(
        f"""
        import itertools, json, ladle
        loader = ladle.DataLoader(list(range(40)), batch_size=4, num_workers=2,
                                  persistent_workers=True, in_order=False, worker_type={kind!r})
        counts = [len(list(loader)), len(list(itertools.islice(loader, 2)))]
        counts += [sorted(int(i) for b in loader for i in b) == list(range(40)) for _ in range(3)]
        print(json.dumps(counts))
        """
    )
    assert result == [10, 2, True, True, True]


def test_batches_of_32768_indices_do_not_deadlock_the_pipes() -> None:
    total = run_json(
        """
        import json, ladle
        loader = ladle.DataLoader(list(range(300_000)), batch_size=32768, num_workers=2,
                                  timeout=30)
        print(json.dumps(sum(len(batch) for batch in loader)))
        """,
        timeout=120,
    )
    assert total == 300_000


def test_persistent_workers_broken_off_every_epoch_stay_bounded() -> None:
    result = run_json(
        """
        import json, os, numpy as np, ladle

        class Big(ladle.Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, i):
                return np.full((512, 512), i, dtype=np.float32)

        loader = ladle.DataLoader(Big(), batch_size=8, num_workers=2, persistent_workers=True,
                                  timeout=20)
        segments = []
        for epoch in range(120):
            for batch in loader:
                assert (batch[:, 0, 0] == np.arange(8)).all()
                break
            if epoch % 20 == 19:
                segments.append(len([n for n in os.listdir("/dev/shm")
                                     if n.startswith(f"ladle-{os.getpid()}-")]))
        print(json.dumps(segments))
        """,
        timeout=240,
    )
    assert max(result) <= 2 * min(result) + 4, result


def test_two_threads_over_one_persistent_loader_get_a_clear_error_or_batches() -> None:
    result = run_json(
        """
        import json, threading, ladle
        loader = ladle.DataLoader(list(range(48)), batch_size=4, num_workers=2,
                                  persistent_workers=True, timeout=20)
        outcomes = []
        def run():
            try:
                for _ in range(3):
                    assert sum(len(b) for b in loader) == 48
                outcomes.append("ok")
            except ladle.LoaderClosedError:
                outcomes.append("closed")
            except BaseException as error:
                outcomes.append(repr(error))
        for _ in range(4):
            threads = [threading.Thread(target=run) for _ in range(2)]
            for t in threads: t.start()
            for t in threads: t.join(60)
            assert not any(t.is_alive() for t in threads)
        print(json.dumps(outcomes))
        """,
        timeout=240,
    )
    assert set(result) <= {"ok", "closed"}, result
    assert "ok" in result


def test_a_thread_worker_raising_system_exit_is_an_error_not_a_hang() -> None:
    result = run_json(
        """
        import json, ladle

        class Exiter(ladle.Dataset):
            def __len__(self):
                return 20
            def __getitem__(self, i):
                if i == 6:
                    raise SystemExit(3)
                return i

        loader = ladle.DataLoader(Exiter(), batch_size=2, num_workers=2, worker_type="thread")
        events = []
        iterator = iter(loader)
        while True:
            try:
                events.append(len(next(iterator)))
            except StopIteration:
                break
            except SystemExit as error:
                events.append(f"exit {error.code}")
        print(json.dumps(events))
        """
    )
    assert result == [2, 2, 2, "exit 3", 2, 2, 2, 2, 2, 2]


def test_a_failing_worker_init_fn_is_reported_again_on_every_pass() -> None:
    result = run_json(
        """
        import json, ladle

        def bad_init(worker_id):
            raise OSError(f"init boom {worker_id}")

        loader = ladle.DataLoader(list(range(8)), batch_size=2, num_workers=2,
                                  persistent_workers=True, worker_init_fn=bad_init)
        kinds = []
        for _ in range(2):
            iterator = iter(loader)
            try:
                next(iterator)
            except Exception as error:
                kinds.append(f"{type(error).__name__}: {error}")
        print(json.dumps(kinds))
        """
    )
    assert result == ["OSError: init boom 0"] * 2


def test_structured_and_masked_arrays_cross_shared_memory_intact() -> None:
    result = run_json(
        """
        import json, numpy as np, ladle

        class Records(ladle.Dataset):
            def __len__(self):
                return 40
            def __getitem__(self, i):
                a = np.zeros(5000, dtype=[("x", "<f4"), ("y", "<i4")])
                a["x"] = i
                return a

        class Masked(ladle.Dataset):
            def __len__(self):
                return 40
            def __getitem__(self, i):
                return np.ma.masked_array(np.full(5000, float(i)), mask=np.arange(5000) % 2 == 0)

        records = list(ladle.DataLoader(Records(), batch_size=2, num_workers=2))
        masked = list(ladle.DataLoader(Masked(), batch_size=None, num_workers=2))
        print(json.dumps({
            "fields": sorted({str(b.dtype.names) for b in records}),
            "x": [float(b["x"][1, 0]) for b in records],
            "masked": sorted({type(b).__name__ for b in masked}),
        }))
        """
    )
    assert result["fields"] == ["('x', 'y')"]
    assert result["x"] == [float(2 * k + 1) for k in range(20)]
    assert result["masked"] == ["MaskedArray"]
