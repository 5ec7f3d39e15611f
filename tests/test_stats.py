"""loader.stats(), the data-wait warning and ladle.trace(): the numbers add up, per pass and in
all, with and without workers; the warning comes once; the trace is valid Chrome trace JSON."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from script_support import run_json

import ladle
import ladle.transforms as T


def spin(seconds: float) -> None:
    """Busy CPU work (sleep would leave the stage clocks measuring a sleeping thread too,
    which is fine, but a spin is what a decode looks like)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Slow(ladle.Dataset[tuple[np.ndarray, int]]):
    """Each sample spins ``fetch`` seconds, then runs a Compose that spins ``transform``."""

    def __init__(self, n: int, fetch: float = 2e-4, transform: float = 1e-4) -> None:
        self.n, self.fetch = n, fetch
        self.pipeline = T.Compose([T.Lambda(lambda image: (spin(transform), image)[1])])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        spin(self.fetch)
        return self.pipeline(np.full((4, 4), i, np.float32)), i


def slow_collate(samples: list[Any]) -> Any:
    spin(5e-4)
    return ladle.default_collate(samples)


def test_a_pass_without_workers_adds_up() -> None:
    loader = ladle.DataLoader(Slow(64), batch_size=8, collate_fn=slow_collate, seed=0)
    assert loader.stats().latest is None
    assert str(loader.stats()) == "no pass yet"
    for _ in loader:
        spin(1e-3)  # the training step
    stats = loader.stats().latest
    assert stats is not None
    assert (stats.passes, stats.batches, stats.samples) == (1, 8, 64)
    assert stats.wall == pytest.approx(stats.wait + stats.outside, abs=1e-9)
    assert stats.outside >= 7 * 1e-3  # seven steps between eight batches
    stages = stats.stages
    # every stage ran inside next(): together they are most of the wait, never more
    assert 0.8 * stats.wait <= stages.total <= stats.wait
    assert stages.fetch >= 64 * 2e-4
    assert stages.transform >= 64 * 1e-4
    assert stages.collate >= 8 * 5e-4
    assert stages.convert == 0 and stats.worker_busy == () and stats.num_workers == 0
    assert 0 < stats.data_wait_share < 1
    assert stats.bottleneck() == "fetch"
    assert "8 batches, 64 samples" in str(stats)


def test_the_output_conversion_is_timed() -> None:
    pytest.importorskip("torch")
    loader = ladle.DataLoader(Slow(16, 0, 0), batch_size=4, output="torch")
    assert len(list(loader)) == 4
    stats = loader.stats().latest
    assert stats is not None and stats.stages.convert > 0


def test_a_pass_with_process_workers_adds_up() -> None:
    result = run_json(
        """
        import json, time
        import numpy as np
        import ladle
        from test_stats import Slow, slow_collate
        loader = ladle.DataLoader(Slow(96, 1e-3, 0), batch_size=8, num_workers=2, seed=0,
                                  collate_fn=slow_collate, timeout=30)
        for epoch in range(2):
            for batch in loader:
                pass
        stats = loader.stats()
        latest, total = stats.latest, stats.total
        print(json.dumps({
            "latest": [latest.batches, latest.samples, latest.wall, latest.wait,
                       latest.outside, list(latest.worker_busy), latest.stages.fetch,
                       latest.stages.collate, latest.stages.transport, latest.bytes_moved],
            "total": [total.passes, total.batches, total.samples, total.wall],
            "text": str(stats),
        }))
        """,
        timeout=120,
    )
    batches, samples, wall, wait, outside, busy, fetch, collate, transport, moved = result["latest"]
    assert (batches, samples) == (12, 96)
    assert wall == pytest.approx(wait + outside, abs=1e-9)
    assert len(busy) == 2 and all(0 < share <= 1.0 for share in busy)
    assert fetch >= 96 * 1e-3 and collate >= 12 * 5e-4
    assert transport > 0 and moved > 0
    passes, total_batches, total_samples, total_wall = result["total"]
    assert (passes, total_batches, total_samples) == (2, 24, 192)
    assert total_wall > wall
    assert "all 2 passes" in result["text"] and "workers busy" in result["text"]


def test_thread_workers_are_timed_too() -> None:
    loader = ladle.DataLoader(
        Slow(32, 5e-4, 0), batch_size=4, num_workers=2, worker_type="thread", timeout=30
    )
    assert len(list(loader)) == 8
    stats = loader.stats().latest
    assert stats is not None
    assert stats.samples == 32 and len(stats.worker_busy) == 2
    assert stats.stages.fetch >= 32 * 5e-4


def test_two_passes_at_once_are_counted_apart_and_together() -> None:
    loader = ladle.DataLoader(Slow(20, 0, 0), batch_size=2)
    first, second = iter(loader), iter(loader)
    for _ in range(3):
        next(first)
    for _ in range(5):
        next(second)
    assert (first.stats().batches, second.stats().batches) == (3, 5)
    stats = loader.stats()
    assert stats.latest is not None and stats.latest.batches == 5  # the pass begun last
    assert (stats.total.passes, stats.total.batches) == (2, 8)


