"""Process-tree memory from /proc, and the ``ladle bench`` command that reports it."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ladle import bench
from ladle.bench.memory import (
    MEASURES,
    Measure,
    MemorySampler,
    descendants,
    process_memory,
    supported,
    tree_memory,
)
from ladle.cli import main
from ladle.dataset import Dataset
from ladle.demo import Digits

MIB = 1 << 20
TORCH = importlib.util.find_spec("torch") is not None
linux_only = pytest.mark.skipif(not supported("rss"), reason="reads /proc/<pid>/status (Linux)")
measures = pytest.mark.parametrize(
    "measure",
    [
        "rss",
        pytest.param(
            "pss",
            marks=pytest.mark.skipif(
                not supported("pss"), reason="needs Pss_Anon or Pss_File in smaps_rollup"
            ),
        ),
    ],
)

# A process that holds memory on command. With argument 1 it first starts a copy of itself with
# argument 0 that shares its stdin and stdout, and only waits for it: the memory is then held
# by a grandchild of the test, below the pid the test measures.
ALLOCATOR = """
import mmap, os, subprocess, sys
if sys.argv[1] != "0":
    raise SystemExit(subprocess.call([sys.executable, __file__, "0"]))
print(os.getpid(), flush=True)
held = None
for line in sys.stdin:
    command, argument = line.split()
    if command == "alloc":
        held = b"\\x01" * (int(argument) << 20)  # written, so resident
    elif command == "free":
        held = None
    elif command == "map":
        with open(argument, "rb") as file:
            held = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        sum(held[i] for i in range(0, len(held), mmap.PAGESIZE))  # fault every page in
    elif command == "fork":  # a child that inherits the heap and touches none of it
        read_end, write_end = os.pipe()
        if os.fork() == 0:
            os.close(write_end)
            os.read(read_end, 1)  # returns once the parent has exited and closed its end
            os._exit(0)
        os.close(read_end)
    print("ok", flush=True)
"""


class Allocator:
    def __init__(self, process: subprocess.Popen[str], leaf: int) -> None:
        self.process, self.pid, self.leaf = process, process.pid, leaf

    def send(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "ok\n", f"the allocator failed on {command!r}"


@contextmanager
def allocator(tmp_path: Path, depth: int = 0) -> Iterator[Allocator]:
    script = tmp_path / "allocator.py"
    script.write_text(ALLOCATOR)
    process = subprocess.Popen(
        [sys.executable, str(script), str(depth)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    leaf = None
    try:
        assert process.stdout is not None
        leaf = int(process.stdout.readline())
        yield Allocator(process, leaf)
    finally:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()  # the leaf's loop ends, then its parent's wait
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if leaf is not None and leaf != process.pid:
                os.kill(leaf, 9)
            process.kill()
            process.wait()
        process.stdout.close()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path``, from /proc/self/mountinfo."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        mount = before.split()[4]
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, after.split()[0]
    return kind


# -- memory ----------------------------------------------------------------------------------


@linux_only
@measures
def test_tree_memory_counts_anonymous_memory_of_descendants(
    tmp_path: Path, measure: Measure
) -> None:
    with allocator(tmp_path, depth=1) as held:
        assert held.leaf in descendants(held.pid)
        before = tree_memory(held.pid, measure)
        held.send("alloc 64")
        grown = tree_memory(held.pid, measure) - before
        leaf = process_memory(held.leaf, measure)
    assert 60 * MIB <= grown <= 80 * MIB, f"grew by {grown / MIB:.1f} MiB for 64 MiB"
    assert leaf >= 60 * MIB, "the memory is the grandchild's"


@linux_only
@measures
def test_mapped_file_pages_do_not_count(tmp_path: Path, measure: Measure) -> None:
    if filesystem(tmp_path) == "tmpfs":
        pytest.skip("a file on tmpfs is shared memory, and counted as such")
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x02" * (64 * MIB))
    with allocator(tmp_path) as held:
        before, file_before = tree_memory(held.pid, measure), status_kib(held.pid, "RssFile")
        held.send(f"map {data}")
        file_pages = (status_kib(held.pid, "RssFile") - file_before) * 1024
        grown = tree_memory(held.pid, measure) - before
    assert file_pages >= 60 * MIB, "the mapped file should be resident, or the test means nothing"
    assert grown < 8 * MIB, f"64 MiB of file pages counted as {grown / MIB:.1f} MiB"


@linux_only
def test_a_forked_childs_inherited_heap_counts_once_under_pss(tmp_path: Path) -> None:
    if not supported("pss"):
        pytest.skip("needs Pss_Anon or Pss_File in smaps_rollup")
    with allocator(tmp_path) as held:
        held.send("alloc 64")
        before = {measure: tree_memory(held.pid, measure) for measure in MEASURES}
        held.send("fork 0")
        (child,) = descendants(held.pid)
        grown = {measure: tree_memory(held.pid, measure) - before[measure] for measure in MEASURES}
        child_pss = process_memory(child, "pss")
    # RSS counts the 64 MiB the child shares, untouched, with its parent a second time; PSS
    # splits those pages between the two, so the tree's sum stays where it was.
    assert grown["rss"] >= 60 * MIB, f"rss grew by {grown['rss'] / MIB:.1f} MiB"
    assert grown["pss"] < 8 * MIB, f"pss grew by {grown['pss'] / MIB:.1f} MiB for a fork"
    assert child_pss >= 28 * MIB, "the child carries half of the shared pages"


@linux_only
def test_bad_measures_are_refused() -> None:
    with pytest.raises(ValueError, match="measure='uss'"):
        tree_memory(os.getpid(), "uss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="measure='uss'"):
        MemorySampler(os.getpid(), measure="uss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_load=0"):
        MemorySampler(os.getpid(), max_load=0)


@linux_only
@measures
def test_sampler_keeps_a_peak_that_is_gone_by_the_end(tmp_path: Path, measure: Measure) -> None:
    with allocator(tmp_path) as held, MemorySampler(held.pid, 0.005, measure=measure) as sampler:
        held.send("alloc 64")
        seen = len(sampler.samples)
        deadline = time.monotonic() + 10
        while len(sampler.samples) < seen + 2:  # a reading taken entirely after the allocation
            assert time.monotonic() < deadline, "the sampler thread took no readings"
            time.sleep(0.001)
        held.send("free 0")
    assert sampler.peak is not None
    first, last = sampler.samples[0].bytes, sampler.samples[-1].bytes
    assert sampler.peak - first >= 60 * MIB
    assert sampler.peak - last >= 50 * MIB, "the last reading should come after the free"
    assert sampler.max_processes == 1
    assert sampler.rss_peak is not None and sampler.rss_peak >= sampler.peak - MIB
    assert sampler.stop() == sampler.peak  # idempotent


@linux_only
def test_a_process_that_is_gone(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with pytest.raises(ProcessLookupError, match=str(process.pid)):
        tree_memory(process.pid)
    with MemorySampler(process.pid) as sampler:
        pass
    assert sampler.peak is None and sampler.samples == []
    with pytest.raises(ValueError, match="interval=0"):
        MemorySampler(os.getpid(), interval=0)


# -- run_bench -------------------------------------------------------------------------------


class Squares(Dataset[tuple[np.ndarray, int]]):
    """A dataset object made in the test, pickled to the benchmark's child."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return np.full(4, index * index, dtype=np.int64), index


