"""The shard format: write_shards, ShardDataset and ShardStream, round trips and the loader."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shard_support import assert_same, datasets

import ladle
from ladle.errors import FormatError
from ladle.formats import ShardDataset, ShardStream, write_shards
from ladle.formats.schema import SchemaError

ROUND_TRIP = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(samples=datasets(), per_shard=st.integers(1, 8), data=st.data())
def test_round_trip_random_vectorised_and_streaming(
    samples: list[Any], per_shard: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        write_shards(samples, directory, samples_per_shard=per_shard)
        dataset = ShardDataset(directory)
        assert len(dataset) == len(samples)
        for i, want in enumerate(samples):
            assert_same(dataset[i], want)
            assert_same(dataset[i - len(samples)], want)
        if samples:
            order = data.draw(
                st.lists(st.integers(-len(samples), len(samples) - 1), min_size=1, max_size=12)
            )
            batch = dataset.__getitems__(order)
            assert len(batch) == len(order)
            for got, i in zip(batch, order, strict=True):
                assert_same(got, samples[i], loose_arrays=True)
            batch = dataset.__getitems__(np.asarray(order, dtype=np.int64))
            for got, i in zip(batch, order, strict=True):
                assert_same(got, samples[i], loose_arrays=True)
        streamed = list(ShardStream(directory))
        assert len(streamed) == len(samples)
        for got, want in zip(streamed, samples, strict=True):
            assert_same(got, want)
        for got, want in zip(pickle.loads(pickle.dumps(dataset)), samples, strict=False):
            assert_same(got, want)


def make_samples(n: int = 40) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
            "tokens": rng.integers(0, 100, rng.integers(1, 6)).astype(np.int32),
            "label": i % 7,
            "name": f"sample-{i}",
        }
        for i in range(n)
    ]


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    write_shards(make_samples(), tmp_path / "data", samples_per_shard=16, metadata={"a": [1]})
    return tmp_path / "data"


def test_directory_layout_index_and_metadata(shards: Path) -> None:
    names = sorted(p.name for p in shards.iterdir())
    assert names == ["index.json", "shard-00000.ladle", "shard-00001.ladle", "shard-00002.ladle"]
    dataset = ShardDataset(shards)
    assert dataset.metadata == {"a": [1]}
    assert dataset.shard_sizes == [16, 16, 8]
    assert ShardDataset(shards / "index.json").shard_sizes == [16, 16, 8]
    assert dataset.schema is not None and dataset.schema.names == [
        "image",
        "tokens",
        "label",
        "name",
    ]


def test_one_shard_file_reads_on_its_own(shards: Path) -> None:
    single = ShardDataset(shards / "shard-00001.ladle")
    assert len(single) == 16
    assert_same(single[0], make_samples()[16])
    assert single.shard_files == [shards / "shard-00001.ladle"]


def test_fixed_shape_arrays_are_zero_copy_views_of_the_map(shards: Path) -> None:
    dataset = ShardDataset(shards)
    image = dataset[3]["image"]
    assert not image.flags.writeable and not image.flags.owndata
    shard = dataset._open()[0]
    assert np.shares_memory(image, shard.columns[0])
    with pytest.raises(ValueError, match=r"read-only"):
        image[0, 0, 0] = 1


def test_vectorised_batch_stacks_fixed_fields_and_lists_the_rest(shards: Path) -> None:
    dataset = ShardDataset(shards)
    batch = dataset.__getitems__([39, 0, 17, 5])
    assert isinstance(batch, ladle.GatheredBatch)
    columns = batch.columns
    assert columns["image"].shape == (4, 4, 5, 3) and columns["image"].flags.c_contiguous
    assert columns["label"] == [39 % 7, 0, 17 % 7, 5]
    assert isinstance(columns["tokens"], list) and columns["name"][0] == "sample-39"


def test_loader_batches_equal_per_sample_collation(tmp_path: Path) -> None:
    samples = [{"image": s["image"], "label": s["label"]} for s in make_samples()]
    write_shards(samples, tmp_path, samples_per_shard=16)
    vectorised = ladle.DataLoader(ShardDataset(tmp_path), batch_size=8, seed=3, shuffle=True)
    per_sample = ladle.DataLoader(samples, batch_size=8, seed=3, shuffle=True)
    for a, b in zip(vectorised, per_sample, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
        assert a["label"].dtype == b["label"].dtype


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_workers_give_the_batches_of_the_main_process(shards: Path, worker_type: str) -> None:
    def run(workers: int) -> list[Any]:
        loader = ladle.DataLoader(
            ShardDataset(shards, transform=lambda s: (s["image"], s["label"])),
            batch_size=8,
            shuffle=True,
            seed=1,
            num_workers=workers,
            worker_type=worker_type,
        )
        return list(loader)

    for a, b in zip(run(0), run(2), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_spawned_workers_reopen_the_maps(shards: Path) -> None:
    loader = ladle.DataLoader(
        ShardDataset(shards), batch_size=None, num_workers=1, multiprocessing_context="spawn"
    )
    got = [sample["name"] for sample in loader]
    assert got == [f"sample-{i}" for i in range(40)]
    assert len(pickle.dumps(ShardDataset(shards))) < 4096


def test_stream_splits_records_across_workers_and_resumes(shards: Path) -> None:
    def names(loader: ladle.DataLoader) -> list[str]:
        return [name for batch in loader for name in batch["name"]]

    stream = ShardStream(shards)
    assert names(ladle.DataLoader(stream, batch_size=4, collate_fn=ladle.PadCollate())) == [
        f"sample-{i}" for i in range(40)
    ]
    loader = ladle.DataLoader(stream, batch_size=4, num_workers=2, collate_fn=_names)
    everything = [name for batch in loader for name in batch]
    assert sorted(everything) == sorted(f"sample-{i}" for i in range(40))
    ladle.testing.assert_resumes(
        lambda: ladle.DataLoader(stream, batch_size=4, num_workers=2, collate_fn=_names),
        epochs=1,
    )


def _names(samples: list[dict[str, Any]]) -> list[str]:
    return [sample["name"] for sample in samples]


def test_stream_from_the_dataset_keeps_transform(shards: Path) -> None:
    dataset = ShardDataset(shards, transform=lambda s: s["label"])
    assert list(dataset.stream()) == [i % 7 for i in range(40)]


def test_empty_dataset_round_trips(tmp_path: Path) -> None:
    write_shards([], tmp_path)
    dataset = ShardDataset(tmp_path)
    assert len(dataset) == 0 and list(ShardStream(tmp_path)) == [] and dataset.schema is None
    with pytest.raises(IndexError, match=r"index 0 is out of range for ShardDataset of size 0"):
        dataset[0]


def test_shard_bytes_bounds_each_shard(tmp_path: Path) -> None:
    samples = [np.full(1000, i, dtype=np.uint8) for i in range(20)]
    write_shards(samples, tmp_path, shard_bytes=3000)
    assert ShardDataset(tmp_path).shard_sizes == [3] * 6 + [2]


def test_iterable_and_torch_inputs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    write_shards((({"x": torch.arange(3) * i}) for i in range(5)), tmp_path)
    got = ShardDataset(tmp_path)[4]["x"]
    np.testing.assert_array_equal(got, [0, 4, 8])


def test_index_errors(shards: Path) -> None:
    dataset = ShardDataset(shards)
    with pytest.raises(
        IndexError,
        match=r"index 40 is out of range for ShardDataset of size 40; valid indices are -40\.\.39",
    ):
        dataset[40]
    with pytest.raises(IndexError, match=r"index -41 is out of range"):
        dataset.__getitems__([0, -41])
    with pytest.raises(TypeError):
        dataset["0"]  # type: ignore[index]


# -- writer errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([{"a": 1}, {"b": 1}], "sample 1 has keys \\['b'\\], but sample 0 had \\['a'\\]"),
        ([(1, 2), (1,)], "sample 1 should be a tuple of 2 values, like sample 0"),
        ([{"a": 1}, {"a": "x"}], "field 'a' of sample 1 is str, but it was int in sample 0"),
        (
            [np.zeros(2, np.float32), np.zeros(2, np.float64)],
            "field 'value' of sample 1 is an array of dtype float64",
        ),
        ([np.zeros(2), np.zeros((2, 2))], "with 2 dimensions, but sample 0's was float64 with 1"),
        ([{"a": None}], "field 'a' of sample 0 is NoneType None; shards hold NumPy arrays"),
        ([{"a": [1, 2]}], "nested containers are not supported"),
        ([np.array(["x"])], "has dtype <U1; shards hold bool, integer, float and complex"),
        ([np.array([object()])], "has dtype object"),
        ([{"a": 2**64}], "is the int 18446744073709551616, outside int64"),
        ([{"a": np.float32(1)}, {"a": np.float64(1)}], "is a NumPy float64 scalar, but sample"),
        ([{"a": "x"}, {"a": "\ud800"}], "field 'a' of sample 1 is a str that UTF-8 cannot"),
        ([np.zeros((1,) * 32)], "has 32 dimensions, more than the 31 a shard holds"),
        ([{1: 2}], "key 1; shard fields are named by strings"),
        ([()], "sample 0 is an empty tuple; it has no fields"),
    ],
)
def test_samples_that_do_not_fit_are_refused(
    tmp_path: Path, samples: list[Any], message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        write_shards(samples, tmp_path / "out")
    assert (
        not list((tmp_path / "out").glob("*.ladle")) and not (tmp_path / "out/index.json").exists()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shard_bytes": 0}, "shard_bytes should be an int >= 1, but got shard_bytes=0"),
        ({"samples_per_shard": -1}, "samples_per_shard=-1; pass a positive int, or None"),
        ({"metadata": {"a": object()}}, "metadata should be JSON-serialisable"),
    ],
)
def test_bad_writer_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_shards([1], tmp_path, **kwargs)


def test_existing_shards_need_overwrite(shards: Path) -> None:
    with pytest.raises(FileExistsError, match=r"already holds ladle shards; pass overwrite=True"):
        write_shards([1, 2], shards)
    write_shards([1, 2], shards, overwrite=True)
    assert list(ShardDataset(shards)) == [1, 2]
    assert sorted(p.name for p in shards.iterdir()) == ["index.json", "shard-00000.ladle"]


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"out_dir .* is a file"):
        write_shards([1], tmp_path / "f")


def test_interrupted_write_leaves_nothing_that_reads_as_valid(tmp_path: Path) -> None:
    def samples() -> Any:
        for i in range(50):
            if i == 37:
                raise KeyboardInterrupt
            yield np.full(10, i)

    with pytest.raises(KeyboardInterrupt):
        write_shards(samples(), tmp_path, samples_per_shard=10)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FormatError, match=r"there is no index.json"):
        ShardDataset(tmp_path)


def test_a_missing_or_foreign_shard_is_reported(shards: Path) -> None:
    (shards / "shard-00001.ladle").unlink()
    with pytest.raises(FormatError, match=r"shard-00001.ladle: the index lists this shard, but"):
        ShardDataset(shards)


def test_a_shard_swapped_in_from_another_write_is_reported(shards: Path, tmp_path: Path) -> None:
    write_shards(make_samples()[::-1], tmp_path / "other", samples_per_shard=16)
    (tmp_path / "other/shard-00000.ladle").replace(shards / "shard-00000.ladle")
    with pytest.raises(FormatError, match=r"the shard was replaced or the index is stale"):
        ShardDataset(shards)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; pass a shard directory"):
        ShardDataset(tmp_path / "nope")


def test_index_is_json_with_a_version(shards: Path) -> None:
    document = json.loads((shards / "index.json").read_text())
    assert document["index"]["version"] == 1 and document["index"]["format"] == "ladle.shards"


KILLED_WRITER = """
import sys, numpy as np, ladle
def samples():
    for i in range(100):
        if i == 25:
            open(sys.argv[2], "w").close()  # two shards are complete, the third is pending
            sys.stdin.read()  # wait to be killed
        yield np.full(50, i)
