"""NpyDataset: memory-mapped .npy files as rows, gathered per batch, pickled as paths only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ladle
from ladle.errors import FormatError
from ladle.formats.npy import NpyDataset
from ladle.gathered import GatheredBatch

N = 23


def save(path: Path, array: Any) -> Path:
    np.save(path, array)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three arrays of N rows: images, labels and per-row strings."""
    folder = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(0)
    return {
        "x": save(folder / "x.npy", rng.random((N, 4, 3), dtype=np.float32)),
        "y": save(folder / "y.npy", np.arange(N, dtype=np.int64) * 10),
        "name": save(folder / "name.npy", np.array([f"row{i}" for i in range(N)])),
    }


def loaded(files: dict[str, Path]) -> dict[str, np.ndarray]:
    return {key: np.load(path) for key, path in files.items()}


def test_one_file_gives_rows(files: dict[str, Path]) -> None:
    x = np.load(files["x"])
    ds = NpyDataset(files["x"])
    assert len(ds) == N
    np.testing.assert_array_equal(ds[3], x[3])
    np.testing.assert_array_equal(ds[-1], x[N - 1])
    assert ds.shapes == (N, 4, 3) and ds.dtypes == np.float32
    assert ds.files == str(files["x"])
    batch = ds.__getitems__([5, 0, -2])
    assert isinstance(batch, GatheredBatch) and len(batch) == 3
    np.testing.assert_array_equal(batch.columns, x[[5, 0, -2]])


def test_sequence_gives_tuples_and_mapping_gives_dicts(files: dict[str, Path]) -> None:
    arrays = loaded(files)
    pair = NpyDataset([files["x"], str(files["y"])])
    x, y = pair[4]
    np.testing.assert_array_equal(x, arrays["x"][4])
    assert y == 40 and isinstance(y, np.int64)
    assert pair.shapes == ((N, 4, 3), (N,))
    named = NpyDataset(files)
    sample = named[7]
    assert list(sample) == ["x", "y", "name"]
    assert sample["name"] == "row7" and sample["y"] == 70
    assert named.dtypes == {key: array.dtype for key, array in arrays.items()}
    batch = named.__getitems__(np.array([1, 2], dtype=np.int64))
    assert isinstance(batch, GatheredBatch) and list(batch.columns) == ["x", "y", "name"]
    assert batch.columns["name"].tolist() == ["row1", "row2"]


@given(indices=st.lists(st.integers(-N, N - 1), max_size=12), as_array=st.booleans())
def test_getitems_equals_stacking_getitem(
    files: dict[str, Path], indices: list[int], as_array: bool
) -> None:
    ds = NpyDataset([files["x"], files["y"], files["name"]])
    request: Any = np.asarray(indices, dtype=np.int64) if as_array else indices
    batch = ds.__getitems__(request)
    assert isinstance(batch, GatheredBatch) and len(batch) == len(indices)
    for column, position in zip(batch.columns, range(3), strict=True):
        expected = [ds[i][position] for i in indices]
        assert column.shape[0] == len(indices)
        if expected:
            np.testing.assert_array_equal(column, np.stack(expected))
    for sample, i in zip(batch, indices, strict=True):  # as a sequence of samples, too
        np.testing.assert_array_equal(sample[0], ds[i][0])
        assert sample[1:] == ds[i][1:]


def test_out_of_range_and_non_integer_indices(files: dict[str, Path]) -> None:
    ds = NpyDataset({"x": files["x"], "y": files["y"]})
    for bad in (N, -N - 1):
        with pytest.raises(IndexError, match=rf"index {bad} is out of range .* size {N}"):
            ds[bad]
        with pytest.raises(IndexError, match=rf"index {bad} is out of range"):
            ds.__getitems__([0, bad, 1])
    with pytest.raises(
        TypeError, match=r"index should be an int, but got index=slice.*__getitems__"
    ):
        ds[1:3]  # type: ignore[index]
    assert ds[np.int32(2)]["y"] == 20


def test_rows_are_read_only_views_of_the_map(tmp_path: Path) -> None:
    path = save(tmp_path / "a.npy", np.arange(30, dtype=np.float64).reshape(10, 3))
    ds = NpyDataset(path)
    mapped = ds.arrays
    assert isinstance(mapped.base, np.memmap) and not mapped.flags.writeable
    row = ds[4]
    assert np.shares_memory(row, mapped) and not row.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        row[0] = 1.0
    writer = np.load(path, mmap_mode="r+")
    writer[4, 0] = -1.0
    writer.flush()
    del writer
    assert row[0] == -1.0, "a row is the file's page, not a copy"


def test_files_of_different_lengths_are_refused_naming_them(tmp_path: Path) -> None:
    a = save(tmp_path / "a.npy", np.zeros((5, 2)))
    b = save(tmp_path / "b.npy", np.zeros(4))
    with pytest.raises(
        ValueError, match=r"same number of rows.*files\['a'\] .*a\.npy'\) has 5, .*has 4"
    ):
        NpyDataset({"a": a, "b": b})
    with pytest.raises(ValueError, match=r"files\[1\] .*b\.npy'\) has 4"):
        NpyDataset([a, b])


