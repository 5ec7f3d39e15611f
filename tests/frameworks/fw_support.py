"""Running a framework scenario in child processes with a hard time limit, and checking that
they leave nothing behind.

A child script prints one line ``RESULT <json>`` and exits; :func:`run_child` runs one such
script, :func:`run_ranks` runs one copy per rank of a torch.distributed job (gloo on
127.0.0.1, a free port, the environment torchrun would set). Every child runs in a session of
its own: on a timeout the whole session is killed, and after a normal exit the test fails if a
process of that session is still alive or if a /dev/shm segment made by one of the children's
processes (the children and every process that loaded a sample: they note their pid in a
directory, see ``fw_common.note_pid``) is still there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")
LOADERS = ["torch", "ladle"]  # the loader classes every scenario runs with
MARK = "RESULT "
# A child's workers may still be on their way out when it exits; this long they may take.
EXIT_GRACE = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ladle from this checkout, no hub, no network, quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, HERE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
        PYTHONHASHSEED="0",
    )
    env.update(extra or {})
    return env


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def _segments(pids: list[int]) -> list[str]:
    """/dev/shm names made by ladle in any of ``pids``: removed now, and returned."""
    from ladle._runtime.shm import PREFIX, shm_directory

    folder = shm_directory()
    names = sorted(n for n in os.listdir(folder) for p in pids if n.startswith(f"{PREFIX}{p}-"))
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
    return names


def _wait_gone(sids: list[int]) -> list[int]:
    """Waits up to EXIT_GRACE for the sessions to empty; returns the processes still there."""
    deadline = time.monotonic() + EXIT_GRACE
    while True:
        left = [p for s in sids for p in _session_pids(s)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _result(out: str, err: str, what: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    assert lines, f"{what} printed no result:\n{out[-4000:]}\n{err[-8000:]}"
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    return result


def run_child(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Runs ``script`` in one child process and returns its result."""
    return _run(script, args, [child_env()], timeout)[0]


def run_ranks(
    script: str, args: list[str], world_size: int, timeout: float
) -> list[dict[str, Any]]:
    """Runs ``world_size`` copies of ``script`` as the ranks of one job; their results by rank.

    One rank is one process, started as torchrun would (MASTER_ADDR, MASTER_PORT, RANK,
    WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK). All share one deadline.
    """
    port = str(free_port())
    envs = [
        child_env(
            {
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(world_size),
                "NODE_RANK": "0",
                "GLOO_SOCKET_IFNAME": "lo",  # gloo on the loopback interface only
            }
        )
        for rank in range(world_size)
    ]
    return _run(script, args, envs, timeout)


def _run(
    script: str, args: list[str], envs: list[dict[str, str]], timeout: float
) -> list[dict[str, Any]]:
    """One process per environment, each in a session of its own, under one deadline."""
    with tempfile.TemporaryDirectory(prefix="ladle-fw-pids-") as pid_dir:
        for env in envs:
            env["FW_PID_DIR"] = pid_dir
        return _run_noted(script, args, envs, timeout, pid_dir)


def _run_noted(
    script: str, args: list[str], envs: list[dict[str, str]], timeout: float, pid_dir: str
) -> list[dict[str, Any]]:
    command = [sys.executable, os.path.join(HERE, script), *args]
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        for env in envs
    ]
    deadline = time.monotonic() + timeout
    outputs: list[tuple[str, str]] = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(0.1, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        exited = all(proc.poll() is not None for proc in procs)
        left = [pid for proc in procs for pid in _session_pids(proc.pid)]
        tails = []
        for proc in procs:
            _kill_session(proc)
            tails.append(proc.communicate()[1][-3000:])
        joined = "\n".join(tails)
        if exited:  # what keeps the pipes open: processes of theirs still running
            raise AssertionError(f"processes left behind by {script}: {left}\n{joined}") from None
        raise AssertionError(f"{script} {args} ran past {timeout} s:\n{joined}") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                _kill_session(proc)
    left, segments = _leftovers([p.pid for p in procs], [int(n) for n in os.listdir(pid_dir)])
    results = []
    for rank, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        what = f"{script} {args}" + (f" (rank {rank})" if len(procs) > 1 else "")
        assert proc.returncode == 0, (
            f"{what} exited with {proc.returncode}:\n{out[-3000:]}\n{err[-8000:]}"
        )
        results.append(_result(out, err, what))
    assert not left, f"processes left behind by {script}: {left}"
    assert not segments, f"/dev/shm segments left behind by {script}: {segments}"
    return results


def _kill_session(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _leftovers(sids: list[int], noted: list[int]) -> tuple[list[int], list[str]]:
    """The processes still alive in the children's sessions (killed now) and the /dev/shm
    segments of the children and of the processes that noted their pid."""
    left = _wait_gone(sids)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left, _segments(sorted({*sids, *noted}))


# -- reading the children's results --------------------------------------------------------


def scenario(results: dict[str, Any], loader: str, name: str) -> Any:
    """What scenario ``name`` of ``loader`` returned; its traceback as the failure if it raised."""
    for key in (loader, name):
        entry = results.get(key)
        assert entry is not None, f"no result {key!r} among {sorted(results)}"
        assert "error" not in entry, f"{key} raised in the child:\n{entry['error']}"
        results = entry["ok"]
    return results


def by_epoch(seen: list[list[Any]]) -> dict[int, list[list[int]]]:
    """``[epoch, ..., indices]`` records grouped by epoch: the batches of each, in order."""
    epochs: dict[int, list[list[int]]] = {}
    for record in seen:
        epochs.setdefault(record[0], []).append(record[-1])
    return epochs


def first_difference(got: list[Any], want: list[Any]) -> str:
    """Where two step records part, for a failure message."""
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"step {i} of {len(want)}: got {g}, the uninterrupted run had {w}"
    return f"lengths differ: got {len(got)} steps, the uninterrupted run had {len(want)}"


def is_ladle(qualified: str) -> bool:
    """A class of ladle's torch namespace (``ladle.torch...``)?"""
    return qualified.startswith("ladle.")
