"""The JPEG fast path: the same pixels as Pillow, at full and reduced size, and Pillow's errors."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from image_support import encode, photo
from PIL import Image

import ladle
from ladle.errors import ImageDecodeError
from ladle.formats import ImageFolder, decode_image, jpeg, load_image

pytest.importorskip("simplejpeg")


def pillow(data: bytes, mode: str, draft: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if draft is not None:
            image.draft(None, draft)
        return np.asarray(image.convert(mode))


@pytest.fixture
def pillow_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The decoder as it is without simplejpeg installed."""
    monkeypatch.setattr(jpeg, "_simplejpeg", lambda: None)
    yield


SIZES = [(1, 1), (7, 13), (64, 64), (117, 250), (375, 500), (513, 257)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_fast_path_gives_pillows_pixels(height: int, width: int, subsampling: int) -> None:
    data = encode(photo(height, width), quality=87, subsampling=subsampling)
    assert jpeg.decode_jpeg(data, "RGB") is not None  # the fast path is the one under test
    decoded = decode_image(data)
    assert decoded.dtype == np.uint8 and decoded.shape == (height, width, 3)
    np.testing.assert_array_equal(decoded, pillow(data, "RGB"))
    assert not decoded.flags.writeable  # as Pillow's arrays


def test_grayscale_jpeg_in_l_and_rgb() -> None:
    data = encode(photo(40, 50)[:, :, 0])
    assert jpeg.jpeg_header(data) == (40, 50, "Gray")
    np.testing.assert_array_equal(decode_image(data, "L"), pillow(data, "L"))
    np.testing.assert_array_equal(decode_image(data, "RGB"), pillow(data, "RGB"))
    assert decode_image(data, "L").shape == (40, 50)


def test_colour_jpeg_to_l_and_cmyk_go_through_pillow() -> None:
    colour = encode(photo(30, 30))
    # libjpeg's luma differs from Pillow's RGB-to-L conversion: the fast path steps aside
    assert jpeg.decode_jpeg(colour, "L") is None
    np.testing.assert_array_equal(decode_image(colour, "L"), pillow(colour, "L"))
    cmyk = encode(photo(20, 20), mode="CMYK")
    assert jpeg.decode_jpeg(cmyk, "RGB") is None
    np.testing.assert_array_equal(decode_image(cmyk), pillow(cmyk, "RGB"))
    assert decode_image(cmyk, mode=None).shape == (20, 20, 4)


@pytest.mark.parametrize(("height", "width"), [(375, 500), (257, 129), (64, 9), (1000, 1000)])
@pytest.mark.parametrize("wanted", [(1, 1), (100, 100), (40, 200), (128, 64), (500, 500)])
def test_min_size_reduces_as_pillows_draft(
    height: int, width: int, wanted: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(photo(height, width, seed=3), quality=90)
    fast = decode_image(data, min_size=wanted)
    factor = jpeg.reduction(height, width, *wanted)
    assert fast.shape[:2] == jpeg.reduced_size(height, width, factor)
    if factor > 1:  # reduced, yet never below what was asked for where the source allows
        assert fast.shape[0] >= wanted[0] and fast.shape[1] >= wanted[1]
    np.testing.assert_array_equal(fast, pillow(data, "RGB", (width // factor, height // factor)))
    monkeypatch.setattr(jpeg, "_simplejpeg", lambda: None)
    np.testing.assert_array_equal(decode_image(data, min_size=wanted), fast)


def test_min_size_leaves_other_formats_whole() -> None:
    data = encode(photo(300, 200), fmt="PNG")
    assert decode_image(data, min_size=50).shape == (300, 200, 3)


@pytest.mark.usefixtures("pillow_only")
def test_without_simplejpeg_the_same_arrays() -> None:
    data = encode(photo(33, 65))
    assert jpeg.jpeg_header(data) is None
    np.testing.assert_array_equal(decode_image(data), pillow(data, "RGB"))
    assert not decode_image(data).flags.writeable


def test_inputs_bytes_like_and_arrays() -> None:
    data = encode(photo(16, 24))
    expected = pillow(data, "RGB")
    record = np.frombuffer(b"xx" + data, dtype=np.uint8)[2:]
    for given in (data, bytearray(data), memoryview(data), record, record[::1].copy()):
        np.testing.assert_array_equal(decode_image(given), expected)


def test_a_damaged_jpeg_raises_pillows_error(tmp_path: pytest.TempPathFactory) -> None:
    data = encode(photo(64, 64))
    truncated = data[: len(data) // 2]
    with pytest.raises(ValueError, match="decode_image could not decode") as caught:
        decode_image(truncated)
    assert isinstance(caught.value.__cause__, OSError)  # Pillow's, as before the fast path
    path = tmp_path / "broken.jpg"  # type: ignore[operator]
    path.write_bytes(truncated)
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg") as raised:
        load_image(path)
    assert isinstance(raised.value, OSError)


def test_pillows_decompression_bomb_guard_holds_on_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(photo(100, 150))  # 15,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 7000)  # over twice the limit: Pillow refuses
    with pytest.raises(ValueError, match="decode_image could not decode") as caught:
        decode_image(data)
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)
    with pytest.raises(ValueError, match="decode_image could not decode"):
        ladle.transforms.DecodeRandomResizedCrop(32)(data, rng=np.random.default_rng(0))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)  # over the limit: Pillow warns
    with pytest.warns(Image.DecompressionBombWarning):
        np.testing.assert_array_equal(decode_image(data), pillow(data, "RGB"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # no limit: the fast path again
    np.testing.assert_array_equal(decode_image(data), pillow(data, "RGB"))


@pytest.mark.parametrize(
    ("min_size", "error", "text"),
    [
        (0, ValueError, "min_size"),
        ((10, -1), ValueError, r"min_size\[1\]"),
        ((10,), TypeError, "min_size should be"),
        ("224", TypeError, "min_size should be"),
        ((1.5, 2), TypeError, r"min_size\[0\]"),
    ],
)
def test_min_size_is_checked(min_size: object, error: type[Exception], text: str) -> None:
    data = encode(photo(8, 8))
    with pytest.raises(error, match=text):
        decode_image(data, min_size=min_size)  # type: ignore[arg-type]


def test_load_image_and_image_folder_read_jpegs_through_the_fast_path(tmp_path: object) -> None:
    root = tmp_path / "folder"  # type: ignore[operator]
    expected = {}
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            data = encode(photo(20 + i, 30, seed=i + len(label)))
            (root / label / f"{i}.jpg").write_bytes(data)
            expected[(label, i)] = pillow(data, "RGB")
    np.testing.assert_array_equal(load_image(root / "dog" / "1.jpg"), expected[("dog", 1)])
    assert load_image(root / "cat" / "0.jpg", min_size=10).shape == (10, 15, 3)
    folder = ImageFolder(root)
    for index, (path, target) in enumerate(folder.samples):
        image, label = folder[index]
        name = folder.classes[target]
        stem = int(str(path).rsplit("/", 1)[1].split(".")[0])
        assert label == target
        np.testing.assert_array_equal(image, expected[(name, stem)])
    batches = list(ladle.DataLoader(folder, batch_size=None, num_workers=0))
    assert len(batches) == 6


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"optimize": True}, {"restart_marker_blocks": 2}, {"quality": 100}],
)
def test_jpeg_variants_decode_as_pillow_does(options: dict[str, object]) -> None:
    data = encode(photo(45, 70, seed=9), **options)
    assert jpeg.decode_jpeg(data, "RGB") is not None
    np.testing.assert_array_equal(decode_image(data), pillow(data, "RGB"))


def test_what_libjpeg_only_warns_about_goes_to_pillow() -> None:
    data = encode(photo(30, 40))
    scan = data.find(b"\xff\xda")
    extraneous = data[:scan] + b"\x00\x00" + data[scan:]  # "extraneous bytes before marker"
    assert jpeg.decode_jpeg(extraneous, "RGB") is None
    np.testing.assert_array_equal(decode_image(extraneous), pillow(extraneous, "RGB"))
