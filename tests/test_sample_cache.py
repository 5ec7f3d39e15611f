"""ladle.cache: samples computed once and read from shared memory after, by every process;
the batches never change; nothing is left in /dev/shm."""

from __future__ import annotations

import collections
import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cache_support import Decoded, Drawing, RandomCrop, Slow, calls
from script_support import PRELUDE, run_json
from workers_support import our_segments

import ladle
from ladle._runtime.sample_store import StoreGoneError
from ladle._runtime.shm import shm_directory, space
from ladle.testing import assert_batches_equal, assert_resumes

N, CROP = 40, 16
ROOMY = 1 << 20


def epochs(dataset: Any, count: int = 3, **options: Any) -> list[list[Any]]:
    if options.get("num_workers"):
        options.setdefault("timeout", 60)
    loader = ladle.DataLoader(dataset, batch_size=8, shuffle=True, seed=5, **options)
    try:
        return [[(x.copy(), y.copy()) for x, y in loader] for _ in range(count)]
    finally:
        loader.close()


def assert_same(got: list[list[Any]], expected: list[list[Any]]) -> None:
    assert len(got) == len(expected)
    for e, (a, b) in enumerate(zip(got, expected, strict=True)):
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_batches_equal(x, y, f"epoch {e} batch {k}")


@pytest.fixture
def reference(tmp_path: Path) -> list[list[Any]]:
    return epochs(RandomCrop(Decoded(N, str(tmp_path / "uncached")), CROP))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_workers": 2},
        {"num_workers": 2, "persistent_workers": True},
        {"num_workers": 2, "worker_type": "thread"},
        {"num_workers": 2, "multiprocessing_context": "spawn", "persistent_workers": True},
    ],
    ids=["inline", "fork", "fork-persistent", "threads", "spawn-persistent"],
)
def test_batches_equal_uncached_and_later_epochs_compute_nothing(
    tmp_path: Path, reference: list[list[Any]], options: dict[str, Any]
) -> None:
    counter = str(tmp_path / "calls")
    with ladle.cache(Decoded(N, counter), max_bytes=ROOMY) as cached:
        first = epochs(RandomCrop(cached, CROP), 1, **options)
        assert calls(counter) == N  # every sample computed once, by whichever process
        assert cached.stored == N
        later = epochs(RandomCrop(cached, CROP), 3, **options)
        assert calls(counter) == N
    assert_same(first + later[1:], reference)


def test_a_resumed_loader_over_the_cache_gives_the_uninterrupted_batches(tmp_path: Path) -> None:
    counter = str(tmp_path / "calls")
    uncached = RandomCrop(Decoded(12, str(tmp_path / "uncached")), 4)

    def loader(dataset: Any, **options: Any) -> ladle.DataLoader[Any]:
        return ladle.DataLoader(dataset, batch_size=4, shuffle=True, seed=3, **options)

    with ladle.cache(Decoded(12, counter), max_bytes=ROOMY) as cached:
        top = RandomCrop(cached, 4)
        assert_resumes(
            lambda: loader(top, num_workers=2, worker_type="thread"),
            resume_with=lambda: loader(top),
        )
        assert calls(counter) == 12
        assert_same(epochs(top, 2), epochs(uncached, 2))


def test_samples_are_read_only_views_of_the_cache(tmp_path: Path) -> None:
    inner = Decoded(4, str(tmp_path / "calls"))
    with ladle.cache(inner, max_bytes=ROOMY) as cached:
        for _ in range(2):  # computed and stored, then read
            image, label = cached[1]
            assert not image.flags.writeable and label == 1
            np.testing.assert_array_equal(image, inner[1][0])
            with pytest.raises(ValueError, match="read-only"):
                image[0, 0, 0] = 7
        assert calls(str(tmp_path / "calls")) == 3  # once by the cache, twice by the checks
        assert len(cached) == 4 and cached.used_bytes > image.nbytes


