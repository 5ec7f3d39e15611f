"""num_workers="auto": measured in the first pass, chosen within the CPUs and the memory budget,
and the batches are those of any fixed setting (a switch in the middle of a pass included)."""

from __future__ import annotations

import mmap
import re
import time
from typing import Any

import numpy as np
import pytest
from script_support import run_json

import ladle


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Costly(ladle.Dataset[tuple[np.ndarray, int]]):
    """``cost`` seconds of CPU per sample (of waiting, as for I/O, with ``waits``: what thread
    workers help with), and a draw from sample_rng() in every sample."""

    def __init__(self, n: int, cost: float, waits: bool = False) -> None:
        self.n, self.cost, self.waits = n, cost, waits

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if self.waits:
            time.sleep(self.cost)
        else:
            spin(self.cost)
        return np.full((3, 4, 4), i, np.float32) + ladle.sample_rng().random(), i


def batches_of(loader: Any) -> list[list[Any]]:
    return [[x.tolist(), y.tolist()] for x, y in loader]


SWITCHING = """
import json
import ladle
from test_autotune import Costly, batches_of
from workers_support import child_pids, our_segments
loader = ladle.DataLoader(Costly(480, 1e-3, waits={waits}), batch_size=8, shuffle=True, seed=5,
                          num_workers="auto", worker_type={worker_type!r}, timeout=60)
auto = batches_of(loader)  # the first pass: measured in the main process, then workers
confirming = loader.autotune  # None: the next pass times the main process again, warm
second = batches_of(loader)  # ... then moves to the workers again, mid-pass
choice = loader.autotune
third = batches_of(loader)
fixed = ladle.DataLoader(Costly(480, 0), batch_size=8, shuffle=True, seed=5)
reference = [batches_of(fixed), batches_of(fixed), batches_of(fixed)]
print(json.dumps({{
    "same": [auto == reference[0], second == reference[1], third == reference[2]],
    "confirming": confirming is None,
    "workers": choice.num_workers, "reason": choice.reason,
    "reported": loader.num_workers, "latest": loader.stats().latest.num_workers,
    "left": [child_pids(), our_segments()],
}}))
"""


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_costly_dataset_moves_to_workers_mid_pass_and_yields_the_same_batches(
    worker_type: str,
) -> None:
    # threads help with waiting (I/O), processes with CPU work too
    waits = worker_type == "thread"
    result = run_json(SWITCHING.format(worker_type=worker_type, waits=waits), timeout=180)
    assert result["same"] == [True, True, True]
    assert result["confirming"]
    assert result["workers"] >= 1 and result["reported"] == result["workers"]
    assert result["latest"] == result["workers"]  # the third pass ran the choice
    assert "ms a batch" in result["reason"] and "workers" in result["reason"]
    assert "timed again in a later pass" in result["reason"]
    assert result["left"] == [[], []]


class ColdOnce(ladle.Dataset[tuple[np.ndarray, int]]):
    """A sample costs ``cold`` seconds the first time any process loads it, nothing later: a
    page cache's first touch. The marks are in anonymous shared memory, which forked workers
    share with the main process."""

    def __init__(self, n: int, cold: float) -> None:
        self.n, self.cold = n, cold
        self.touched = mmap.mmap(-1, n)  # MAP_SHARED

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not self.touched[i]:
            spin(self.cold)
            self.touched[i] = 1
        return np.full((3, 4, 4), i, np.float32), i


COLD = """
import json
import ladle
from test_autotune import ColdOnce, batches_of
loader = ladle.DataLoader(ColdOnce(960, 2e-3), batch_size=8, shuffle=True, seed=3,
                          num_workers="auto", worker_type="process",
                          multiprocessing_context="fork", timeout=60)
passes = [batches_of(loader)]  # cold: the main process is slow, workers are chosen
confirming = loader.autotune
passes += [batches_of(loader)]  # warm: the main process is timed again and keeps up
choice = loader.autotune
passes += [batches_of(loader)]
fixed = ladle.DataLoader(ColdOnce(960, 0), batch_size=8, shuffle=True, seed=3)
print(json.dumps({
    "same": [batches == batches_of(fixed) for batches in passes],
    "confirming": confirming is None,
    "workers": choice.num_workers, "reason": choice.reason,
    "latest": loader.stats().latest.num_workers,
}))
"""


