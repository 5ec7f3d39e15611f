"""The kill matrix: every failure reaches the main process as the right error, in bounded time,
and leaves no process, thread or shared-memory segment behind. Each case runs in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from workers_support import our_segments

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = """
import gc, os, signal, sys, threading, time
sys.path.insert(0, {tests!r})
import ladle
from workers_support import Pairs, child_pids, our_segments, worker_threads

class Faulty(Pairs):
    def __getitem__(self, i):
        in_worker = ladle.get_worker_info() is not None
        {fault}
        return super().__getitem__(i)

loader = ladle.DataLoader(
    Faulty(40), batch_size=4, num_workers=2, worker_type={worker_type!r}, timeout={timeout}
)
start = time.monotonic()
try:
    for k, batch in enumerate(loader):
        {main}
    print("RESULT none")
except BaseException as error:
    elapsed = time.monotonic() - start
    print("RESULT", type(error).__name__, f"{{elapsed:.2f}}", (str(error).splitlines() or ["-"])[0])
    print("NOTES", "|".join(getattr(error, "__notes__", [])).replace("\\n", " ")[:300])
del loader
gc.collect()
for thread in worker_threads():
    thread.join(10)
print("CHILDREN", child_pids())
print("SEGMENTS", our_segments())
print("THREADS", len(worker_threads()))
"""

FAULTS = {
    "exception": 'if i == 9: raise ValueError(f"sample {i} is corrupt")',
    "sigkill": "if i == 9 and in_worker: os.kill(os.getpid(), signal.SIGKILL)",
    "exit": "if i == 9 and in_worker: os._exit(3)",
    "hang": "if i == 9: time.sleep({hang})",
    "slow": "time.sleep(0.05)",
}


def run_case(worker_type: str, fault: str, main: str = "pass", timeout: float = 0) -> dict:
    hang = 30 if worker_type == "process" else 3  # a thread cannot be killed: keep it short
    code = SCRIPT.format(
        tests=TESTS,
        fault=FAULTS[fault].replace("{hang}", str(hang)),
        worker_type=worker_type,
        timeout=timeout,
        main=main,
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    lines["wall"] = f"{time.monotonic() - started:.2f}"
    assert "RESULT" in lines, result.stdout + result.stderr
    assert lines["CHILDREN"] == "[]", lines
    assert lines["SEGMENTS"] == "[]", lines
    assert lines["THREADS"] == "0", lines
    return lines


def result_of(lines: dict) -> tuple[str, float, str]:
    kind, elapsed, message = (
        lines["RESULT"].split(" ", 2)
        if " " in lines["RESULT"]
        else (
            lines["RESULT"],
            "0",
            "",
        )
    )
    return kind, float(elapsed), message


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_exception_in_a_worker(worker_type: str) -> None:
    lines = run_case(worker_type, "exception")
    kind, _, message = result_of(lines)
    assert kind == "ValueError" and "sample 9 is corrupt" in message
    assert "ladle worker" in lines["NOTES"] and "samples [8, 9, 10, 11]" in lines["NOTES"]


@pytest.mark.parametrize("fault", ["sigkill", "exit"])
def test_a_dead_worker_is_reported_with_pid_and_cause(fault: str) -> None:
    lines = run_case("process", fault)
    kind, elapsed, message = result_of(lines)
    assert kind == "WorkerDiedError"
    assert "pid" in message
    assert ("SIGKILL" in message) if fault == "sigkill" else ("exited with code 3" in message)
    assert elapsed < 5


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_timeout_fires_on_time(worker_type: str) -> None:
    lines = run_case(worker_type, "hang", timeout=1)
    kind, elapsed, message = result_of(lines)
    assert kind == "LoaderTimeoutError" and "timed out after 1 seconds" in message
    assert 0.9 < elapsed < 3.0


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_keyboard_interrupt_in_the_loop_body(worker_type: str) -> None:
    main = "if k == 2: os.kill(os.getpid(), signal.SIGINT)"
    kind, _, _ = result_of(run_case(worker_type, "slow", main=main))
    assert kind == "KeyboardInterrupt"


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_keyboard_interrupt_while_waiting_for_a_batch(worker_type: str) -> None:
    main = "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start() if k == 0 else 0"
    kind, elapsed, _ = result_of(run_case(worker_type, "hang", main=main))
    assert kind == "KeyboardInterrupt" and elapsed < 3


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_break_stops_the_workers(worker_type: str) -> None:
    kind, _, _ = result_of(run_case(worker_type, "slow", main="break"))
    assert kind == "none"


def test_interpreter_exit_with_a_live_iterator_leaves_nothing() -> None:
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {TESTS!r})
        import ladle
        from workers_support import Pairs
        loader = ladle.DataLoader(Pairs(400, (3, 64, 64)), batch_size=4, num_workers=2)
        iterator = iter(loader)
        held = next(iterator)
        print(os.getpid(), *iterator.worker_pids)
        sys.exit(0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    main_pid, *pids = [int(p) for p in result.stdout.split()]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    assert our_segments(main_pid) == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_script(code: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code).format(tests=TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


def test_a_pass_dropped_after_a_worker_error_stops_its_workers_at_once() -> None:
    # the error raised in the loop held the iterator's frame, and the frame the error: only the
    # cyclic collector freed the pass, so each failed epoch left two workers running
    lines = run_script(
        """
        import gc, sys
        sys.path.insert(0, {tests!r})
        import ladle
        from workers_support import Pairs, child_pids

        class Faulty(Pairs):
            def __getitem__(self, i):
                if i == 9:
                    raise ValueError("sample 9 is corrupt")
                return super().__getitem__(i)

        gc.disable()  # reference counting alone frees what the user drops
        loader = ladle.DataLoader(Faulty(40), batch_size=4, num_workers=2)
        for epoch in range(3):
            try:
                for batch in loader:
                    pass
            except ValueError:
                pass
            print("CHILDREN" + str(epoch), child_pids())
        """
    )
    assert [lines[f"CHILDREN{e}"] for e in range(3)] == ["[]"] * 3, lines


def test_a_forked_child_dropping_the_parents_loader_leaves_its_workers_running() -> None:
    # a worker of the next pass (or any fork) inherits the parent's loader objects: collecting
    # them there ran their finalizers, which stopped the parent's persistent workers
    lines = run_script(
        """
        import gc, os, sys
        sys.path.insert(0, {tests!r})
        import ladle
        from workers_support import Pairs

        loader = ladle.DataLoader(Pairs(40), batch_size=4, num_workers=2, persistent_workers=True)
        it = iter(loader)
        next(it)
        pid = os.fork()
        if pid == 0:
            del it, loader
            gc.collect()
            os._exit(0)
        os.waitpid(pid, 0)
        print("REST", len(list(it)))
        print("NEXT", len(list(loader)))
        """
    )
    assert lines["REST"] == "9" and lines["NEXT"] == "10", lines