def test_when_full_the_first_samples_stay_and_the_rest_are_recomputed(
    tmp_path: Path, reference: list[list[Any]]
) -> None:
    counter = str(tmp_path / "calls")
    with ladle.cache(Decoded(N, counter), max_bytes=ROOMY) as probe:
        probe[0]
        record = probe.used_bytes  # every sample has the same shape: the same record size
    keep = 10
    with ladle.cache(Decoded(N, counter), max_bytes=keep * record + record // 2) as cached:
        with pytest.warns(UserWarning, match=r"ladle.cache is full: sample \d+ does not fit"):
            first = epochs(RandomCrop(cached, CROP), 1)
        assert cached.stored == keep and cached.used_bytes == keep * record
        before = calls(counter)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once per process: not again
            later = epochs(RandomCrop(cached, CROP), 3)
        assert calls(counter) - before == 3 * (N - keep)
        assert cached.stored == keep
    assert_same(first + later[1:], reference)


def test_the_first_come_are_the_ones_kept(tmp_path: Path) -> None:
    counter = str(tmp_path / "calls")
    with ladle.cache(Decoded(8, counter), max_bytes=ROOMY) as probe:
        probe[0]
        record = probe.used_bytes
    with ladle.cache(Decoded(8, counter), max_bytes=3 * record) as cached:
        with pytest.warns(UserWarning, match="full"):
            for i in [5, 2, 7, 0, 1]:
                cached[i]
        flags = [cached[i][0].flags.writeable for i in range(8)]
        assert flags == [True, True, False, True, True, False, True, False]


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_workers_filling_the_same_samples_never_read_a_torn_one(worker_type: str) -> None:
    """Every batch asks for the same 64 big samples, so both workers compute and store them at
    once, and each reads what the other may be writing."""

    class Check(ladle.Dataset[int]):
        def __init__(self, base: Any) -> None:
            self.base = base

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, i: int) -> int:
            sample = self.base[i]
            return int(sample.shape == (1 << 18,) and bool(np.all(sample == i % 251)))

    batches = [list(range(64))] * 4
    for _ in range(4):  # a new cache each time: the race is in filling it
        with ladle.cache(Slow(64, 1 << 18), max_bytes=32 << 20) as cached:
            loader = ladle.DataLoader(
                Check(cached),
                batch_sampler=batches,
                num_workers=2,
                worker_type=worker_type,
                timeout=60,
            )
            assert all(bool(np.all(batch == 1)) for batch in loader)
            assert cached.stored == 64  # each once, though both workers computed it


def test_processes_racing_on_one_cache_only_ever_read_whole_samples() -> None:
    """Four forked processes read every sample of one cache, two in one order and two in the
    reverse, so each index is written by whichever gets there first while the others read it."""
    result = run_json(
        """
        import json, multiprocessing, os
        import numpy as np
        import ladle
        from cache_support import Slow

        def hammer(cached, seed):
            order = np.random.default_rng(0).permutation(len(cached))[:: 1 - 2 * (seed % 2)]
            for _ in range(3):
                for i in order.tolist():
                    sample = cached[i]
                    if sample.shape != (1 << 18,) or not np.all(sample == i % 251):
                        os._exit(3)
            os._exit(0)

        with ladle.cache(Slow(128, 1 << 18), max_bytes=40 << 20) as cached:
            context = multiprocessing.get_context("fork")
            racers = [context.Process(target=hammer, args=(cached, s)) for s in range(4)]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(60)
            codes = [racer.exitcode for racer in racers]
            print(json.dumps({"codes": codes, "stored": cached.stored}))
        """
    )
    assert result == {"codes": [0, 0, 0, 0], "stored": 128}


def test_samples_it_cannot_store_pass_through_with_one_warning() -> None:
    class Objects(ladle.Dataset[Any]):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> Any:
            return (np.array([i, "x"], dtype=object), {"n": i}) if i else {"fine": np.ones(2)}

    with ladle.cache(Objects(), max_bytes=ROOMY) as cached:
        with pytest.warns(UserWarning, match=r"cannot store sample 1: the sample\[0\] has dtype"):
            assert cached[1][0][0] == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cached[2][1] == {"n": 2}
            assert cached[0]["fine"].sum() == 2.0
        assert cached.stored == 1


def test_a_sample_of_a_type_pickle_cannot_name_passes_through() -> None:
    Local = collections.namedtuple("Local", "x")  # local: pickle cannot name it

    class Locals(ladle.Dataset[Any]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Any:
            return Local(np.full(3, i))

    with ladle.cache(Locals(), max_bytes=ROOMY) as cached:
        with pytest.warns(UserWarning, match="pickling its structure failed"):
            assert cached[1].x.tolist() == [1, 1, 1]
        assert cached.stored == 0


def test_no_room_left_in_shared_memory_passes_samples_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ladle.cache(Decoded(4, str(tmp_path / "calls")), max_bytes=ROOMY) as cached:

        def full(fd: int, data: Any, offset: int) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "pwrite", full)
        with pytest.warns(UserWarning, match="could not store sample 2 in .*No space left"):
            assert cached[2][1] == 2
        monkeypatch.undo()
        assert cached.stored == 0
        assert cached[2][1] == 2 and cached.stored == 1  # room again: stored