class Broken(Squares):
    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        raise KeyError(f"sample {index} is missing")


def test_run_bench_takes_a_dataset_object() -> None:
    (result,) = bench.run_bench(
        Squares(100), batch_size=16, num_workers=0, epochs=2, limit=3, libraries=("ladle",)
    )
    assert (result.library, result.batches, result.samples) == ("ladle", 6, 96)
    assert result.seconds > 0 and result.samples_per_s == pytest.approx(96 / result.seconds)
    assert 0 < result.first_batch_s <= result.seconds
    if supported("rss"):
        assert result.peak_bytes is not None and result.baseline_bytes is not None
        assert result.peak_bytes >= result.baseline_bytes > 0


def test_run_bench_takes_a_factory_and_counts_a_short_epoch() -> None:
    (result,) = bench.run_bench(
        functools.partial(Digits, 40), batch_size=16, num_workers=0, libraries=("ladle",)
    )
    assert (result.batches, result.samples) == (3, 40)


def test_a_failing_dataset_reports_the_error_from_the_child() -> None:
    with pytest.raises(bench.BenchError, match=r"the ladle run failed.*sample 0 is missing"):
        bench.run_bench(Broken(10), num_workers=0, shuffle=False, libraries=("ladle",))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_workers": -1}, "num_workers=-1"),
        ({"limit": 0}, "limit=0"),
        ({"worker_type": "fiber"}, "worker_type='fiber'"),
        ({"libraries": ("ladle", "jax")}, "libraries=.*jax"),
        ({"libraries": "ladle"}, "libraries='ladle'"),
    ],
)
def test_run_bench_rejects_bad_settings(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bench.run_bench(Squares(10), **options)  # type: ignore[arg-type]


def test_run_bench_needs_a_picklable_dataset() -> None:
    with pytest.raises(ValueError, match="picklable"):
        bench.run_bench(lambda: Squares(10), libraries=("ladle",))


def test_torch_is_skipped_with_a_note_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    notes: list[str] = []
    assert bench.run_bench(Squares(10), libraries=("torch",), out=notes.append) == []
    assert notes == ["torch is not installed, so its run is skipped; pip install torch to compare"]


def test_table_without_torch_has_no_ratio() -> None:
    result = bench.Result("ladle", "0.1.0", 10, 1, 0.5, 20.0, 0.01, 3 * MIB, MIB, 2)
    table = bench.format_table([result])
    assert "-" in table.splitlines()[2].split()[3]
    assert "3 MiB (2 procs)" in table and "+2 MiB" in table


# -- the command -----------------------------------------------------------------------------


def test_command_prints_a_table_and_writes_json_and_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot, report = tmp_path / "bench.png", tmp_path / "bench.json"
    argv = ["bench", "--limit", "3", "--batch-size", "16", "--workers", "0"]
    assert main([*argv, "--plot", str(plot), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1]}
    assert "samples/s" in rows["library"] and "built-in digits" in out
    assert "x" in rows["ladle"].split()[3]
    if TORCH:
        assert rows["torch"].split()[3] == "1.00x"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = bench.read_json(report)
    assert [r.library for r in results] == (["ladle", "torch"] if TORCH else ["ladle"])
    assert all(r.batches == 3 and r.samples == 48 for r in results)
    about = json.loads(report.read_text())
    assert about["settings"]["batch_size"] == 16 and about["size"] == 12_000
    bench.write_json(
        tmp_path / "again.json", results, **{k: about[k] for k in about.keys() - {"results"}}
    )
    assert json.loads((tmp_path / "again.json").read_text()) == about


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch-size", "0"],
        ["--workers", "-1"],
        ["--limit", "x"],
        ["--libraries", "ladle,jax"],
        ["--worker-type", "fiber"],
        ["--no-such-option"],
    ],
)
def test_bad_options_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *argv])
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_missing_path_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "does not exist" in err
