"""Slabs and their names: unique per process, swept only when the owner's lock is free, reserved
up front with a pickled fallback and one warning, taken back when a pass is abandoned, and
unlinked by SIGTERM. Each test works in a directory of its own (not /dev/shm); the ones about
signals and processes run their scenario in a subprocess with a hard timeout."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from workers_support import our_segments

from ladle._runtime import cleanup, shm
from ladle._runtime.messages import SlabRef
from ladle._runtime.shm import SlabPool, sweep_orphans
from ladle._runtime.slab_writer import SlabWriter

TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(TESTS), "src")
SLAB = 1 << 20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def new_pool(directory: str, workers: int = 1, keep: int = 2) -> SlabPool:
    pool = SlabPool(directory, workers, keep)
    pool.need(SLAB)
    return pool


def lock_held(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- names -----------------------------------------------------------------------------------


def test_a_slab_is_named_by_pid_and_token_under_a_held_lock(directory: str) -> None:
    pool = new_pool(directory)
    ref = pool.lend(0)
    assert ref is not None
    match = re.fullmatch(rf"ladle-{os.getpid()}-([0-9a-f]{{8}})-\d+", ref.name)
    assert match, ref.name
    lock = f"ladle-{os.getpid()}-{match.group(1)}.lock"
    assert our_segments(directory=directory) == sorted([ref.name, lock])
    assert lock_held(os.path.join(directory, lock))
    claim = cleanup._claims[directory]
    assert claim.fd is not None and not os.get_inheritable(claim.fd), "close-on-exec"
    pool.close()
    assert os.listdir(directory) == []


def test_the_lock_file_goes_with_the_last_segment(directory: str) -> None:
    first, second = new_pool(directory), new_pool(directory)
    a, b = first.lend(0), second.lend(0)
    assert a is not None and b is not None
    assert a.name.rsplit("-", 1)[0] == b.name.rsplit("-", 1)[0], "one token per process"
    first.close()
    assert len(our_segments(directory=directory)) == 2  # b and the lock
    second.end_pass()  # names unlinked, memory kept for the next pass's forked workers
    assert os.listdir(directory) == []
    assert second.lend(0) == b  # kept mapped (forked workers inherit it): no name needed
    second.need(4 * SLAB)
    assert second.lend(0) is not None  # a new, bigger segment takes the lock again
    assert len(os.listdir(directory)) == 2
    second.close()


def test_names_taken_by_another_job_with_the_same_pid_are_skipped(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another job in another PID namespace, with our pid, alive: its lock held, a segment.
    theirs = f"ladle-{os.getpid()}-0badcafe"
    held = os.open(os.path.join(directory, f"{theirs}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    tokens = iter(["0badcafe", "0badcafe", "1234abcd"])
    monkeypatch.setattr(cleanup.secrets, "token_hex", lambda n: next(tokens))
    monkeypatch.setattr(cleanup, "_serial", iter([0, 0, 1]))
    # ... and an earlier process of ours left "1234abcd-0" (a lock-less name: never swept)
    stale = os.path.join(directory, f"ladle-{os.getpid()}-1234abcd-0")
    open(stale, "w").close()
    try:
        pool = new_pool(directory)
        ref = pool.lend(0)
        assert ref is not None and ref.name == f"ladle-{os.getpid()}-1234abcd-1"
        assert lock_held(os.path.join(directory, f"{theirs}.lock"))
        pool.close()
        assert sorted(os.listdir(directory)) == sorted([f"{theirs}.lock", os.path.basename(stale)])
    finally:
        os.close(held)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))


# -- the sweep -------------------------------------------------------------------------------


def test_the_sweep_removes_only_what_a_dead_owner_left(directory: str) -> None:
    def make(*names: str) -> None:
        for name in names:
            open(os.path.join(directory, name), "w").close()

    live = ["ladle-7-aaaaaaaa.lock", "ladle-7-aaaaaaaa-0", "ladle-7-aaaaaaaa-1"]
    dead = ["ladle-8-bbbbbbbb.lock", "ladle-8-bbbbbbbb-0", "ladle-8-bbbbbbbb-3"]
    unjudged = ["ladle-9-5", "ladle-32767-0", "ladle-10-cccccccc-0", "ladle-8-bbbbbbbb", "x"]
    make(*live, *dead, *unjudged)
    # The live owner holds its lock, as a process in another PID namespace would.
    held = os.open(os.path.join(directory, live[0]), os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert sweep_orphans(directory) == 2
        assert sorted(os.listdir(directory)) == sorted(live + unjudged)
        assert sweep_orphans(directory) == 0
    finally:
        os.close(held)
    assert sweep_orphans(directory) == 2  # its lock free now: that owner is gone too
    assert sorted(os.listdir(directory)) == sorted(unjudged)
    for name in unjudged:
        os.unlink(os.path.join(directory, name))


OWNER = """
import os, sys
from ladle._runtime.shm import SlabPool
pool = SlabPool({directory!r}, 1, 2)
pool.need(1 << 20)
refs = [pool.lend(0) for _ in range(2)]
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def test_a_live_process_keeps_its_slabs_and_a_killed_ones_are_swept(directory: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    with subprocess.Popen(
        [sys.executable, "-c", OWNER.format(directory=directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as owner:
        try:
            assert owner.stdout is not None
            pid = int(owner.stdout.readline())
            names = our_segments(pid, directory)
            assert len(names) == 3, names  # two slabs and the lock file
            assert sweep_orphans(directory) == 0
            assert our_segments(pid, directory) == names
        finally:
            owner.kill()
            owner.wait(30)
    assert sweep_orphans(directory) == 2
    assert os.listdir(directory) == []


# -- no room ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "it is full"),
        (errno.EROFS, "it is read-only"),
        (errno.EACCES, "this user may not write there"),
    ],
)
def test_a_slab_that_cannot_be_reserved_means_pickled_batches_and_one_warning(
    directory: str, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    def fail(fd: int, offset: int, length: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "posix_fallocate", fail)
    monkeypatch.setattr(shm, "sparse_slabs", lambda: False)  # slabs reserved whole, here
    pool = new_pool(directory, workers=2)
    with pytest.warns(UserWarning) as caught:
        assert pool.lend(0) is None
    assert len(caught) == 1
    message = str(caught[0].message)
    total, free = shm.space(directory)
    for part in [
        f"could not create a 1.0 MiB shared-memory slab in {directory}: {reason}",
        f"{directory} is {total / 2**20:.1f} MiB with ",
        "travel pickled through the workers' pipes",
        "docker run --shm-size=2g",
        f"mount -o remount,rw,size=2G {directory}",
        "emptyDir volume with medium: Memory",
    ]:
        assert part in message, message
    assert "  " not in message and free > 0
    assert os.listdir(directory) == [], "the failed slab and the lock file are gone"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert pool.lend(1) is None
        assert pool.lend(0) is None
    monkeypatch.undo()  # space came back: loans work again
    ref = pool.lend(0)
    assert ref is not None and os.path.getsize(os.path.join(directory, ref.name)) == ref.size
    pool.close()


def test_too_little_free_space_is_seen_before_creating_anything(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.statvfs(directory)

    class Tiny:
        f_frsize, f_blocks, f_bavail = 4096, 16384, 100  # 64 MiB, 400 KiB free

    monkeypatch.setattr(os, "statvfs", lambda path: Tiny() if path == directory else real)
    pool = new_pool(directory)
    with pytest.warns(UserWarning, match=r"it is full .*is 64\.0 MiB with 0\.4 MiB free"):
        assert pool.lend(0) is None
    assert os.listdir(directory) == []
    pool.close()


def test_a_free_slab_of_another_worker_is_lent_when_no_new_one_can_be_made(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = new_pool(directory, workers=2)
    ref = pool.lend(0)
    assert ref is not None
    pool.give_back(ref)
    monkeypatch.setattr(shm, "_check_room", _no_space)
    with pytest.warns(UserWarning, match="it is full"):
        assert pool.lend(1) == ref
    pool.close()


def _no_space(directory: str, size: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)


def test_the_worker_pickles_what_finds_no_slab(directory: str) -> None:
    big = np.arange(SLAB // 8, dtype=np.float64)
    writer = SlabWriter(directory)
    for ref in [None, SlabRef(f"ladle-{os.getpid()}-deadbeef-0", 2 * SLAB)]:  # none; gone
        writer.begin(ref)
        assert writer.allocate(big.shape, big.dtype) is None
        payload, used, needed = writer.encode({"x": big})
        assert not used and needed == big.nbytes
        assert isinstance(payload["x"], np.ndarray)
        np.testing.assert_array_equal(payload["x"], big)
    writer.close()


# -- taking slabs back -----------------------------------------------------------------------


def test_reclaim_takes_back_the_slabs_of_tasks_that_never_report(directory: str) -> None:
    fds = open_fds()
    pool = new_pool(directory, workers=2, keep=2)
    refs = [pool.lend(w) for w in (0, 0, 0, 1, 1, 1)]
    assert all(r is not None for r in refs)
    assert pool.reclaim(refs[:1]) == 1 and pool.reclaim(refs[:1]) == 0
    assert pool.reclaim() == 5  # the rest; two per worker stay free, two go
    assert len(os.listdir(directory)) == 4 + 1
    assert sum(not s.buffer.closed for s in pool._slabs.values()) == 4
    assert open_fds() <= fds + 4 + 1  # a mapping keeps an fd (Python < 3.13), plus the lock
    again = [pool.lend(w) for w in (0, 0, 1, 1)]
    assert {r.name for r in again if r is not None} <= {r.name for r in refs if r is not None}
    pool.end_pass()  # the workers are gone: whatever they had comes back, names go
    assert pool._lent == set() and os.listdir(directory) == []
    pool.close()
    gc.collect()
    assert open_fds() == fds


def test_a_slab_destroyed_while_viewed_is_unmapped_when_the_view_dies(directory: str) -> None:
    fds = open_fds()
    pool = new_pool(directory)
    ref = pool.lend(0)
    assert ref is not None
    slab = pool._slabs[ref.name]
    slab.buffer[:8] = b"ladle!!!"
    view = pool.views(ref, {"x": shm.ShmArray(0, (8,), "|u1")})["x"]
    pool.close()  # unlinks; the mapping stays while viewed
    assert bytes(view) == b"ladle!!!" and not slab.buffer.closed
    assert os.listdir(directory) == []
    del view, slab
    gc.collect()
    assert open_fds() == fds, "the mapping (and its fd) went with the last view"


# -- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_unlinks_the_slabs_and_still_kills(directory: str) -> None:
    code = f"""
    import os, signal
    from ladle._runtime import cleanup
    from ladle._runtime.shm import SlabPool

    class Marker:
        def emergency_close(self):
            open(os.path.join({directory!r}, "closed-by-handler"), "w").close()

    marker = Marker()
    cleanup.register(marker)
    pool = SlabPool({directory!r}, 1, 2)
    pool.need(1 << 20)
    ref = pool.lend(0)
    assert cleanup.handler_installed()
    print(sorted(os.listdir({directory!r})), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    print("still alive")
    """
    result = run_python(code)
    assert result.returncode == -signal.SIGTERM, result.stdout + result.stderr
    assert "ladle-" in result.stdout and "still alive" not in result.stdout
    assert os.listdir(directory) == ["closed-by-handler"]
    os.unlink(os.path.join(directory, "closed-by-handler"))


@pytest.mark.parametrize("theirs", ["handler", "SIG_IGN"])
def test_a_users_sigterm_disposition_is_never_replaced(directory: str, theirs: str) -> None:
    install = (
        "signal.signal(signal.SIGTERM, lambda s, f: print('theirs', flush=True))"
        if theirs == "handler"
        else "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    code = f"""
    import os, signal
    {install}
    from ladle._runtime import cleanup
    from ladle._runtime.shm import SlabPool
    pool = SlabPool({directory!r}, 1, 2)
    pool.need(1 << 20)
    ref = pool.lend(0)
    assert not cleanup.handler_installed()
    os.kill(os.getpid(), signal.SIGTERM)
    print("alive", len(os.listdir({directory!r})))
    pool.close()
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["alive", "2"]
    assert ("theirs" in result.stdout) == (theirs == "handler")


def test_the_handler_comes_and_goes_with_the_resources(directory: str) -> None:
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL or cleanup._resources:
        pytest.skip("SIGTERM is handled here already (the runner, or resources still alive)")
    pool = new_pool(directory)
    assert cleanup.handler_installed()
    ref = pool.lend(0)
    pool.close()  # the pool, then its slab's lock: both unregistered
    assert ref is not None and not cleanup.handler_installed()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    other = threading.Thread(target=lambda: new_pool(directory).close())
    other.start()
    other.join(30)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "not from another thread"


def test_a_forked_child_owns_nothing_of_its_parents(directory: str) -> None:
    code = f"""
    import os, sys
    from ladle._runtime import cleanup
    from ladle._runtime.shm import SlabPool
    pool = SlabPool({directory!r}, 1, 2)
    pool.need(1 << 20)
    ref = pool.lend(0)
    before = sorted(os.listdir({directory!r}))
    child = os.fork()
    if child == 0:
        ok = cleanup._claims == {{}} and not cleanup.handler_installed()
        pool.close()  # a copy of the parent's pool: must not touch the parent's names
        if not ok:
            os._exit(1)
        sys.exit(0)  # a normal exit runs atexit: no effect on the parent's names either
    _, status = os.waitpid(child, 0)
    print(os.waitstatus_to_exitcode(status), sorted(os.listdir({directory!r})) == before)
    pool.close()
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]
