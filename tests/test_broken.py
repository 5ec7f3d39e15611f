"""A pass that breaks says so, on every later call; one bad batch is one error and the pass goes
on; stopping is prompt. Each case runs in a subprocess with a hard time limit."""

from __future__ import annotations

import pytest
from script_support import run_json

from ladle._runtime.pool import describe_exit

BROKEN = """
import json, multiprocessing, os, signal, time, ladle

# The fault strikes once the main process holds two batches: a worker that died earlier may
# rightly be reported before batch 1 arrives, which would make the events depend on timing.
two_batches = multiprocessing.get_context("fork").Event()

class Faulty(ladle.Dataset):
    def __len__(self):
        return 40
    def __getitem__(self, i):
        if i == 9 and ladle.get_worker_info() is not None:
            two_batches.wait(30)
            {fault}
        return i

loader = ladle.DataLoader(Faulty(), batch_size=4, num_workers=2, timeout={timeout})
iterator = iter(loader)
events = []
for _ in range(6):
    try:
        events.append(["batch", next(iterator).tolist()])
        if len(events) == 2:
            two_batches.set()
    except StopIteration:
        events.append(["stop"])
        break
    except Exception as error:
        cause = error.__cause__
        events.append([type(error).__name__, type(cause).__name__ if cause else None])
print(json.dumps(events))
"""


@pytest.mark.parametrize(
    ("fault", "timeout", "first"),
    [
        ("os.kill(os.getpid(), signal.SIGKILL)", 0, "WorkerDiedError"),
        ("time.sleep(30)", 1, "LoaderTimeoutError"),
    ],
)
def test_a_broken_pass_says_so_on_every_later_next(fault: str, timeout: int, first: str) -> None:
    events = run_json(BROKEN.format(fault=fault, timeout=timeout))
    kinds = [event[0] for event in events]
    assert kinds[:2] == ["batch", "batch"]
    assert kinds[2] == first
    assert events[3:] == [["LoaderBrokenError", first]] * 3


def test_a_batch_that_cannot_be_unpickled_is_one_error_and_the_pass_goes_on() -> None:
    events = run_json(
        """
        import json, os, ladle
        MAIN = os.getpid()

        def rebuild(pid):
            if os.getpid() == MAIN:
                raise ValueError("this sample only unpickles in a worker")
            return Bomb()

        class Bomb:
            def __reduce__(self):
                return rebuild, (MAIN,)

        class Data(ladle.Dataset):
            def __len__(self):
                return 20
            def __getitem__(self, i):
                return Bomb() if i == 9 else i

        loader = ladle.DataLoader(Data(), batch_size=4, num_workers=2, timeout=20,
                                  collate_fn=list)
        events = []
        iterator = iter(loader)
        while True:
            try:
                events.append(next(iterator))
            except StopIteration:
                break
            except ValueError as error:
                events.append(["error", str(error), " ".join(error.__notes__)])
        print(json.dumps(events))
        """
    )
    assert events[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert events[2][0] == "error" and "only unpickles in a worker" in events[2][1]
    assert "could not be unpickled in the main process" in events[2][2]
    assert events[3:] == [[12, 13, 14, 15], [16, 17, 18, 19]]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_result_that_cannot_be_pickled_is_reported_like_any_worker_error(
    start_method: str,
) -> None:
    events = run_json(
        f"""
        import json, threading, ladle
        from workers_support import LockAt

        loader = ladle.DataLoader(LockAt(20, 9), batch_size=4, num_workers=2, collate_fn=list,
                                  multiprocessing_context={start_method!r})
        events = []
        iterator = iter(loader)
        while True:
            try:
                events.append(len(next(iterator)))
            except StopIteration:
                break
            except Exception as error:
                events.append([type(error).__name__, " ".join(getattr(error, "__notes__", []))])
        print(json.dumps(events))
        """,
        timeout=120,
    )
    assert events[:2] == [4, 4]
    kind, notes = events[2]
    assert kind == "TypeError"
    assert "could not be pickled" in notes and "[8, 9, 10, 11]" in notes
    assert events[3:] == [4, 4]


@pytest.mark.parametrize("persistent", [False, True])
def test_break_and_close_stop_promptly(persistent: bool) -> None:
    result = run_json(
        f"""
        import json, time, ladle

        class Slow(ladle.Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, i):
                time.sleep(0.5)
                return i

        loader = ladle.DataLoader(Slow(), batch_size=1, num_workers=2, prefetch_factor=4,
                                  persistent_workers={persistent})
        for batch in loader:
            break
        begun = time.monotonic()
        loader.close()
        print(json.dumps(time.monotonic() - begun))
        """
    )
    # The workers hold 7 queued tasks (3.5 s of work): they must not run them, nor wait for
    # a kill after a long grace period.
    assert result < 1.0


def test_out_of_order_keeps_the_other_workers_busy_while_one_sample_is_slow() -> None:
    result = run_json(
        """
        import json, multiprocessing, ladle
        release = multiprocessing.get_context("fork").Event()

        class OneSlow(ladle.Dataset):
            def __len__(self):
                return 40
            def __getitem__(self, i):
                if i == 0 and not release.wait(30):
                    raise TimeoutError("never released")
                return i

        loader = ladle.DataLoader(OneSlow(), batch_size=1, num_workers=2, in_order=False)
        order = []
        for batch in loader:
            order.append(int(batch[0]))
            if len(order) == 12:
                release.set()  # only once the other worker has delivered 12 batches
        print(json.dumps(order))
        """
    )
    assert sorted(result) == list(range(40))
    assert result.index(0) >= 12


def test_torch_ops_in_forked_workers_after_the_main_process_used_its_thread_pool() -> None:
    pytest.importorskip("torch")
    total = run_json(
        """
        import json, torch, ladle
        torch.set_num_threads(2)
        weight = torch.randn(32, 16, 9)
        for _ in range(3):  # the main process's intra-op pool is now running
            torch.nn.functional.conv1d(torch.randn(8, 16, 4096), weight)

        class Conv(ladle.Dataset):
            def __len__(self):
                return 16
            def __getitem__(self, i):
                signal = torch.randn(1, 16, 2048)
                return torch.nn.functional.conv1d(signal, weight).sum().item()

        loader = ladle.DataLoader(Conv(), batch_size=4, num_workers=2)
        print(json.dumps(sum(len(batch) for batch in loader)))
        """,
        timeout=60,
    )
    assert total == 16


def test_a_process_loader_inside_a_worker_says_to_use_threads() -> None:
    result = run_json(
        """
        import json, ladle

        class Nested(ladle.Dataset):
            def __len__(self):
                return 2
            def __getitem__(self, i):
                inner = ladle.DataLoader(list(range(4)), batch_size=2, num_workers=1)
                try:
                    return len(list(inner))
                except RuntimeError as error:
                    return str(error)

        threads = ladle.DataLoader(list(range(4)), batch_size=2, num_workers=1,
                                   worker_type="thread")
        outer = ladle.DataLoader(Nested(), batch_size=None, num_workers=1)
        print(json.dumps([message for message in outer]))
        """
    )
    assert all("worker_type='thread'" in message for message in result), result


def test_sigbus_points_at_shared_memory() -> None:
    assert "/dev/shm" in describe_exit(-7) and "--shm-size" in describe_exit(-7)
    assert "out of memory" in describe_exit(-9)
