"""Packing in parts: write_part per task, commit_parts once; write_shards(jobs=N), pack --jobs."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shard_support import assert_same

import ladle
from ladle.cli import main
from ladle.errors import FormatError, WorkerDiedError
from ladle.formats import PartError, PartManifest, ShardDataset, commit_parts, write_part
from ladle.formats.parts import PARTS
from ladle.formats.writer import write_shards


def sample(i: int) -> dict[str, Any]:
    # sizes vary, so shards close by bytes at places that depend on every earlier sample
    return {"x": np.full(i % 5 + 1, i, np.int32), "name": f"s{i}" * (i % 3), "i": i}


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_parts_commit_in_part_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    pieces = [range(0, 30), range(30, 37), range(37, 37), range(37, 60)]
    manifests = []
    for part in (3, 1, 2, 0):  # tasks finish in any order
        data = [sample(i) for i in pieces[part]]
        manifests.append(write_part(data, out, part=part, samples_per_shard=8))
    assert not (out / "index.json").exists()  # nothing reads as a dataset before the commit
    given = [
        manifests[0],
        pickle.loads(pickle.dumps(manifests[1])),
        json.loads(json.dumps(manifests[2].to_json())),
        PartManifest.from_json(manifests[3].to_json()),
    ]
    commit_parts(out, given, parts=4, metadata={"source": "test"})
    dataset = ShardDataset(out)
    assert len(dataset) == 60 and dataset.metadata == {"source": "test"}
    for i in range(60):
        assert_same(dataset[i], sample(i))
    assert dataset.shard_sizes == [8, 8, 8, 6, 7, 8, 8, 7]  # a shard never spans two parts
    assert sorted(p.name for p in out.iterdir())[-1] == "shard-00007.ladle"
    assert not (out / PARTS).exists()


def test_parts_found_on_disk_equal_one_write_when_they_end_on_shards(tmp_path: Path) -> None:
    samples = [sample(i) for i in range(65)]
    write_shards(samples, tmp_path / "one", samples_per_shard=10, metadata={"m": 1})
    for part, (start, stop) in enumerate([(0, 30), (30, 50), (50, 65)]):
        write_part(iter(samples[start:stop]), tmp_path / "parts", part=part, samples_per_shard=10)
    commit_parts(tmp_path / "parts", metadata={"m": 1})  # manifests=None: read from disk
    assert files(tmp_path / "parts") == files(tmp_path / "one")


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_give_the_files_of_one_job(tmp_path: Path, jobs: int) -> None:
    samples = [sample(i) for i in range(500)]
    write_shards(samples, tmp_path / "one", shard_bytes=700)
    write_shards(samples, tmp_path / "many", shard_bytes=700, jobs=jobs)
    one = files(tmp_path / "one")
    assert len(one) > 10 and files(tmp_path / "many") == one
    assert len(set(ShardDataset(tmp_path / "one").shard_sizes[:-1])) == 1  # one grid step


def test_fixed_size_samples_shard_as_a_stream_does(tmp_path: Path) -> None:
    samples = [np.full(100, i, np.uint8) for i in range(50)]
    write_shards(samples, tmp_path / "map", shard_bytes=1000, jobs=2)
    write_shards(iter(samples), tmp_path / "stream", shard_bytes=1000)
    assert files(tmp_path / "map") == files(tmp_path / "stream")


def test_pack_jobs_matches_one_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    np.save(arrays / "x.npy", np.arange(3000 * 16, dtype=np.float32).reshape(3000, 16))
    np.save(arrays / "y.npy", np.arange(3000) % 10)
    for jobs in ("1", "2"):
        argv = ["pack", str(arrays), str(tmp_path / jobs), "--shard-mb", "0.02", "--quiet"]
        assert main([*argv, "--jobs", jobs]) == 0
    assert "records   3,000 in" in capsys.readouterr().out
    assert files(tmp_path / "2") == files(tmp_path / "1")
    assert main(["pack", str(arrays), str(tmp_path / "0"), "--jobs", "0"]) == 2
    assert "--jobs should be 1 or more, got 0" in capsys.readouterr().err


def test_bad_jobs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"jobs should be an int >= 1, but got jobs=0; pass the"):
        write_shards([1], tmp_path / "a", jobs=0)
    with pytest.raises(TypeError, match=r"jobs should be an int, but got jobs=2.0"):
        write_shards([1], tmp_path / "a", jobs=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"jobs=2 splits a dataset .* pass jobs=1 to write an"):
        write_shards(iter([1, 2]), tmp_path / "a", jobs=2)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_a_missing_part_is_named_and_nothing_changes(tmp_path: Path) -> None:
    write_part([1, 2], tmp_path, part=0)
    write_part([5, 6], tmp_path, part=2)
    with pytest.raises(PartError, match=r"part 1 of 3 is missing .*: no task has written it"):
        commit_parts(tmp_path)
    with pytest.raises(
        PartError, match=r"parts 1, 3 of 4 are missing .*: no task has written them"
    ):
        commit_parts(tmp_path, parts=4)
    write_part([3, 4], tmp_path, part=1)
    with pytest.raises(PartError, match=r"part 2 is in .*part-00002-\w+, but parts=2: it is left"):
        commit_parts(tmp_path, parts=2)
    assert not (tmp_path / "index.json").exists()
    commit_parts(tmp_path, parts=3)
    assert list(ShardDataset(tmp_path)) == [1, 2, 3, 4, 5, 6]


def test_parts_of_other_schemas_are_refused(tmp_path: Path) -> None:
    write_part([{"a": 1}], tmp_path, part=0)
    write_part([], tmp_path, part=1)  # a part without samples fits any schema
    write_part([{"a": "x"}], tmp_path, part=2)
    with pytest.raises(
        PartError, match=r"part 2's samples differ from part 0's: field 'a' is \{.*'str'.*int"
    ):
        commit_parts(tmp_path)
    write_part([{"a": np.zeros(2, np.float32)}], tmp_path, part=2)
    with pytest.raises(PartError, match=r"field 'a' is \{'name': 'a', 'kind': 'array', 'dtype"):
        commit_parts(tmp_path)
    write_part([(1,)], tmp_path, part=2)
    with pytest.raises(PartError, match=r"they are tuples, not dicts"):
        commit_parts(tmp_path)
    write_part([{"a": 7}], tmp_path, part=2)
    commit_parts(tmp_path)
    assert list(ShardDataset(tmp_path)) == [{"a": 1}, {"a": 7}]


def test_bad_manifests(tmp_path: Path) -> None:
    first = write_part([1], tmp_path / "a", part=0)
    other = write_part([1], tmp_path / "b", part=0)
    with pytest.raises(PartError, match=r"part 0 is given twice in manifests"):
        commit_parts(tmp_path / "a", [first, first])
    write_part([9], tmp_path / "c", part=0)  # the same part number, other data
    with pytest.raises(PartError, match=r"written again since this manifest, with other data"):
        commit_parts(tmp_path / "c", [other])
    write_part([2], tmp_path / "d", part=1)
    with pytest.raises(
        PartError, match=r"not in .*d/\.parts: the manifest was written for .*/b, so"
    ):
        commit_parts(tmp_path / "d", [other])
    with pytest.raises(PartError, match=r"a part manifest should be what write_part returned"):
        commit_parts(tmp_path / "a", [{"part": 0}])
    with pytest.raises(TypeError, match=r"manifests should be a list .* wrap a single manifest"):
        commit_parts(tmp_path / "a", first)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"part should be an int >= 0, but got part=-1; number"):
        write_part([1], tmp_path / "a", part=-1)
    commit_parts(tmp_path / "a", [other])  # another directory's part, but the same shards
    assert list(ShardDataset(tmp_path / "a")) == [1]


def test_committing_twice_is_refused(tmp_path: Path) -> None:
    manifests = [write_part([1, 2], tmp_path, part=0)]
    commit_parts(tmp_path, manifests)
    with pytest.raises(PartError, match=r"these parts were committed already"):
        commit_parts(tmp_path, manifests)
    with pytest.raises(PartError, match=r"holds no parts to commit, but a committed shard set"):
        commit_parts(tmp_path)
    with pytest.raises(FileExistsError, match=r"already holds ladle shards; pass overwrite=True"):
        write_part([3], tmp_path, part=0)
    write_part([3], tmp_path, part=0, overwrite=True)
    with pytest.raises(FileExistsError, match=r"already holds ladle shards"):
        commit_parts(tmp_path)
    assert list(ShardDataset(tmp_path)) == [1, 2]  # a refused commit changes nothing
    commit_parts(tmp_path, overwrite=True)
    assert list(ShardDataset(tmp_path)) == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "shard-00000.ladle"]


def test_a_rerun_replaces_the_parts_earlier_output(tmp_path: Path) -> None:
    stale = write_part([1, 2, 3], tmp_path, part=0)
    fresh = write_part([4, 5], tmp_path, part=0)
    assert [p.name for p in (tmp_path / PARTS).iterdir()] == [fresh.attempt]
    assert stale.attempt != fresh.attempt
    commit_parts(tmp_path)
    assert list(ShardDataset(tmp_path)) == [4, 5]


def test_a_part_that_raises_leaves_nothing(tmp_path: Path) -> None:
    def failing() -> Any:
        for i in range(40):
            if i == 25:
                raise KeyError("sample 25 is broken")
            yield np.full(10, i)

    write_part([np.zeros(10, np.int64)], tmp_path, part=0)
    with pytest.raises(KeyError, match="sample 25 is broken"):
        write_part(failing(), tmp_path, part=1, samples_per_shard=10)
    assert [p.name.split("-")[1] for p in (tmp_path / PARTS).iterdir()] == ["00000"]
    with pytest.raises(PartError, match=r"part 1 of 2 is missing"):
        commit_parts(tmp_path, parts=2)


KILLED_PART = """
import sys, numpy as np
from ladle.formats import write_part
def samples():
    for i in range(100):
        if i == 25:
            open(sys.argv[2], "w").close()  # two shards are written, the third is pending
            sys.stdin.read()  # wait to be killed
        yield np.full(50, i)
