"""Whole jobs around shared memory: a small, full or read-only /dev/shm, two jobs sharing one
/dev/shm from separate PID namespaces, SIGTERM and SIGKILL of the main process, and epochs
abandoned by ``break``. Each scenario runs as a subprocess in a session of its own, killed
whole at a hard timeout. The ones that need a private /dev/shm (``unshare -m``) or a PID
namespace (``unshare -p``) are skipped where unshare is unavailable or not permitted."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from workers_support import our_segments

from ladle._runtime.shm import shm_directory, sweep_orphans

TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(TESTS), "src")
PRIVATE_SHM = 'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$0" "$@"'


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a new session; at the timeout, kill its whole process group."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(f"timed out after {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@functools.cache
def _works(*argv: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(["unshare", *argv], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def private_shm(size: str) -> list[str]:
    """A command prefix: a mount namespace of its own with a ``size`` tmpfs on /dev/shm."""
    if not _works("-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"):
        pytest.skip("needs unshare -m and mount -t tmpfs (root on Linux)")
    return ["unshare", "-m", "sh", "-c", PRIVATE_SHM.format(size=size)]


def require_pid_namespaces() -> None:
    if not _works("-p", "-f", "--mount-proc", "--kill-child", "true"):
        pytest.skip("needs unshare -p -f --mount-proc --kill-child (root on Linux)")


def lines(result: subprocess.CompletedProcess[str], key: str) -> list[str]:
    found = [
        line.split(" ", 1)[-1] for line in result.stdout.splitlines() if line.split()[:1] == [key]
    ]
    assert found, f"no {key} line\n{result.stdout}\n{result.stderr}"
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


# -- a small, full or read-only /dev/shm -----------------------------------------------------

IN_SLAB = """
import mmap
import numpy as np

def in_slab(array):
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
"""

SMALL = (
    IN_SLAB
    + """
import os, warnings
import ladle

N = (10 << 20) // 4  # a 10 MiB sample: batches of 4 are 40 MiB, slabs 50 MiB

class Big(ladle.Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        return np.full(N, i, np.float32)

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    loader = ladle.DataLoader(Big(), batch_size=4, num_workers=2)
    kinds = []
    for epoch in range(2):
        for k, batch in enumerate(loader):
            assert batch.shape == (4, N), batch.shape
            for j in range(4):
                assert (batch[j] == 4 * k + j).all(), (epoch, k, j)
            kinds.append("slab" if in_slab(batch) else "pickled")
        assert k == 2, k
    loader.close()
ours = [str(w.message) for w in caught if "shared-memory slab" in str(w.message)]
print("KINDS", *kinds)
print("WARNINGS", len(ours))
print("MESSAGE", *ours)
print("LEFT", sorted(os.listdir("/dev/shm")))
"""
)


def test_a_64_mib_dev_shm_still_delivers_40_mib_batches_with_one_warning() -> None:
    result = run([*private_shm("64m"), *python(SMALL)], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = lines(result, "KINDS")[0].split()
    assert len(kinds) == 6 and "slab" in kinds and "pickled" in kinds, kinds
    assert lines(result, "WARNINGS") == ["1"]
    message = lines(result, "MESSAGE")[0]
    assert "slab in /dev/shm: it is full" in message and "/dev/shm is 64.0 MiB with" in message
    assert "--shm-size=2g" in message
    assert lines(result, "LEFT") == ["[]"]


READ_ONLY = (
    IN_SLAB
    + """
import os, subprocess, warnings
import ladle

class Mid(ladle.Dataset):
    def __len__(self):
        return 128

    def __getitem__(self, i):
        return np.full(64 << 10, i, np.float32)  # 256 KiB

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    loader = ladle.DataLoader(Mid(), batch_size=4, num_workers=2, prefetch_factor=4)
    held, mounted = [], False
    for k, batch in enumerate(loader):
        if in_slab(batch) and not mounted:
            # Batches in slabs, more in flight and prefetched: /dev/shm goes read-only.
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "ro,size=64m", "tmpfs", "/dev/shm"], check=True
            )
            mounted = True
        held.append(batch)
    for k, batch in enumerate(held):
        for j in range(4):
            assert (batch[j] == 4 * k + j).all(), (k, j)
    print("BATCHES", len(held), sum(in_slab(b) for b in held))
    loader.close()
ours = [str(w.message) for w in caught if "shared-memory slab" in str(w.message)]
print("WARNINGS", len(ours))
print("MESSAGE", *ours)
"""
)


def test_a_dev_shm_gone_read_only_mid_epoch_drops_no_batch() -> None:
    result = run([*private_shm("64m"), *python(READ_ONLY)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    total, in_slabs = (int(n) for n in lines(result, "BATCHES")[0].split())
    assert total == 32 and in_slabs >= 1, (total, in_slabs)
    assert lines(result, "WARNINGS") == ["1"]
    assert "it is read-only" in lines(result, "MESSAGE")[0]


# -- two jobs, two PID namespaces, one /dev/shm ----------------------------------------------

JOB = """
import os, sys, time
import numpy as np
import ladle
from ladle._runtime.shm import sweep_orphans
from workers_support import Pairs