def test_workers_chosen_on_cold_data_give_way_to_the_warm_main_process() -> None:
    result = run_json(COLD, timeout=180)
    assert result["same"] == [True, True, True]
    assert result["confirming"]  # workers were chosen in the first pass, to be confirmed
    assert result["workers"] == 0 and result["latest"] == 0
    assert "in a later pass" in result["reason"] and "cold data" in result["reason"]


def test_cheap_loading_beside_a_long_training_step_stays_in_the_main_process() -> None:
    loader = ladle.DataLoader(Costly(240, 0), batch_size=4, num_workers="auto", seed=0)
    for _ in loader:
        spin(20e-3)  # loading a batch (well under a millisecond) is a small share of this
    choice = loader.autotune
    assert choice is not None and choice.num_workers == 0
    assert "workers would cost more than they save" in choice.reason
    assert loader.num_workers == 0 and loader.stats().latest.num_workers == 0
    assert str(choice).startswith("num_workers=0: loading takes")
    assert "num_workers='auto' (0)" in repr(loader)


def test_a_pass_too_short_to_measure_decides_nothing() -> None:
    loader = ladle.DataLoader(Costly(4, 0), batch_size=2, num_workers="auto")
    assert len(list(loader)) == 2
    assert loader.autotune is None and loader.num_workers == 0


def test_resuming_mid_pass_after_a_switch_gives_the_rest_exactly() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_autotune import Costly, batches_of
        def make():
            return ladle.DataLoader(Costly(400, 1e-3), batch_size=8, shuffle=True, seed=3,
                                    num_workers="auto", timeout=60)
        loader = make()
        iterator = iter(loader)
        head = [next(iterator) for _ in range(40)]  # past the switch to workers
        state = loader.state_dict()
        del iterator
        resumed = make()
        resumed.load_state_dict(state)
        rest = batches_of(resumed)
        whole = batches_of(ladle.DataLoader(Costly(400, 0), batch_size=8, shuffle=True, seed=3))
        print(json.dumps({"head": [[x.tolist(), y.tolist()] for x, y in head] == whole[:40],
                          "rest": rest == whole[40:], "count": len(rest)}))
        """,
        timeout=180,
    )
    assert result == {"head": True, "rest": True, "count": 10}


def test_breaking_out_after_the_switch_again_and_again_leaves_nothing() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_autotune import Costly
        from workers_support import child_pids, our_segments
        for _ in range(12):
            loader = ladle.DataLoader(Costly(400, 1e-3), batch_size=8, num_workers="auto",
                                      timeout=60)
            for i, batch in enumerate(loader):
                if i == 35:
                    break
            del loader, batch
        import gc; gc.collect()
        print(json.dumps([child_pids(), our_segments()]))
        """,
        timeout=240,
    )
    assert result == [[], []]


def test_persistent_workers_keep_the_choice() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_autotune import Costly
        loader = ladle.DataLoader(Costly(320, 1e-3), batch_size=8, num_workers="auto",
                                  persistent_workers=True, timeout=60)
        while loader.autotune is None:  # a pass or two: then the choice persists
            list(loader)
        pids = []
        for _ in range(2):
            iterator = iter(loader)
            list(iterator)
            pids.append(iterator.worker_pids)
        print(json.dumps({"workers": loader.num_workers, "pids": pids}))
        """,
        timeout=180,
    )
    assert result["workers"] >= 1
    assert result["pids"][0] == result["pids"][1] and len(result["pids"][0]) == result["workers"]


def test_a_small_memory_budget_holds_one_worker() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_autotune import Costly
        loader = ladle.DataLoader(Costly(320, 1e-3), batch_size=8, num_workers="auto",
                                  memory_budget=1 << 20, timeout=60)
        while loader.autotune is None:
            list(loader)
        print(json.dumps([loader.num_workers, loader.autotune.reason]))
        """,
        timeout=180,
    )
    workers, reason = result
    assert workers <= 1 and "workers keep up, 1 fit" in reason  # then 1, or the main process


def test_auto_refuses_an_iterable_dataset() -> None:
    class Stream(ladle.IterableDataset[int]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(4))

    with pytest.raises(ValueError, match=r"num_workers='auto' needs a map-style dataset"):
        ladle.DataLoader(Stream(), num_workers="auto")