def test_unsafe_or_unusable_files_are_refused(tmp_path: Path) -> None:
    objects = save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"objects\.npy.*Python objects.*never unpickles"):
        NpyDataset(objects)
    scalar = save(tmp_path / "scalar.npy", np.float32(3.0))
    with pytest.raises(ValueError, match=r"0-d array.*np\.atleast_1d"):
        NpyDataset(scalar)
    archive = tmp_path / "both.npz"
    np.savez(archive, x=np.zeros(3))
    with pytest.raises(FormatError, match=r"cannot read .*both\.npz.* as a \.npy file") as e:
        NpyDataset(archive)
    assert e.value.path == str(archive)
    with pytest.raises(FileNotFoundError):
        NpyDataset(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="at least one"):
        NpyDataset([])
    with pytest.raises(TypeError, match="files should be a path"):
        NpyDataset(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"files\[0\] should be a path"):
        NpyDataset([3])  # type: ignore[list-item]


def test_pickle_holds_paths_not_data(tmp_path: Path) -> None:
    big = np.random.default_rng(1).random((1000, 1024), dtype=np.float32)  # 4 MiB
    path = save(tmp_path / "big.npy", big)
    ds = NpyDataset({"big": path, "label": save(tmp_path / "label.npy", np.arange(1000))})
    assert len(pickle.dumps(np.load(path, mmap_mode="r"))) > big.nbytes  # what we avoid
    data = pickle.dumps(ds)
    assert len(data) < 2000
    copy = pickle.loads(data)
    assert len(copy) == 1000 and copy.shapes == ds.shapes
    np.testing.assert_array_equal(copy[999]["big"], big[999])
    batch = copy.__getitems__([3, 1])
    np.testing.assert_array_equal(batch.columns["big"], big[[3, 1]])
    assert len(pickle.dumps(copy)) == len(data), "still paths only after reading"


def test_unpickling_refuses_a_file_that_changed(tmp_path: Path) -> None:
    path = save(tmp_path / "a.npy", np.zeros((4, 2)))
    data = pickle.dumps(NpyDataset(path))
    save(path, np.zeros((5, 2)))
    copy = pickle.loads(data)
    with pytest.raises(FormatError, match=r"changed since .*\(4, 2\).*\(5, 2\)"):
        copy[0]


def test_default_collate_stacks_the_columns(files: dict[str, Path]) -> None:
    arrays = loaded(files)
    ds = NpyDataset(files)
    batch = ladle.default_collate(ds.__getitems__([2, 9, 4]))
    np.testing.assert_array_equal(batch["x"], arrays["x"][[2, 9, 4]])
    np.testing.assert_array_equal(batch["y"], [20, 90, 40])
    assert batch["name"].tolist() == ["row2", "row9", "row4"]


def test_spawned_workers_give_the_same_batches(files: dict[str, Path]) -> None:
    arrays = loaded(files)
    ds = NpyDataset([files["x"], files["y"]])

    def run(**options: Any) -> list[Any]:
        loader = ladle.DataLoader(ds, batch_size=5, shuffle=True, seed=3, **options)
        return [[column.copy() for column in batch] for batch in loader]

    inline = run()
    spawned = run(num_workers=2, multiprocessing_context="spawn")
    order = np.concatenate([y for _, y in inline]) // 10
    assert sorted(order.tolist()) == list(range(N))
    assert [len(y) for _, y in inline] == [5, 5, 5, 5, 3]
    for (x0, y0), (x1, y1) in zip(inline, spawned, strict=True):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in inline]), arrays["x"][order])


def test_transform_applies_per_sample_and_keeps_sample_rng(files: dict[str, Path]) -> None:
    def jitter(sample: dict[str, Any]) -> dict[str, Any]:
        return {"y": sample["y"] + ladle.sample_rng().integers(5), "name": sample["name"]}

    named = NpyDataset(files["name"], transform=str.upper)
    assert named[1] == "ROW1"
    assert named.__getitems__(np.array([2, -1])) == ["ROW2", f"ROW{N - 1}"]
    ds = NpyDataset({"y": files["y"], "name": files["name"]}, transform=jitter)

    class PerSample(ladle.Dataset[Any]):
        """The same samples without __getitems__: the loader's per-sample path."""

        def __len__(self) -> int:
            return len(ds)

        def __getitem__(self, index: int) -> Any:
            return ds[index]

    def run(dataset: ladle.Dataset[Any], num_workers: int) -> list[list[int]]:
        loader = ladle.DataLoader(
            dataset, batch_size=4, shuffle=True, seed=11, num_workers=num_workers
        )
        return [batch["y"].tolist() for batch in loader]

    vectorised = run(ds, 0)
    assert vectorised == run(PerSample(), 0) == run(ds, 2)
    jittered = np.concatenate(vectorised)
    assert len(jittered) == N and not all(value % 10 == 0 for value in jittered)


def test_empty_batch_and_empty_file(tmp_path: Path, files: dict[str, Path]) -> None:
    batch = NpyDataset(files["x"]).__getitems__([])
    assert isinstance(batch, GatheredBatch) and batch.columns.shape == (0, 4, 3)
    empty = NpyDataset(save(tmp_path / "empty.npy", np.zeros((0, 2), np.float32)))
    assert len(empty) == 0 and list(ladle.DataLoader(empty, batch_size=2)) == []


def test_a_truncated_npy_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((100, 10)))
    path.write_bytes(path.read_bytes()[:-80])
    with pytest.raises(FormatError, match=r"x\.npy: its header describes more data"):
        NpyDataset(path)[0]
