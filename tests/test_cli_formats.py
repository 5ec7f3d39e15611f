"""`ladle pack`, `ladle inspect` and `open_dataset`: from files on disk to a training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ladle
from ladle.cli import main
from ladle.formats import ImageFolder, NpyDataset, ShardDataset, open_dataset
from ladle.formats.sources import DecodeCrop, Source, pack, source_of

Image = pytest.importorskip("PIL.Image")


def make_image_folder(root: Path, per_class: int = 12) -> Path:
    """Two classes told apart by brightness, in images of a few sizes, as PNG and JPEG."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(["dark", "light"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (18 + i % 3, 20 + i % 2)
            base = 40 if label == 0 else 200
            pixels = np.clip(rng.normal(base, 20, (*size, 3)), 0, 255).astype(np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i:03d}{suffix}")
    return root


def test_pack_inspect_then_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = make_image_folder(tmp_path / "images")
    out = tmp_path / "shards"
    assert main(["pack", str(images), str(out), "--shard-mb", "0.01", "--quiet"]) == 0
    assert "records   24 in" in capsys.readouterr().out

    assert main(["inspect", str(out), "--quiet"]) == 0
    report = capsys.readouterr().out
    assert "checksums 24 records OK" in report
    assert '"classes": ["dark", "light"]' in report
    assert "bytes" in report and "int" in report

    dataset = open_dataset(out, crop=16)
    assert isinstance(dataset, ShardDataset) and dataset.metadata["classes"] == ["dark", "light"]
    loader = ladle.DataLoader(dataset, batch_size=6, shuffle=True, num_workers=2, seed=0)
    weights, bias = np.zeros(16 * 16 * 3), 0.0
    for _ in range(4):
        correct = 0
        for images_batch, labels in loader:
            assert images_batch.shape == (len(labels), 16, 16, 3) and images_batch.dtype == np.uint8
            x = images_batch.reshape(len(labels), -1) / 255.0 - 0.5
            p = 1 / (1 + np.exp(-(x @ weights + bias)))
            correct += int(((p > 0.5) == labels).sum())
            weights -= 0.5 * x.T @ (p - labels) / len(labels)
            bias -= 0.5 * float((p - labels).mean())
    assert correct == 24  # the last epoch classified every image


def test_packed_images_are_the_files_bytes(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "images", per_class=3)
    pack(images, tmp_path / "out")
    folder = ImageFolder(images)
    shards = ShardDataset(tmp_path / "out")
    for (path, label), (encoded, packed_label) in zip(folder.samples, shards, strict=True):
        assert Path(path).read_bytes() == encoded and label == packed_label
    decoded = open_dataset(tmp_path / "out", crop=30)  # larger than the images: padded
    assert decoded[0][0].shape == (30, 30, 3)


def test_pack_npy_file_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    y = np.arange(20, dtype=np.int64)
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays/x.npy", x)
    np.save(tmp_path / "arrays/y.npy", y)
    assert main(["pack", str(tmp_path / "arrays/x.npy"), str(tmp_path / "one"), "--quiet"]) == 0
    np.testing.assert_array_equal(np.stack(list(ShardDataset(tmp_path / "one"))), x)
    assert main(["pack", str(tmp_path / "arrays"), str(tmp_path / "two"), "--quiet"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["x", "array", "float32", "(3,)", "240", "bytes"] in rows
    assert ["y", "scalar", "int64", "160", "bytes"] in rows
    batch = next(iter(ladle.DataLoader(open_dataset(tmp_path / "two"), batch_size=20)))
    np.testing.assert_array_equal(batch["x"], x)
    np.testing.assert_array_equal(batch["y"], y)


def test_inspect_reports_damaged_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ladle.write_shards([np.full(100, i, np.uint8) for i in range(10)], tmp_path)
    shard = tmp_path / "shard-00000.ladle"
    data = bytearray(shard.read_bytes())
    data[-200] ^= 1  # inside the last records' rows
    shard.write_bytes(bytes(data))
    assert main(["inspect", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "checksums FAILED: 1 of 10 records damaged:" in out
    assert "shard-00000.ladle, record 8: checksum mismatch" in out
    assert main(["inspect", str(tmp_path), "--no-verify"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "{tmp}/nope"], "does not exist"),
        (["pack", "{tmp}/nope", "{tmp}/out"], "does not exist"),
        (["pack", "{tmp}/empty", "{tmp}/out"], "is not a dataset ladle reads"),
        (["pack", "{tmp}/shards", "{tmp}/out"], "is already a shard directory"),
        (["pack", "{tmp}/empty", "{tmp}/out", "--shard-mb", "0"], "--shard-mb should be positive"),
        (["pack", "{tmp}/arrays", "{tmp}/shards"], "already holds ladle shards"),
    ],
)
def test_command_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays/x.npy", np.zeros(3))
    ladle.write_shards([1], tmp_path / "shards")
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_source_detection_and_open_dataset(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "images", per_class=2)
    np.save(tmp_path / "a.npy", np.zeros((4, 2)))
    assert source_of(images) is Source.IMAGE_FOLDER
    assert source_of(tmp_path / "a.npy") is Source.NPY
    assert isinstance(open_dataset(tmp_path / "a.npy"), NpyDataset)
    folder = open_dataset(images, crop=8)
    assert isinstance(folder, ImageFolder) and folder[0][0].shape == (8, 8, 3)
    assert repr(DecodeCrop(8)) == "DecodeCrop(8)"