def test_memory_budget_needs_auto_and_a_positive_int() -> None:
    with pytest.raises(ValueError, match=r"memory_budget=1024 bounds what num_workers='auto'"):
        ladle.DataLoader(Costly(4, 0), num_workers=2, memory_budget=1024)
    with pytest.raises(ValueError, match="memory_budget"):
        ladle.DataLoader(Costly(4, 0), num_workers="auto", memory_budget=0)
    with pytest.raises(TypeError, match="or 'auto' to have it measured"):
        ladle.DataLoader(Costly(4, 0), num_workers="many")


def test_auto_accepts_the_worker_only_options() -> None:
    loader = ladle.DataLoader(
        Costly(4, 0),
        num_workers="auto",
        prefetch_factor="auto",
        timeout=5,
        persistent_workers=True,
        multiprocessing_context="fork",
    )
    assert len(list(loader)) == 4
    assert loader.num_workers == 0  # nothing measured yet: 4 batches are too few


def test_reassigning_a_setting_measures_again() -> None:
    loader = ladle.DataLoader(Costly(400, 0), batch_size=4, num_workers="auto")
    for _ in loader:
        spin(5e-3)
    assert loader.autotune is not None
    loader.pin_memory = False
    assert loader.autotune is None


def test_workers_that_cannot_start_leave_the_pass_whole_and_say_so() -> None:
    result = run_json(
        """
        import json, threading, warnings
        import ladle
        from test_autotune import Costly, batches_of
        class Locked(Costly):
            def __init__(self):
                super().__init__(400, 1e-3)
                self.lock = threading.Lock()  # does not pickle: spawned workers cannot start
        loader = ladle.DataLoader(Locked(), batch_size=8, shuffle=True, seed=3,
                                  num_workers="auto", multiprocessing_context="spawn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = batches_of(loader)
        reference = batches_of(ladle.DataLoader(Costly(400, 0), batch_size=8, shuffle=True,
                                                seed=3))
        messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
        print(json.dumps({"same": got == reference, "messages": messages,
                          "choice": loader.autotune.num_workers,
                          "reason": loader.autotune.reason, "again": len(list(loader))}))
        """,
        timeout=120,
    )
    assert result["same"] is True
    assert len(result["messages"]) == 1
    assert re.search(r"num_workers='auto' could not start \d+ workers? \(", result["messages"][0])
    assert "goes on with num_workers=0" in result["messages"][0]
    assert result["choice"] == 0 and "workers could not start" in result["reason"]
    assert result["again"] == 50


def test_prefetch_auto_needs_num_workers_auto() -> None:
    with pytest.raises(ValueError, match=r"prefetch_factor='auto' is tuned along with"):
        ladle.DataLoader(Costly(4, 0), num_workers=2, prefetch_factor="auto")


def test_short_passes_carry_the_measuring_on_and_decide() -> None:
    result = run_json(
        """
        import json
        import ladle
        from test_autotune import Costly, batches_of
        for persistent in (False, True):
            loader = ladle.DataLoader(Costly(96, 1e-3), batch_size=8, shuffle=True, seed=1,
                                      num_workers="auto", persistent_workers=persistent,
                                      timeout=60)
            fixed = ladle.DataLoader(Costly(96, 0), batch_size=8, shuffle=True, seed=1)
            same = []
            for epoch in range(10):
                it = iter(loader)  # the last pass's iterator is still bound here
                same.append(batches_of(it) == batches_of(fixed))
            choice = loader.autotune
            print(json.dumps({"same": all(same), "decided": choice is not None,
                              "workers": None if choice is None else choice.num_workers}))
        """,
        timeout=240,
    )
    assert result == {"same": True, "decided": True, "workers": result["workers"]}
    assert result["workers"] >= 1  # 8 ms a batch, no training step: workers keep up


def test_stats_from_another_thread_while_iterating() -> None:
    import threading

    loader = ladle.DataLoader(Costly(4000, 0), batch_size=2)
    iterator = iter(loader)
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                iterator.stats()
                loader.stats()
            except BaseException as error:
                errors.append(error)
                return

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        count = sum(1 for _ in iterator)
    finally:
        done.set()
        poller.join(30)
    assert errors == [] and count == 2000
    stats = iterator.stats()
    assert stats.batches == 2000 and stats.samples == 4000
