"""Adversarial checks of loader.stats(), ladle.trace() and num_workers="auto" in combination:
mid-pass moves between the main process and workers, batches that raise, nested loaders,
stats read from another thread, passes left unfinished.

The moves are scripted (:func:`script_moves`) rather than left to the timing: the tuner may
legitimately return any setting at any review, and what the pass does with it is what these
tests check."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from script_support import run_json

import ladle
import ladle.transforms as T


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def script_moves(moves: dict[int, tuple[int, int | None]]) -> None:
    """Make every num_workers="auto" pass move to ``moves[b]`` (workers, prefetch) once it
    has handed out ``b`` batches, whatever the timing says."""
    import ladle.autotune as autotune

    plan = dict(moves)

    def review(self: Any, stats: Any, nbytes: int) -> tuple[int, int | None] | None:
        change = plan.pop(stats.batches, None)
        self.next_review = min(plan) if plan else 1 << 62
        return change

    autotune.PassTuner.review = review  # type: ignore[method-assign]


class Numbered(ladle.Dataset[np.ndarray]):
    """Sample i is a small array of i's, plus a sample_rng() draw."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full((3,), i, np.float64) + ladle.sample_rng().random()


# -- stats across an auto pass that moves workers -> main process ----------------------------

BACK_TO_MAIN = """
import json
import ladle
from test_adversarial_stats_autotune import Numbered, script_moves
script_moves({{4: (2, 2), 12: (0, None)}})  # to 2 workers, then back to the main process
loader = ladle.DataLoader(Numbered(160), batch_size=4, num_workers="auto", seed=0,
                          worker_type={worker_type!r}, timeout=30)
iterator = iter(loader)
batches = [batch.tolist() for batch in iterator]
reference = [batch.tolist() for batch in ladle.DataLoader(Numbered(160), batch_size=4, seed=0)]
stats = iterator.stats()
print(json.dumps({{"same": batches == reference, "batches": stats.batches,
                  "samples": stats.samples, "total": loader.stats().total.samples,
                  "moved": stats.bytes_moved}}))
"""


def test_batches_in_flight_when_auto_moves_back_to_the_main_process_keep_their_samples() -> None:
    # The batches the workers had in flight at the move back come out after it, while the
    # stats already read the main process's clock: their samples (and times) must still count.
    for worker_type in ("thread", "process"):
        result = run_json(BACK_TO_MAIN.format(worker_type=worker_type), timeout=60)
        assert result["same"] is True
        assert result["batches"] == 40
        assert result["samples"] == 160, worker_type
        assert result["total"] == 160
        if worker_type == "process":
            assert result["moved"] > 0


def test_the_data_wait_watch_sees_each_wait_once_across_a_move_back() -> None:
    result = run_json(
        """
        import json
        import ladle
        import ladle.stats as stats_module
        from test_adversarial_stats_autotune import Numbered, script_moves
        script_moves({4: (2, 2), 100: (0, None)})
        fed = []
        watch = stats_module.PassRecorder._watch_wait
        def counting(self, waited, batches, start, now):
            fed.append((waited, batches))
            return watch(self, waited, batches, start, now)
        stats_module.PassRecorder._watch_wait = counting
        loader = ladle.DataLoader(Numbered(1200), batch_size=4, num_workers="auto",
                                  worker_type="thread", timeout=30)
        iterator = iter(loader)
        count = sum(1 for _ in iterator)
        stats = iterator.stats()
        print(json.dumps({"count": count, "batches": stats.batches, "wait": stats.wait,
                          "fed_wait": sum(w for w, _ in fed),
                          "fed_batches": sum(b for _, b in fed)}))
        """,
        timeout=60,
    )
    assert result["count"] == result["batches"] == 300
    # what the DataWaitWarning judges: each next() once, never twice
    assert result["fed_batches"] <= result["batches"]
    assert result["fed_wait"] <= result["wait"] + 1e-9


# -- trace: the main process's tasks after a batch that raised --------------------------------


class RaisesFirst(ladle.Dataset[np.ndarray]):
    """Samples 0-3 spend 20 ms each in a Compose, and their batch's collate raises."""

    def __init__(self) -> None:
        self.pipeline = T.Compose([T.Lambda(lambda x: (spin(0.02 if x[0] < 4 else 0), x)[1])])

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> np.ndarray:
        return self.pipeline(np.full((2,), i, np.float32))


def collate_refusing_the_first(samples: list[np.ndarray]) -> Any:
    if samples[0][0] < 4:
        raise ValueError("the first batch is refused")
    return ladle.default_collate(samples)