rendezvous, me = sys.argv[1], sys.argv[2]
assert os.getpid() == 1, os.getpid()
started = time.time()
loader = ladle.DataLoader(Pairs(48, (3, 32, 32)), batch_size=8, num_workers=2)
swept, tokens = 0, set()
for epoch in range(60):
    for k, (x, y) in enumerate(loader):
        assert y.tolist() == list(range(8 * k, 8 * k + 8)), (epoch, k, y)
        assert (x == y.reshape(-1, 1, 1, 1)).all(), (epoch, k)
        if k != 1:
            continue
        if epoch == 0:  # both jobs hold slabs here: wait for the other one, then look
            open(os.path.join(rendezvous, me), "w").close()
            deadline = time.monotonic() + 60
            while len(os.listdir(rendezvous)) < 2:
                assert time.monotonic() < deadline, "the other job never got here"
                time.sleep(0.01)
        tokens.update(n.split("-")[2].split(".")[0] for n in os.listdir("/dev/shm"))
        swept += sweep_orphans("/dev/shm")  # the other job's live slabs must survive
        if epoch == 0:
            open(os.path.join(rendezvous, me + ".looked"), "w").close()
            while len(os.listdir(rendezvous)) < 4:
                assert time.monotonic() < deadline, "the other job never looked"
                time.sleep(0.01)