def test_no_room_names_the_directory_the_cache_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    with ladle.cache(Decoded(4, str(tmp_path / "calls")), ROOMY, directory=str(directory)) as c:

        def full(fd: int, data: Any, offset: int) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "pwrite", full)
        with pytest.warns(UserWarning) as caught:
            c[2]
        message = str(caught[0].message)
        assert f"medium: Memory at {directory}" in message, message  # not /dev/shm's advice


def test_a_dataset_that_draws_is_not_cached(tmp_path: Path) -> None:
    uncached = _loader(Drawing())
    reference = [b.copy() for _ in range(2) for b in uncached]
    with ladle.cache(Drawing(), max_bytes=ROOMY) as cached:
        loader = _loader(cached)
        with pytest.warns(UserWarning, match="drew from ladle.sample_rng"):
            got = [b.copy() for _ in range(2) for b in loader]
        assert cached.stored == 0
    for a, b in zip(got, reference, strict=True):
        assert_batches_equal(a, b)


def _loader(dataset: Any) -> ladle.DataLoader[Any]:
    return ladle.DataLoader(dataset, batch_size=2, seed=1)


def test_two_caches_never_share_samples_and_a_copy_reattaches_to_its_own(tmp_path: Path) -> None:
    a, b = Decoded(4, str(tmp_path / "a"), 8), Decoded(4, str(tmp_path / "b"), 9)
    with ladle.cache(a, max_bytes=ROOMY) as first, ladle.cache(b, max_bytes=ROOMY) as second:
        first[0], second[0]
        assert first[0][0].shape == (8, 8, 3) and second[0][0].shape == (9, 9, 3)
        copy = pickle.loads(pickle.dumps(first))
        np.testing.assert_array_equal(copy[0][0], a[0][0])
        assert copy.stored == 1
        copy.close()
        handle = pickle.dumps(second)
    with pytest.raises(StoreGoneError, match="is gone: the process that made the cache closed"):
        pickle.loads(handle)
    with pytest.raises(ValueError, match=r"this ladle\.cache is closed"):
        first[0]


def test_a_copy_refuses_a_file_that_is_not_its_cache(tmp_path: Path) -> None:
    inner = Decoded(4, str(tmp_path / "calls"))
    with ladle.cache(inner, max_bytes=ROOMY, directory=str(tmp_path)) as cached:
        handle = pickle.dumps(cached)
        (path,) = [
            p for p in tmp_path.iterdir() if p.name.startswith("ladle-") and "lock" not in p.name
        ]
        size = path.stat().st_size
    path.write_bytes(bytes(4096))  # another file under the same name
    with pytest.raises(StoreGoneError, match=r"is not this ladle\.cache's shared memory"):
        pickle.loads(handle)
    with path.open("r+b") as file:
        file.truncate(size)  # of the same size, without the cache's identity
    with pytest.raises(StoreGoneError, match=r"is not this ladle\.cache's shared memory"):
        pickle.loads(handle)
    path.unlink()


def test_a_cache_whose_dataset_changed_length_is_refused(tmp_path: Path) -> None:
    with ladle.cache(Decoded(4, str(tmp_path / "calls")), max_bytes=ROOMY) as cached:
        cached.dataset.n = 5
        with pytest.raises(ValueError, match="holds 4 samples but its dataset now has 5"):
            pickle.loads(pickle.dumps(cached))


def test_indices_outside_the_dataset_pass_through(tmp_path: Path) -> None:
    with ladle.cache(Decoded(4, str(tmp_path / "calls")), max_bytes=ROOMY) as cached:
        with pytest.raises(IndexError):
            cached[4]
        with pytest.raises(IndexError):
            cached[-1]  # Decoded refuses negative indices; the cache does not reinterpret them
        assert cached[np.int64(2)][1] == 2 and cached.stored == 1