def test_a_traced_main_process_task_after_a_raised_batch_holds_only_its_own_stages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace.json"
    with ladle.trace(path):
        loader = ladle.DataLoader(
            RaisesFirst(), batch_size=4, collate_fn=collate_refusing_the_first
        )
        iterator = iter(loader)
        with pytest.raises(ValueError, match="the first batch is refused"):
            next(iterator)
        next(iterator)
    events = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    (task,) = [e for e in events if e["name"] == "task"]
    (step,) = [e for e in events if e["name"] == "next"]
    assert task["args"]["batch"] == 1
    # the task ran inside that next(): its 80 ms are the raised batch's, not its own
    assert task["dur"] <= step["dur"]
    (fetch,) = [e for e in events if e["name"] == "fetch"]
    assert fetch["args"]["transform_ms"] < 20


# -- a loader inside another loader's dataset -----------------------------------------------


class Inner(ladle.Dataset[int]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return i


class Nesting(ladle.Dataset[np.ndarray]):
    """Draws from sample_rng() before and after running a loader of its own (or, with
    ``nested=False``, without it)."""

    def __init__(self, nested: bool) -> None:
        self.inner = ladle.DataLoader(Inner(), batch_size=2, seed=9) if nested else None

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> np.ndarray:
        before = ladle.sample_rng().random()
        if self.inner is not None:
            sum(int(batch.sum()) for batch in self.inner)
        after = ladle.sample_rng().random()
        return np.array([i, before, after])


def test_sample_rng_survives_a_loader_run_inside_the_dataset() -> None:
    nested = [batch.tolist() for batch in ladle.DataLoader(Nesting(True), batch_size=3, seed=1)]
    plain = [batch.tolist() for batch in ladle.DataLoader(Nesting(False), batch_size=3, seed=1)]
    assert nested == plain  # the draws of each sample continue one stream


# -- stats read from another thread in the middle of a batch ----------------------------------


def test_stats_read_mid_batch_from_another_thread_keep_the_stages_within_the_wait() -> None:
    reached, go = threading.Event(), threading.Event()

    class Blocking(ladle.Dataset[np.ndarray]):
        pipeline = T.Compose([T.Lambda(lambda x: (spin(0.01), x)[1])])

        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> np.ndarray:
            image = self.pipeline(np.full((2,), i, np.float32))
            if i == 6:  # half-way through the second batch
                reached.set()
                go.wait(30)
            return image

    iterator = iter(ladle.DataLoader(Blocking(), batch_size=4))
    loading = threading.Thread(target=lambda: list(iterator))
    loading.start()
    try:
        assert reached.wait(30)
        stats = iterator.stats()
    finally:
        go.set()
        loading.join(30)
    assert not loading.is_alive()
    assert (stats.batches, stats.samples) == (1, 4)
    # every stage counted ran inside a next() whose wait is counted (so far, for the one
    # still running), and the wall still adds up
    assert stats.stages.total <= stats.wait + 1e-9
    assert stats.wait >= 7 * 0.01  # the four spins of the first batch, three of the second
    assert stats.wall == pytest.approx(stats.wait + stats.outside, abs=1e-9)


def test_a_loop_stuck_waiting_for_a_worker_shows_it_in_stats_read_meanwhile() -> None:
    reached, go = threading.Event(), threading.Event()

    class Stuck(ladle.Dataset[np.ndarray]):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> np.ndarray:
            if i == 6:
                reached.set()
                go.wait(30)
            return np.full((2,), i, np.float32)

    loader = ladle.DataLoader(Stuck(), batch_size=4, num_workers=1, worker_type="thread")
    iterator = iter(loader)
    loading = threading.Thread(target=lambda: list(iterator))
    loading.start()
    try:
        assert reached.wait(30)
        deadline = time.monotonic() + 30
        while iterator.stats().batches < 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # the loop takes the first batch, then waits for the second
        before = iterator.stats()
        spin(0.05)  # the loop goes on waiting for the second batch
        after = iterator.stats()
        total = loader.stats().total  # the loader's sums count it as the pass's do
    finally:
        go.set()
        loading.join(30)
    assert not loading.is_alive()
    assert before.batches == after.batches == 1
    assert after.wait - before.wait >= 0.05  # the wait so far is counted as it grows
    assert total.wait >= after.wait
    assert after.wall == pytest.approx(after.wait + after.outside, abs=1e-9)


# -- what a loader keeps of its passes --------------------------------------------------------


def test_a_finished_pass_keeps_no_record_log() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_adversarial_stats_autotune import Inner
        class Many(Inner):
            def __len__(self):
                return 20000
        loader = ladle.DataLoader(Many(), batch_size=4, num_workers=1, worker_type="thread",
                                  timeout=30)
        for _ in range(3):
            list(loader)
        book = loader._stats
        print(json.dumps({"log_bytes": sum(len(t.log) for t in book._tallies),
                          "samples": loader.stats().total.samples}))
        """,
        timeout=60,
    )
    assert result["samples"] == 60000
    # every record was summed when each pass ended: a 100 KB buffer per pass is kept for nothing
    assert result["log_bytes"] < 16 << 10


def test_passes_broken_off_while_the_next_begins_are_folded_too() -> None:
    loader = ladle.DataLoader(Inner(), batch_size=1)
    for _ in range(150):
        iterator = iter(loader)  # the last pass's iterator is still bound here
        for i, _batch in enumerate(iterator):
            if i == 2:
                break
    del iterator
    stats = loader.stats()
    assert (stats.total.passes, stats.total.batches) == (150, 450)
    assert len(loader._stats._tallies) <= 66  # the ended passes were folded together


# -- persistent_workers with auto -------------------------------------------------------------


def test_a_new_pass_of_an_auto_persistent_loader_leaves_a_running_auto_pass_alone() -> None:
    result = run_json(
        """
        import json
        import ladle
        import ladle.autotune as autotune
        from test_adversarial_stats_autotune import Numbered
        from workers_support import child_pids, our_segments
        def review(self, stats, nbytes):  # the first pass chooses 2 workers at batch 4
            self._finish(2, 2, "scripted")
            return (2, 2)
        autotune.PassTuner.review = review
        def make():
            return ladle.DataLoader(Numbered(200), batch_size=4, seed=0, num_workers="auto",
                                    persistent_workers=True, timeout=30)
        loader = make()
        running = iter(loader)
        head = [next(running).tolist() for _ in range(10)]  # moved to its own 2 workers
        pass_workers = sorted(running.worker_pids)
        peek = next(iter(loader))  # a peek at a batch: a pass on the persistent workers
        try:
            rest = [batch.tolist() for batch in running]
            outcome = "ok"
        except Exception as error:
            rest, outcome = [], type(error).__name__
        del running
        import gc; gc.collect()
        reference = [batch.tolist() for batch in ladle.DataLoader(Numbered(200), batch_size=4,
                                                                   seed=0)]
        print(json.dumps({"outcome": outcome, "same": head + rest == reference,
                          "left": sorted(set(pass_workers) & set(child_pids()))}))
        loader.close()
        """,
        timeout=60,
    )
    # the running pass holds workers of its own (the persistent ones came later): nothing
    # about it is the new pass's to close
    assert result["outcome"] == "ok"
    assert result["same"] is True
    assert result["left"] == []


# -- a Compose run by collate_fn (a batch augmentation) ---------------------------------------

BATCH_AUGMENT = T.Compose([T.Lambda(lambda batch: (spin(0.01), batch)[1])])


def augmenting_collate(samples: list[Any]) -> Any:
    return BATCH_AUGMENT(ladle.default_collate(samples))


def test_a_compose_inside_collate_fn_is_timed_once() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_adversarial_stats_autotune import Inner, augmenting_collate
        class Sixteen(Inner):
            def __len__(self):
                return 16
        out = {}
        for workers in (0, 1):
            loader = ladle.DataLoader(Sixteen(), batch_size=4, collate_fn=augmenting_collate,
                                      num_workers=workers, worker_type="thread",
                                      timeout=30 if workers else 0)
            list(loader)
            stats = loader.stats().latest
            out[workers] = [stats.wait, stats.stages.transform, stats.stages.collate,
                            stats.stages.total, list(stats.worker_busy)]
        print(json.dumps(out))
        """,
        timeout=60,
    )
    wait, transform, collate, total, _ = result["0"]
    assert transform >= 4 * 0.01
    assert collate < transform  # the 40 ms are the transform's, not the collate's as well
    assert total <= wait + 1e-9
    _, transform, collate, _, busy = result["1"]
    assert collate < transform
    assert busy[0] <= 1.0  # a worker is never busy more than all of the time