def test_two_passes_at_once_without_workers_keep_their_stages_apart() -> None:
    # the main process's loops time their tasks with clocks of their own: interleaved passes
    # in one thread must not add into each other's
    loader = ladle.DataLoader(Slow(40, 0, 2e-4), batch_size=2, collate_fn=slow_collate)
    first, second = iter(loader), iter(loader)
    for _ in range(2):
        next(first)
        for _ in range(4):
            next(second)
    one, two = first.stats(), second.stats()
    assert (one.samples, two.samples) == (4, 16)
    assert 4 * 2e-4 <= one.stages.transform < 16 * 2e-4
    assert two.stages.transform >= 16 * 2e-4
    assert 2 * 5e-4 <= one.stages.collate < 8 * 5e-4 <= two.stages.collate
    assert one.stages.total <= one.wait and two.stages.total <= two.wait


def test_a_loader_inside_a_dataset_leaves_the_outer_stages_whole() -> None:
    inner = ladle.DataLoader(Slow(64, 0, 0), batch_size=4)

    class Outer(ladle.Dataset[np.ndarray]):
        def __init__(self) -> None:
            self.inner = iter(inner)
            self.pipeline = T.Compose([T.Lambda(lambda image: (spin(3e-4), image)[1])])

        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> np.ndarray:
            image = self.pipeline(np.full((4, 4), i, np.float32))
            next(self.inner)  # the inner loader runs a task of its own here
            return image

    loader = ladle.DataLoader(Outer(), batch_size=2)
    assert len(list(loader)) == 4
    stats = loader.stats().latest
    assert stats is not None and stats.samples == 8
    assert stats.stages.transform >= 8 * 3e-4  # timed before the inner task, still the outer's


def test_many_broken_off_passes_are_summed_in_bounded_memory() -> None:
    loader = ladle.DataLoader(Slow(40, 0, 0), batch_size=4, seed=0)
    for _ in range(150):
        for i, _batch in enumerate(loader):
            if i == 2:
                break
    stats = loader.stats()
    assert (stats.total.passes, stats.total.batches, stats.total.samples) == (150, 450, 1800)
    book = loader._stats
    assert len(book._tallies) <= 66  # the ended passes were folded together


def test_a_batch_that_raised_is_not_counted_and_the_wall_still_adds_up() -> None:
    class Failing(Slow):
        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            if i == 5:
                raise ValueError("bad sample 5")
            return super().__getitem__(i)

    loader = ladle.DataLoader(Failing(12, 0, 0), batch_size=4)
    iterator = iter(loader)
    next(iterator)
    with pytest.raises(ValueError, match="bad sample 5"):
        next(iterator)
    next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)
    stats = iterator.stats()
    assert (stats.batches, stats.samples) == (2, 8)
    assert stats.wall == pytest.approx(stats.wait + stats.outside, abs=1e-9)


def test_a_long_data_wait_warns_once_with_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADLE_DATA_WAIT_WARNING", "0.5,0.02")
    loader = ladle.DataLoader(Slow(64, 1e-3, 0), batch_size=4)
    with pytest.warns(ladle.DataWaitWarning) as caught:
        for _ in loader:
            pass
    assert len(caught) == 1
    assert caught[0].filename == __file__  # it points at the user's loop
    message = str(caught[0].message)
    assert "the training loop waited for data" in message
    assert "most of it in fetch" in message and "num_workers=" in message
    assert "LADLE_DATA_WAIT_WARNING=off" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", ladle.DataWaitWarning)
        list(loader)  # once per loader


def test_the_warning_from_workers_points_at_the_loop_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADLE_DATA_WAIT_WARNING", "0.5,0.02")
    loader = ladle.DataLoader(
        Slow(96, 2e-3, 0), batch_size=4, num_workers=1, worker_type="thread", timeout=60
    )
    with pytest.warns(ladle.DataWaitWarning) as caught:
        for _ in loader:
            pass
    assert len(caught) == 1 and caught[0].filename == __file__
    assert "the 1 worker is busy" in str(caught[0].message)


def test_a_busy_training_loop_does_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADLE_DATA_WAIT_WARNING", "0.5,0.02")
    loader = ladle.DataLoader(Slow(32, 1e-4, 0), batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ladle.DataWaitWarning)
        for _ in loader:
            spin(5e-3)


def test_the_warning_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADLE_DATA_WAIT_WARNING", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ladle.DataWaitWarning)
        list(ladle.DataLoader(Slow(32, 1e-3, 0), batch_size=4))


def test_a_malformed_warning_setting_says_how_to_write_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LADLE_DATA_WAIT_WARNING", "half")
    with pytest.warns(UserWarning, match=r"'off' or '<share>,<seconds>'"):
        iter(ladle.DataLoader(Slow(4, 0, 0), batch_size=4))