write_part(samples(), sys.argv[1], part=1, samples_per_shard=10)
"""


def test_a_killed_part_is_missing_until_it_runs_again(tmp_path: Path) -> None:
    out, ready = tmp_path / "out", tmp_path / "ready"
    write_part([np.full(50, -1)], out, part=0)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PART, str(out), str(ready)], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # the child says when it is mid-write
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdin is not None
        child.stdin.close()
    (pending,) = (p for p in (out / PARTS).iterdir() if p.name.startswith(".part-00001-"))
    assert len(list(pending.iterdir())) == 2  # its shards, but no manifest
    with pytest.raises(
        PartError, match=r"part 1 of 2 is missing .*: a task started part 1 but did not"
    ):
        commit_parts(out, parts=2)
    with pytest.raises(FormatError, match=r"there is no index\.json"):
        ShardDataset(out)
    write_part((np.full(50, i) for i in range(100)), out, part=1, samples_per_shard=10)
    commit_parts(out, parts=2)
    dataset = ShardDataset(out)
    assert [int(dataset[i][0]) for i in range(101)] == [-1, *range(100)]
    assert not (out / PARTS).exists()


class FailsAt(ladle.Dataset[Any]):
    def __init__(self, n: int, at: int, how: str) -> None:
        self.n, self.at, self.how = n, at, how

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if i == self.at:
            if self.how == "kill":
                import os

                os.kill(os.getpid(), signal.SIGKILL)
            raise LookupError(f"sample {i} cannot be read")
        return np.full(20, i, np.int16)


def test_a_job_that_raises_stops_the_write_and_keeps_the_old_data(tmp_path: Path) -> None:
    write_shards([1, 2, 3], tmp_path)
    before = files(tmp_path)
    with pytest.raises(LookupError, match="sample 170 cannot be read") as caught:
        write_shards(FailsAt(200, 170, "raise"), tmp_path, shard_bytes=200, jobs=2, overwrite=True)
    assert "in job pid" in "".join(caught.value.__notes__)
    assert files(tmp_path) == before  # no parts, no half-written shard, the old data intact


KILLED_JOB = """
import json, sys
sys.path.insert(0, sys.argv[2])
from test_pack_parts import FailsAt
from workers_support import child_pids
from ladle.errors import WorkerDiedError
from ladle.formats import write_shards
try:
    write_shards(FailsAt(200, 170, "kill"), sys.argv[1], shard_bytes=200, jobs=2)