ladle.write_shards(samples(), sys.argv[1], samples_per_shard=10)
"""


def test_a_killed_writer_leaves_no_shard_that_reads_as_valid(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    out, ready = tmp_path / "out", tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(out), str(ready)], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
        assert child.stdin is not None
        child.stdin.close()
    (staging,) = out.iterdir()  # the two complete shards wait aside, never in place
    assert staging.name.startswith(".writing-") and len(list(staging.iterdir())) == 2
    with pytest.raises(FormatError, match=r"there is no index\.json"):
        ShardDataset(out)
    write_shards([1, 2, 3], out)  # removes the dead writer's staging directory
    assert list(ShardDataset(out)) == [1, 2, 3]
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-00000.ladle"]


def test_a_failed_overwrite_keeps_the_old_dataset(shards: Path) -> None:
    with pytest.raises(SchemaError):
        write_shards([{"a": 1}, {"a": "x"}], shards, overwrite=True, samples_per_shard=1)
    assert [s["name"] for s in ShardDataset(shards)] == [f"sample-{i}" for i in range(40)]
    assert not [p for p in shards.iterdir() if p.name.startswith(".")]


def test_other_files_in_out_dir_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".notes.partial").write_text("mine")
    (tmp_path / "README").write_text("mine")
    write_shards([1], tmp_path)
    write_shards([2], tmp_path, overwrite=True)
    assert (tmp_path / ".notes.partial").read_text() == "mine" == (tmp_path / "README").read_text()


def test_numpy_strings_are_stored_as_str_and_bytes(tmp_path: Path) -> None:
    write_shards([{"s": np.str_("né"), "b": np.bytes_(b"x")}], tmp_path)
    assert ShardDataset(tmp_path)[0] == {"s": "né", "b": b"x"}


def test_metadata_must_survive_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="should come back from JSON unchanged"):
        write_shards([1], tmp_path, metadata={"a": (1, 2)})


def test_bad_indices_and_positions(shards: Path) -> None:
    dataset = ShardDataset(shards)
    with pytest.raises(TypeError, match="indices should be integers, but got an array of float64"):
        dataset.__getitems__([1.5])
    with pytest.raises(IndexError, match="out of range"):
        dataset.__getitems__(np.array([2**63], dtype=np.uint64))
    with pytest.raises(ValueError, match="position should be an int >= 0, but got position=-2"):
        next(ShardStream(shards).iter_from(-2))
    with pytest.raises(IndexError, match="record 16 is out of range for a shard of 16"):
        dataset.check(0, 16)


def test_a_replaced_single_shard_is_caught_after_pickling(shards: Path, tmp_path: Path) -> None:
    single = ShardDataset(shards / "shard-00000.ladle")
    blob = pickle.dumps(single)
    write_shards(make_samples()[::-1], tmp_path / "other", samples_per_shard=16)
    (tmp_path / "other/shard-00000.ladle").replace(shards / "shard-00000.ladle")
    with pytest.raises(FormatError, match="differ from the index: the shard was replaced"):
        pickle.loads(blob)[0]


def test_an_index_naming_a_fifo_or_directory_does_not_hang(shards: Path) -> None:
    import os

    for make in (os.mkfifo, os.mkdir):
        target = shards / "shard-00001.ladle"
        target.rmdir() if target.is_dir() else target.unlink()
        make(target)
        with pytest.raises(
            FormatError, match=r"shard-00001\.ladle: (it is not a regular file|cannot)"
        ):
            ShardDataset(shards)


def test_large_arrays_go_to_the_heap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ladle.formats import shardfile

    monkeypatch.setattr(shardfile, "MAX_FIXED_BYTES", 64)
    samples = [{"small": np.zeros(4), "big": np.full(16, i)} for i in range(3)]
    write_shards(samples, tmp_path)
    dataset = ShardDataset(tmp_path)
    shard = dataset._open()[0]
    assert [slot.shape for slot in shard.slots] == [(4,), None]
    for got, want in zip(dataset, samples, strict=True):
        assert_same(got, want)


def test_progress_without_tqdm_prints_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if it were not installed
    write_shards(list(range(5)), tmp_path, progress=True)
    assert capsys.readouterr().err.endswith(f"writing {tmp_path}: 5/5\n")


def test_forked_workers_share_which_records_were_verified(shards: Path) -> None:
    dataset = ShardDataset(shards, transform=lambda s: s["label"])
    assert not any(shard._verified.any() for shard in dataset._open())
    loader = ladle.DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context="fork")
    assert sum(len(batch) for batch in loader) == 40
    assert all(shard._verified.all() for shard in dataset._open())  # set by the workers