def test_the_remedy_names_the_bound() -> None:
    from ladle.stats import PassStats, StageTimes, remedy

    def stats(workers: int, busy: float, stages: StageTimes) -> PassStats:
        return PassStats(
            1, 10, 100, 1.0, 0.8, 0.2, 0.0, stages, workers, (busy,) * workers, 0, 0, 0, 0
        )

    fetch_bound = StageTimes(fetch=0.9, transform=0.05, collate=0.01, transport=0.01)
    assert "raise num_workers" in remedy(stats(2, 0.95, fetch_bound), cpus=8)
    assert "more workers cannot help" in remedy(stats(8, 0.95, fetch_bound), cpus=8)
    assert "ladle.cache()" in remedy(stats(8, 0.95, fetch_bound), cpus=8)
    idle = StageTimes(fetch=0.1, transport=0.5, convert=0.3)
    assert "main process" in remedy(stats(4, 0.2, idle), cpus=8)
    assert "num_workers=8" in remedy(stats(0, 0.0, fetch_bound), cpus=8)
    # num_workers="auto" measured the count already: the advice is the stage
    inline_auto = remedy(stats(0, 0.0, fetch_bound), cpus=8, auto=True)
    assert "num_workers=" not in inline_auto.replace("num_workers='auto'", "")
    assert "make fetch cheaper" in inline_auto
    busy_auto = remedy(stats(2, 0.95, fetch_bound), cpus=8, auto=True)
    assert "raise num_workers" not in busy_auto and "memory_budget=" in busy_auto


def test_a_trace_holds_every_task_and_loads_as_trace_json(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    result = run_json(
        f"""
        import json, os
        import ladle
        from test_stats import Slow
        with ladle.trace({str(path)!r}):
            loader = ladle.DataLoader(Slow(24, 2e-4, 1e-4), batch_size=4, num_workers=2,
                                      timeout=30, seed=0)
            list(loader)
            pids = []
        untraced = ladle.DataLoader(Slow(8, 0, 0), batch_size=4)
        list(untraced)  # after the block: not recorded
        print(json.dumps({{"main": os.getpid()}}))
        """,
        timeout=120,
    )
    document = json.loads(path.read_text())
    events = document["traceEvents"]
    spans = [event for event in events if event["ph"] == "X"]
    assert all({"name", "ts", "dur", "pid", "tid"} <= event.keys() for event in spans)
    tasks = [event for event in spans if event["name"] == "task"]
    assert sorted(event["args"]["batch"] for event in tasks) == list(range(6))
    assert sorted(i for event in tasks for i in event["args"]["indices"]) == list(range(24))
    worker_pids = {event["pid"] for event in tasks}
    assert len(worker_pids) == 2 and result["main"] not in worker_pids
    nexts = [event for event in spans if event["name"] == "next"]
    assert len(nexts) == 6 and {event["pid"] for event in nexts} == {result["main"]}
    names = {event["name"] for event in spans}
    assert {"fetch", "collate", "encode", "transport"} <= names
    fetches = [event for event in spans if event["name"] == "fetch"]
    assert all(event["args"]["transform_ms"] >= 0.4 for event in fetches)  # 4 samples each
    threads = {
        event["args"]["name"] for event in events if event["ph"] == "M"
    }  # the tracks are named
    assert {"training loop", "ladle worker 0", "ladle worker 1"} <= threads


def test_a_trace_without_workers_holds_the_main_process_tasks(tmp_path: Path) -> None:
    path = tmp_path / "inline.json"
    with ladle.trace(path):
        loader = ladle.DataLoader(Slow(16, 0, 2e-4), batch_size=4, collate_fn=slow_collate)
        assert len(list(loader)) == 4
    events = json.loads(path.read_text())["traceEvents"]
    tasks = [event for event in events if event["ph"] == "X" and event["name"] == "task"]
    assert [event["args"]["samples"] for event in tasks] == [4, 4, 4, 4]
    fetches = [event for event in events if event["ph"] == "X" and event["name"] == "fetch"]
    assert all(event["args"]["transform_ms"] >= 0.8 for event in fetches)
    collates = [event for event in events if event["ph"] == "X" and event["name"] == "collate"]
    assert len(collates) == 4 and all(event["dur"] >= 500 for event in collates)
    tracks = {event["args"]["name"] for event in events if event["ph"] == "M"}
    assert "loading, in the main process" in tracks


def test_ladle_trace_in_the_environment_traces_the_whole_run(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    run_json(
        f"""
        import os
        os.environ["LADLE_TRACE"] = {str(path)!r}
        import ladle
        from test_stats import Slow
        list(ladle.DataLoader(Slow(8, 0, 0), batch_size=4))
        list(ladle.DataLoader(Slow(8, 0, 0), batch_size=2))
        print("{{}}")
        """
    )
    events = json.loads(path.read_text())["traceEvents"]
    passes = {event["args"]["pass"] for event in events if event["name"] == "next"}
    assert passes == {0, 1}