except WorkerDiedError as error:
    print(json.dumps({"error": str(error), "children": child_pids()}))
"""


def test_a_killed_job_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    tests = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", KILLED_JOB, str(tmp_path / "out"), tests],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "was killed by SIGKILL" in report["error"] and report["children"] == []
    assert files(tmp_path / "out") == {}  # the other job's part was removed too
    assert WorkerDiedError


SPAWNED = """
import json, sys
from ladle._runtime.jobs import run_jobs
print(json.dumps(run_jobs(abs, [-1, -2, -3, 4], 2, start_method="spawn")))
"""


def test_jobs_run_under_spawn_too() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SPAWNED], capture_output=True, text=True, timeout=60
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1, 2, 3, 4], result.stderr


def test_a_commit_that_fails_on_the_way_can_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ladle.formats import parts

    manifests = [write_part([i, i + 1], tmp_path, part=i // 2) for i in (0, 2, 4)]

    def broken(directory: Path, index: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(parts, "write_index", broken)
    with pytest.raises(OSError, match="disk full"):
        commit_parts(tmp_path, manifests)
    with pytest.raises(FormatError, match=r"there is no index\.json"):
        ShardDataset(tmp_path)  # the shards are in place, but nothing reads as a dataset
    monkeypatch.undo()
    commit_parts(tmp_path, manifests)  # the parts stayed whole: linked, not moved
    assert list(ShardDataset(tmp_path)) == [0, 1, 2, 3, 4, 5]


class Slow(ladle.Dataset[Any]):
    """Samples that take a while; sample ``at`` tells, through a file, that writing is under way."""

    def __init__(self, n: int, at: int, ready: str) -> None:
        self.n, self.at, self.ready = n, at, ready

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if i == self.at:
            open(self.ready, "w").close()
        time.sleep(0.01)  # a slow source, so that the interrupt comes mid-write
        return np.full(20, i, np.int16)


INTERRUPTED = """
import json, os, signal, sys, threading, time
sys.path.insert(0, sys.argv[3])
from test_pack_parts import Slow
from workers_support import child_pids
from ladle.formats import write_shards
out, ready = sys.argv[1], sys.argv[2]
def interrupt():
    while not os.path.exists(ready):
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
try:
    write_shards(Slow(400, 150, ready), out, shard_bytes=400, jobs=2)
except KeyboardInterrupt:
    print(json.dumps({"children": child_pids(), "left": sorted(os.listdir(out))}))
"""


def test_ctrl_c_stops_every_job_and_leaves_nothing(tmp_path: Path) -> None:
    tests = str(Path(__file__).parent)
    out, ready = tmp_path / "out", tmp_path / "ready"
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, str(out), str(ready), tests],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    assert json.loads(lines[-1]) == {"children": [], "left": []}