# -- Ctrl-C while num_workers="auto" starts workers -------------------------------------------


def test_ctrl_c_while_auto_starts_workers_decides_nothing() -> None:
    result = run_json(
        """
        import json
        import ladle
        import ladle.launcher as launcher
        from test_adversarial_stats_autotune import Numbered, script_moves
        script_moves({4: (2, 2)})
        start = launcher.Launcher.workers
        pressed = []
        def workers(self, config):
            if config.settings.num_workers and not pressed:
                pressed.append(1)
                raise KeyboardInterrupt  # Ctrl-C while the workers start
            return start(self, config)
        launcher.Launcher.workers = workers
        loader = ladle.DataLoader(Numbered(80), batch_size=4, num_workers="auto", timeout=30)
        iterator = iter(loader)
        try:
            for _ in iterator:
                pass
        except KeyboardInterrupt:
            pass
        choice = loader.autotune
        closed = next(iterator, "over") == "over"  # the interrupted pass is closed
        again = len(list(loader))  # and a new one runs whole (measuring afresh)
        print(json.dumps({"choice": None if choice is None else choice.reason,
                          "closed": closed, "again": again}))
        loader.close()
        """,
        timeout=60,
    )
    # the user stopped the loop; nothing was measured about workers
    assert result == {"choice": None, "closed": True, "again": 20}