@pytest.mark.parametrize(
    ("max_bytes", "error", "message"),
    [
        (0, ValueError, r"max_bytes should be an int >= 1, but got max_bytes=0"),
        (-5, ValueError, r"max_bytes should be an int >= 1, but got max_bytes=-5"),
        (1.5, TypeError, r"max_bytes should be an int, but got max_bytes=1.5 \(float\)"),
        ("1G", TypeError, r"max_bytes should be an int, but got max_bytes='1G'"),
        (True, TypeError, r"max_bytes should be an int, but got max_bytes=True"),
    ],
)
def test_bad_max_bytes_is_refused(max_bytes: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ladle.cache(Drawing(), max_bytes=max_bytes)
    assert our_segments() == []


def test_max_bytes_beyond_the_free_shared_memory_is_refused() -> None:
    total, free = space(shm_directory())
    if not total:
        pytest.skip("this /dev/shm has no size limit")
    with pytest.raises(ValueError, match=r"does not fit in .*free of.*pass a smaller max_bytes"):
        ladle.cache(Drawing(), max_bytes=free + (1 << 30))
    assert our_segments() == []


def test_what_is_not_a_map_style_dataset_is_refused() -> None:
    class Stream(ladle.IterableDataset[int]):
        def __iter__(self) -> Any:
            return iter(range(3))

    with pytest.raises(TypeError, match=r"ladle\.cache needs a map-style dataset"):
        ladle.cache(Stream(), max_bytes=ROOMY)

    class Endless(ladle.Dataset[int]):
        def __getitem__(self, i: int) -> int:
            return i

    with pytest.raises(TypeError, match=r"needs len\(dataset\) .* Endless has no __len__"):
        ladle.cache(Endless(), max_bytes=ROOMY)


# -- nothing left behind: each case in a process of its own, with a time limit --------------


def test_nothing_is_left_after_close_or_when_the_cache_and_its_loaders_are_dropped(
    tmp_path: Path,
) -> None:
    result = run_json(
        f"""
        import gc, json, os
        import ladle
        from cache_support import Decoded, RandomCrop
        from workers_support import our_segments

        cached = ladle.cache(Decoded(16, {str(tmp_path / "a")!r}), max_bytes=1 << 20)
        loader = ladle.DataLoader(RandomCrop(cached, 8), batch_size=4, num_workers=2)
        for _ in range(2):
            list(loader)
        during = len(our_segments())
        cached.close()
        cached.close()
        closed = our_segments()

        cached = ladle.cache(Decoded(16, {str(tmp_path / "b")!r}), max_bytes=1 << 20)
        loader = ladle.DataLoader(RandomCrop(cached, 8), batch_size=4, num_workers=2,
                                  persistent_workers=True)
        held = next(iter(loader))
        del loader, cached
        gc.collect()
        print(json.dumps({{"during": during, "closed": closed, "dropped": our_segments()}}))
        """
    )
    assert result["during"] == 2  # the store and the lock file
    assert result["closed"] == [] and result["dropped"] == []


_OWNER = """
    import os, sys
    import ladle
    from cache_support import Decoded

    cached = ladle.cache(Decoded(8, sys.argv[1]), max_bytes=1 << 20, directory=sys.argv[2])
    loader = ladle.DataLoader(cached, batch_size=2, num_workers=2, persistent_workers=True)
    batches = list(loader)
    print("ready", flush=True)
    {end}
"""


def _owner(tmp_path: Path, end: str) -> subprocess.Popen[str]:
    directory = tmp_path / "shm"
    directory.mkdir(exist_ok=True)
    code = PRELUDE + textwrap.dedent(_OWNER).format(end=end)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "calls"), str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_sigterm_of_the_owner_removes_its_cache(tmp_path: Path) -> None:
    with _owner(tmp_path, "sys.stdin.read()") as owner:  # blocks until killed
        try:
            assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
            assert len(os.listdir(tmp_path / "shm")) == 2
            owner.send_signal(signal.SIGTERM)
            assert owner.wait(timeout=60) == -signal.SIGTERM
        finally:
            owner.kill()
    assert os.listdir(tmp_path / "shm") == []


def test_a_killed_owners_cache_is_swept_by_the_next_cache(tmp_path: Path) -> None:
    with _owner(tmp_path, "os.kill(os.getpid(), 9)") as owner:
        try:
            assert owner.wait(timeout=60) == -signal.SIGKILL
        finally:
            owner.kill()
    left = os.listdir(tmp_path / "shm")
    assert len(left) == 2
    with ladle.cache(Drawing(), max_bytes=ROOMY, directory=str(tmp_path / "shm")):
        assert not set(left) & set(os.listdir(tmp_path / "shm"))
    assert os.listdir(tmp_path / "shm") == []