loader.close()
print("JOB", me, epoch + 1, swept, len(tokens), started, time.time(), flush=True)
"""

RUNNER = """
import os, subprocess, sys, tempfile
job, timeout = sys.argv[1], float(sys.argv[2])
with tempfile.TemporaryDirectory() as rendezvous:
    jobs = [
        subprocess.Popen(
            ["unshare", "-p", "-f", "--mount-proc", "--kill-child",
             sys.executable, "-c", job, rendezvous, name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("a", "b")
    ]
    for process in jobs:
        out, err = process.communicate(timeout=timeout)
        print(out.strip() or "JOB failed", process.returncode, err[-3000:].replace("\\n", " | "))
print("LEFT", sorted(os.listdir("/dev/shm")))
"""


def test_two_jobs_in_separate_pid_namespaces_share_dev_shm_cleanly() -> None:
    require_pid_namespaces()
    argv = [*private_shm("256m"), *python(RUNNER), textwrap.dedent(JOB), "200"]
    result = run(argv, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = lines(result, "JOB")
    assert len(jobs) == 2 and not any(j.startswith("failed") for j in jobs), result.stdout
    spans = []
    for job in jobs:
        name, epochs, swept, tokens, started, ended, code = job.split()[:7]
        assert (epochs, swept, code) == ("60", "0", "0"), job
        assert tokens == "2", f"job {name} did not see the other's slabs beside its own: {job}"
        spans.append((float(started), float(ended)))
    assert max(s for s, _ in spans) < min(e for _, e in spans), "the jobs did not overlap"
    assert lines(result, "LEFT") == ["[]"]


# -- SIGTERM and SIGKILL of the main process -------------------------------------------------

MAIN = """
import os, sys, time
import ladle
from workers_support import Pairs, child_pids, our_segments

class Busy(Pairs):
    def __getitem__(self, i):
        if i >= 16:  # the workers are deep in __getitem__ when the signal comes
            {busy}
        return super().__getitem__(i)

if __name__ == "__main__":
    loader = ladle.DataLoader(
        Busy(64, (3, 64, 64)), batch_size=4, num_workers=2, multiprocessing_context={context!r}
    )
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    print("READY", os.getpid(), *child_pids(), flush=True)
    print("NAMES", *our_segments(), flush=True)
    for batch in iterator:
        pass
"""
BUSY = {"sleep": "time.sleep(120)", "gil": "sum(range(10**11))"}  # the second holds the GIL


def start_main(
    folder: str, context: str, busy: str
) -> tuple[subprocess.Popen[str], int, list[int]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    script = os.path.join(folder, "main.py")  # a file: spawned workers import it for Busy
    with open(script, "w") as file:
        file.write(textwrap.dedent(MAIN).format(busy=BUSY[busy], context=context))
    process = subprocess.Popen(
        [sys.executable, script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    names = process.stdout.readline().split()
    if ready[:1] != ["READY"]:
        process.kill()
        _, err = process.communicate(timeout=30)
        pytest.fail(f"the main process did not start: {ready} {err}")
    pid, *workers = (int(p) for p in ready[1:])
    assert len(workers) == 2 and len(names) > 2, (workers, names)  # slabs and their lock
    return process, pid, workers


def finish(process: subprocess.Popen[str], workers: list[int]) -> None:
    """Whatever happened, leave nothing running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=30)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_sigterm_mid_epoch_kills_by_sigterm_and_leaves_nothing(context: str) -> None:
    folder = tempfile.mkdtemp()
    process, pid, workers = start_main(folder, context, "sleep")
    try:
        os.kill(pid, signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
        assert wait_gone(workers, 5) == [], "workers outlived their main process"
        assert our_segments(pid) == [], "segments outlived their main process"
    finally:
        finish(process, workers)
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("context", "busy"),
    [("fork", "sleep"), ("spawn", "sleep"), ("fork", "gil")],  # gil: PDEATHSIG alone can
)
def test_workers_busy_in_getitem_die_with_a_killed_main_process(context: str, busy: str) -> None:
    folder = tempfile.mkdtemp()
    process, pid, workers = start_main(folder, context, busy)
    try:
        os.kill(pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert wait_gone(workers, 5) == [], "workers outlived their main process"
        sweep_orphans(shm_directory())  # SIGKILL: nothing could clean up; the sweep can
        assert our_segments(pid) == []
    finally:
        finish(process, workers)
        shutil.rmtree(folder)


def test_workers_forked_from_a_thread_outlive_that_thread() -> None:
    # PDEATHSIG fires when the forking *thread* exits: it must not be set in these workers.
    code = """
    import os, threading
    import ladle
    from workers_support import Pairs, child_pids

    loader = ladle.DataLoader(Pairs(32), batch_size=4, num_workers=2, persistent_workers=True)
    first, tids = [], []

    def one_epoch():
        tids.append(threading.get_native_id())
        first.append(len(list(loader)))

    thread = threading.Thread(target=one_epoch)
    thread.start()
    thread.join()
    while os.path.exists(f"/proc/self/task/{tids[0]}"):  # until the OS thread is gone too
        pass
    workers = child_pids()
    second = len(list(loader))
    print("RESULT", first, second, len(workers), workers == child_pids())
    loader.close()
    """
    result = run(python(code), timeout=120)
    assert result.returncode == 0, result.stderr
    assert lines(result, "RESULT") == ["[8] 8 2 True"]


def test_forkserver_workers_wait_between_epochs() -> None:
    # Their parent is the forkserver, not the main process: idle, they must not take that
    # for their main process having died (they did after 1 s).
    code = """
    import time
    import ladle
    from workers_support import Pairs

    if __name__ == "__main__":
        loader = ladle.DataLoader(
            Pairs(32), batch_size=4, num_workers=2, persistent_workers=True,
            multiprocessing_context="forkserver",
        )
        first = len(list(loader))
        time.sleep(1.5)  # idle longer than a worker's check of its parent
        print("RESULT", first, len(list(loader)))
        loader.close()
    """
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "main.py")
        with open(script, "w") as file:
            file.write(textwrap.dedent(code))
        result = run([sys.executable, script], timeout=120)
    assert result.returncode == 0, result.stderr
    assert lines(result, "RESULT") == ["8 8"]


# -- epochs abandoned by break ---------------------------------------------------------------

BROKEN = """
import os
import ladle
from workers_support import Pairs

from ladle._runtime.shm import UNSIZED

def mapped_slabs():
    # Bytes of the slabs sized to batches; those lent before any batch had a size are sparse
    # (UNSIZED of address space, only the pages written in memory) and counted as one batch.
    total = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 and os.path.basename(fields[5]).startswith("ladle-"):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                total += 16 * 3 * 64 * 64 * 4 if high - low == UNSIZED else high - low
    return total

loader = ladle.DataLoader(
    Pairs(2048, (3, 64, 64)), batch_size=16, num_workers=2, persistent_workers={persistent}
)
fds, mapped = [], []
for epoch in range(40):
    for k, batch in enumerate(loader):
        if k == 1:
            break
    fds.append(len(os.listdir("/proc/self/fd")))
    mapped.append(mapped_slabs())
print("FDS", *fds)
print("MAPPED", *mapped)
del batch
loader.close()
print("AFTER", len(os.listdir("/proc/self/fd")), mapped_slabs())
"""


@pytest.mark.parametrize("persistent", [False, True])
def test_forty_broken_epochs_keep_fds_and_shared_memory_flat(persistent: bool) -> None:
    result = run(python(BROKEN.format(persistent=persistent)), timeout=240)
    assert result.returncode == 0, result.stderr
    fds = [int(n) for n in lines(result, "FDS")[0].split()]
    mapped = [int(n) for n in lines(result, "MAPPED")[0].split()]
    slab = 16 * 3 * 64 * 64 * 4  # a batch
    assert fds[-1] <= fds[9] + 1, f"open fds grew with broken epochs: {fds}"
    assert mapped[-1] <= mapped[9] + slab, f"mapped slabs grew with broken epochs: {mapped}"
    assert mapped[-1] <= 12 * slab, mapped  # kept per worker, plus in flight
    after_fds, after_mapped = (int(n) for n in lines(result, "AFTER")[0].split())
    assert after_mapped == 0 and after_fds <= fds[0], (after_fds, fds[0], after_mapped)
