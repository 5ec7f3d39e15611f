"""ladle.transforms: torchvision's semantics on NumPy images, checked against torch, NumPy and
Pillow doing the same thing the long way."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ladle
from ladle import transforms
from ladle.transforms import (
    CenterCrop,
    Compose,
    Lambda,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    ToCHW,
    ToFloat,
    ToHWC,
    Transform,
)


def picture(shape: tuple[int, ...], dtype: Any = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=dtype)
    return rng.integers(0, 256, shape, dtype=dtype)


def read_only(image: np.ndarray) -> np.ndarray:
    """A read-only copy: a transform that writes into its input fails on it."""
    image = image.copy()
    image.flags.writeable = False
    return image


# --- references: torchvision's algorithms, written out with np.pad -------------------------


def ltrb(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    left, top, right, bottom = padding
    return left, top, right, bottom


def pad(image: np.ndarray, sides: tuple[int, int, int, int], fill: Any, mode: Any) -> np.ndarray:
    left, top, right, bottom = sides
    widths = [(top, bottom), (left, right)]
    if mode != "constant":
        return np.pad(image, widths + [(0, 0)] * (image.ndim - 2), mode=mode)
    if not isinstance(fill, tuple):
        return np.pad(image, widths + [(0, 0)] * (image.ndim - 2), constant_values=fill)
    if image.ndim == 2:
        return np.pad(image, widths, constant_values=fill[0])
    fills = fill * image.shape[2] if len(fill) == 1 else fill
    planes = [np.pad(image[:, :, c], widths, constant_values=fills[c]) for c in range(len(fills))]
    return np.stack(planes, axis=-1)


def reference_random_crop(
    image: np.ndarray,
    size: tuple[int, int],
    padding: int | Sequence[int] | None,
    pad_if_needed: bool,
    fill: Any,
    mode: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """torchvision.transforms.RandomCrop.forward, step by step."""
    height, width = size
    if padding is not None:
        image = pad(image, ltrb(padding), fill, mode)
    if pad_if_needed and image.shape[1] < width:
        extra = width - image.shape[1]
        image = pad(image, (extra, 0, extra, 0), fill, mode)
    if pad_if_needed and image.shape[0] < height:
        extra = height - image.shape[0]
        image = pad(image, (0, extra, 0, extra), fill, mode)
    if image.shape[0] < height or image.shape[1] < width:
        raise ValueError("crop larger than the padded image")
    top = int(rng.random() * (image.shape[0] - height + 1))
    left = int(rng.random() * (image.shape[1] - width + 1))
    return image[top : top + height, left : left + width]


def reference_center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision.transforms.functional.center_crop, step by step."""
    height, width = size
    rows, cols = image.shape[:2]
    if width > cols or height > rows:
        sides = (
            (width - cols) // 2 if width > cols else 0,
            (height - rows) // 2 if height > rows else 0,
            (width - cols + 1) // 2 if width > cols else 0,
            (height - rows + 1) // 2 if height > rows else 0,
        )
        image = pad(image, sides, 0, "constant")
        rows, cols = image.shape[:2]
    top = round((rows - height) / 2.0)
    left = round((cols - width) / 2.0)
    return image[top : top + height, left : left + width]


def pillow_resize(image: np.ndarray, size: tuple[int, int], resample: Any) -> np.ndarray:
    return np.asarray(PIL.Image.fromarray(image).resize((size[1], size[0]), resample))


# --- ToFloat, ToCHW, ToHWC ---------------------------------------------------------------


def test_to_float_matches_torch_bit_for_bit() -> None:
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for image in (every_value, picture((7, 5, 3))):
        out = ToFloat()(image)
        expected = torch.from_numpy(image).float().div(255).numpy()
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected, strict=True)
        assert out.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()


def test_to_float_scales_by_the_integer_dtype_maximum_as_convert_image_dtype() -> None:
    image = np.array([[0, 1, 1000, 32767]], dtype=np.int16)
    expected = torch.from_numpy(image).float().div(32767).numpy()
    np.testing.assert_array_equal(ToFloat()(image), expected, strict=True)
    out = ToFloat(np.float64)(picture((3, 3)))
    assert out.dtype == np.float64 and out.max() <= 1


def test_to_float_only_casts_floats_bools_and_unscaled_integers() -> None:
    floats = picture((4, 4), np.float64) * 7
    np.testing.assert_array_equal(ToFloat()(floats), floats.astype(np.float32), strict=True)
    np.testing.assert_array_equal(ToFloat()(np.array([True, False])), [1.0, 0.0])
    image = picture((4, 4))
    np.testing.assert_array_equal(ToFloat(scale=False)(image), image.astype(np.float32))


def test_to_float_returns_a_fresh_array_of_a_flipped_view() -> None:
    image = read_only(picture((4, 5, 3)))
    out = ToFloat()(image[:, ::-1])
    assert not np.shares_memory(out, image) and out.flags.writeable
    np.testing.assert_array_equal(out, np.flip(image, 1) / np.float32(255))


def test_to_chw_matches_torch_permute_as_a_view() -> None:
    image = read_only(picture((6, 5, 3)))
    out = ToCHW()(image)
    np.testing.assert_array_equal(out, torch.from_numpy(image.copy()).permute(2, 0, 1).numpy())
    assert np.shares_memory(out, image)
    gray = picture((6, 5))
    assert ToCHW()(gray).shape == (1, 6, 5)
    np.testing.assert_array_equal(ToCHW()(gray)[0], gray)
    np.testing.assert_array_equal(ToHWC()(out), image)
    with pytest.raises(ValueError, match=r"ToCHW takes .* got shape \(4,\)"):
        ToCHW()(np.zeros(4))
    with pytest.raises(ValueError, match=r"ToHWC takes .* got shape \(4, 4\)"):
        ToHWC()(np.zeros((4, 4)))


# --- Normalize ---------------------------------------------------------------------------

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def test_normalize_matches_torch_bit_for_bit() -> None:
    image = ToCHW()(ToFloat()(picture((9, 7, 3))))
    out = Normalize(MEAN, STD)(image)
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    expected = ((tensor - mean[:, None, None]) / std[:, None, None]).numpy()
    assert out.dtype == np.float32
    assert out.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()


def test_normalize_keeps_float64_and_reads_hwc_channels_on_the_last_axis() -> None:
    image = picture((5, 4, 3), np.float64)
    out = Normalize(MEAN, STD, layout="HWC")(image)
    tensor = torch.from_numpy(image)
    expected = (tensor - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(
        STD, dtype=torch.float64
    )
    np.testing.assert_array_equal(out, expected.numpy(), strict=True)
    chw = Normalize(MEAN, STD)(image.transpose(2, 0, 1))
    np.testing.assert_array_equal(chw, out.transpose(2, 0, 1), strict=True)


def test_normalize_broadcasts_one_value_and_takes_batches() -> None:
    batch = picture((2, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(Normalize(0.5, [0.25])(batch), (batch - 0.5) / np.float32(0.25))
    per_channel = Normalize(MEAN, STD)(batch)
    np.testing.assert_array_equal(per_channel[1], Normalize(MEAN, STD)(batch[1]))


def test_normalize_errors_name_the_argument_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"got an array of dtype=uint8 .*; apply ToFloat\(\) first"):
        Normalize(MEAN, STD)(picture((3, 4, 4)))
    with pytest.raises(ValueError, match=r"std\[1\] should be a number > 0, but got std\[1\]=0\.0"):
        Normalize((0.5, 0.5), (0.5, 0.0))
    with pytest.raises(
        ValueError, match=r"std should have no zeros.*std=\(1e-50,\) \(as float32\)"
    ):
        Normalize(0.5, 1e-50)  # zero once cast to float32
    with pytest.raises(
        ValueError, match=r"mean with 3 values .* shape \(2, 4, 4\) with 2 channels"
    ):
        Normalize(MEAN, 0.5)(picture((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"std with 3 values .* 4 channels \(layout='HWC'\)"):
        Normalize(0.5, STD, layout="HWC")(picture((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 4\); apply ToCHW\(\) first"):
        Normalize(0.5, 0.5)(picture((4, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"layout should be one of 'CHW', 'HWC', but got layout='chw'"
    ):
        Normalize(0.5, 0.5, layout="chw")
    with pytest.raises(TypeError, match=r"mean should be a number .* mean='a'"):
        Normalize("a", 0.5)  # type: ignore[arg-type]


# --- RandomHorizontalFlip ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3)])
def test_flip_matches_np_flip_and_p_bounds(shape: tuple[int, ...]) -> None:
    image = read_only(picture(shape))
    rng = np.random.default_rng(0)
    for _ in range(20):
        np.testing.assert_array_equal(RandomHorizontalFlip(p=1)(image, rng=rng), np.flip(image, 1))
        assert RandomHorizontalFlip(p=0)(image, rng=rng) is image


def test_flip_draws_once_per_call_and_flips_below_p() -> None:
    image = picture((3, 4, 3))
    flip = RandomHorizontalFlip(p=0.3)
    rng, replay = np.random.default_rng(5), np.random.default_rng(5)
    flips = 0
    for _ in range(50):
        expected = np.flip(image, 1) if replay.random() < 0.3 else image
        out = flip(image, rng=rng)
        np.testing.assert_array_equal(out, expected)
        flips += out is not image
    assert 0 < flips < 50


def test_flip_draws_even_when_p_is_certain() -> None:
    rng, replay = np.random.default_rng(1), np.random.default_rng(1)
    RandomHorizontalFlip(p=0)(picture((2, 2)), rng=rng)
    replay.random()
    assert rng.random() == replay.random()


def test_flip_rejects_probabilities_outside_zero_one() -> None:
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"p should be a number.*, but got p="):
            RandomHorizontalFlip(p=p)
    for p in ("0.5", True, None):
        with pytest.raises(TypeError, match=r"p should be a number, but got p="):
            RandomHorizontalFlip(p=p)  # type: ignore[arg-type]


# --- RandomCrop --------------------------------------------------------------------------


def check_random_crop(image: np.ndarray, seed: int = 0, **kwargs: Any) -> np.ndarray:
    crop = RandomCrop(**kwargs)
    source = read_only(image)
    rng, replay = np.random.default_rng(seed), np.random.default_rng(seed)
    out = crop(source, rng=rng)
    expected = reference_random_crop(
        image,
        crop.size,
        kwargs.get("padding"),
        kwargs.get("pad_if_needed", False),
        crop.fill,
        kwargs.get("padding_mode", "constant"),
        replay,
    )
    np.testing.assert_array_equal(out, expected, strict=True)
    assert rng.random() == replay.random()  # the same number of draws
    np.testing.assert_array_equal(source, image)
    return out


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3), (6, 7, 1)])
@pytest.mark.parametrize("padding_mode", ["constant", "edge", "reflect", "symmetric"])
@pytest.mark.parametrize("padding", [None, 2, (1, 3), (0, 1, 2, 3)])
def test_random_crop_matches_np_pad_then_slice(
    shape: tuple[int, ...], padding_mode: str, padding: Any
) -> None:
    image = picture(shape)
    for seed in range(8):
        out = check_random_crop(
            image, seed, size=(5, 4), padding=padding, padding_mode=padding_mode, fill=7
        )
        assert out.shape == (5, 4, *shape[2:])


@pytest.mark.parametrize("padding_mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_pad_if_needed_pads_the_shortfall_on_both_sides(padding_mode: str) -> None:
    image = picture((3, 5, 3))
    for seed in range(10):
        out = check_random_crop(
            image, seed, size=(6, 9), padding=1, pad_if_needed=True, padding_mode=padding_mode
        )
        assert out.shape == (6, 9, 3)


def test_random_crop_fill_per_channel_and_float_images() -> None:
    for seed in range(10):
        check_random_crop(picture((4, 4, 3)), seed, size=6, padding=3, fill=(10, 20, 30))
        check_random_crop(picture((4, 4, 3)), seed, size=6, padding=3, fill=(9,))
        check_random_crop(picture((4, 4)), seed, size=6, padding=3, fill=(9,))
        check_random_crop(picture((4, 4, 2), np.float32), seed, size=5, padding=2, fill=0.5)
    corner = RandomCrop(4, padding=2, fill=(1, 2, 3))(
        picture((2, 2, 3)), rng=np.random.default_rng()
    )
    assert corner.shape == (4, 4, 3)


def test_random_crop_cifar_setting() -> None:
    image = picture((32, 32, 3))
    for seed in range(20):
        check_random_crop(image, seed, size=32, padding=4)


def test_random_crop_inside_the_image_is_a_view() -> None:
    image = read_only(picture((10, 10, 3)))
    out = RandomCrop(4)(image, rng=np.random.default_rng(0))
    assert np.shares_memory(out, image)
    padded = RandomCrop(10, padding=1)(image, rng=np.random.default_rng(0))
    assert padded.flags.writeable


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    channels=st.sampled_from([None, 1, 3]),
    padding=st.one_of(
        st.none(),
        st.integers(0, 4),
        st.tuples(st.integers(0, 4), st.integers(0, 4)),
        st.tuples(*[st.integers(0, 4)] * 4),
    ),
    size=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    pad_if_needed=st.booleans(),
    fill=st.integers(0, 255),
    padding_mode=st.sampled_from(["constant", "constant", "edge", "reflect", "symmetric"]),
    seed=st.integers(0, 2**32),
)
def test_random_crop_property(
    rows: int,
    cols: int,
    channels: int | None,
    padding: Any,
    size: tuple[int, int],
    pad_if_needed: bool,
    fill: int,
    padding_mode: str,
    seed: int,
) -> None:
    image = picture((rows, cols) if channels is None else (rows, cols, channels), seed=seed)
    kwargs = {"size": size, "padding": padding, "pad_if_needed": pad_if_needed, "fill": fill}
    try:
        reference_random_crop(
            image, size, padding, pad_if_needed, fill, padding_mode, np.random.default_rng(0)
        )
    except ValueError:
        with pytest.raises(ValueError, match="pad_if_needed=True"):
            RandomCrop(**kwargs, padding_mode=padding_mode)(image, rng=np.random.default_rng(0))
        return
    check_random_crop(image, seed, padding_mode=padding_mode, **kwargs)


def test_random_crop_errors_name_the_argument_and_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"size=\(40, 40\) is larger than the image, \(32, 32\) \(padded: \(36, 36\)\); "
        r"pass pad_if_needed=True, or a larger padding=",
    ):
        RandomCrop(40, padding=2)(picture((32, 32, 3)), rng=np.random.default_rng())
    with pytest.raises(TypeError, match=r"size should be an int or a \(height, width\) pair"):
        RandomCrop((1, 2, 3))
    with pytest.raises(ValueError, match=r"size should be positive, but got size=\(0, 0\)"):
        RandomCrop(0)
    with pytest.raises(TypeError, match=r"padding should be an int or a sequence of 1, 2 or 4"):
        RandomCrop(4, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=r"padding should be non-negative, but got padding=-1"):
        RandomCrop(4, padding=-1)
    with pytest.raises(ValueError, match=r"padding_mode should be one of .* padding_mode='wrap'"):
        RandomCrop(4, padding_mode="wrap")
    with pytest.raises(TypeError, match=r"fill should be a number .* fill='red'"):
        RandomCrop(4, fill="red")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pad_if_needed should be True or False"):
        RandomCrop(4, pad_if_needed=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fill=\(1, 2\) with 2 values .* 3 channel"):
        RandomCrop(4, padding=1, fill=(1, 2))(picture((4, 4, 3)), rng=np.random.default_rng())
    with pytest.raises(ValueError, match=r"fill=300 does not fit the dtype uint8"):
        RandomCrop(4, padding=2, fill=300)(picture((2, 2)), rng=np.random.default_rng())
    with pytest.raises(TypeError, match=r"RandomCrop takes a NumPy image .* got list"):
        RandomCrop(1)([[1]], rng=np.random.default_rng())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"RandomCrop takes .* got shape \(1, 3, 4, 4\)"):
        RandomCrop(1)(np.zeros((1, 3, 4, 4)), rng=np.random.default_rng())
    with pytest.raises(TypeError, match=r"rng should be a numpy.random.Generator .* rng=0"):
        RandomCrop(1)(picture((2, 2)), rng=0)  # type: ignore[arg-type]


# --- CenterCrop --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 8), (7, 8, 3)])
@pytest.mark.parametrize("size", [1, 4, (3, 5), (7, 8), (10, 8), (7, 11), (12, 13), (2, 12)])
def test_center_crop_matches_torchvision(shape: tuple[int, ...], size: Any) -> None:
    image = read_only(picture(shape))
    crop = CenterCrop(size)
    out = crop(image)
    np.testing.assert_array_equal(out, reference_center_crop(image, crop.size), strict=True)
    fits = crop.size[0] <= shape[0] and crop.size[1] <= shape[1]
    assert np.shares_memory(out, image) == fits


def test_center_crop_offsets_round_half_to_even() -> None:
    rows = np.arange(9)[:, None]
    assert CenterCrop((2, 1))(rows[:5])[:, 0].tolist() == [2, 3]  # (5 - 2) / 2 = 1.5 -> 2
    assert CenterCrop((2, 1))(rows[:7])[:, 0].tolist() == [2, 3]  # (7 - 2) / 2 = 2.5 -> 2
    assert CenterCrop((4, 1))(rows[:1])[:, 0].tolist() == [0, 0, 0, 0]
    assert CenterCrop((3, 1))(rows[1:3])[:, 0].tolist() == [1, 2, 0]  # odd pixel bottom


# --- Resize ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [None, 3, 4])
@pytest.mark.parametrize(
    "interpolation", ["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
)
def test_resize_matches_pillow(channels: int | None, interpolation: str) -> None:
    shape = (20, 30) if channels is None else (20, 30, channels)
    image = read_only(picture(shape))
    resample = getattr(PIL.Image.Resampling, interpolation.upper())
    out = Resize((13, 17), interpolation=interpolation)(image)
    np.testing.assert_array_equal(out, pillow_resize(image, (13, 17), resample), strict=True)
    assert out.flags.writeable


def test_resize_smaller_edge_rule_and_max_size() -> None:
    assert Resize(20).output_size(30, 40) == (20, 26)  # int(20 * 40 / 30) = 26
    assert Resize(20).output_size(40, 30) == (26, 20)
    assert Resize([20]).output_size(33, 33) == (20, 20)
    assert Resize(20, max_size=24).output_size(30, 40) == (18, 24)  # int(24 * 20 / 26)
    assert Resize((5, 9)).output_size(30, 40) == (5, 9)
    image = picture((30, 40, 3))
    out = Resize(20)(image)
    expected = pillow_resize(image, (20, 26), PIL.Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out, expected, strict=True)


def test_resize_one_channel_and_float32_through_mode_f() -> None:
    image = picture((12, 10, 1))
    out = Resize(5)(image)
    assert out.shape == (6, 5, 1) and out.dtype == np.uint8
    bilinear = PIL.Image.Resampling.BILINEAR
    np.testing.assert_array_equal(out[:, :, 0], pillow_resize(image[:, :, 0], (6, 5), bilinear))
    gray = picture((12, 10), np.float32)
    out = Resize((7, 3), "bicubic")(gray)
    expected = pillow_resize(gray, (7, 3), PIL.Image.Resampling.BICUBIC)
    assert PIL.Image.fromarray(gray).mode == "F"
    np.testing.assert_array_equal(out, expected, strict=True)
    planes = picture((12, 10, 2), np.float32)
    out = Resize((7, 3))(planes)
    assert out.shape == (7, 3, 2) and out.dtype == np.float32
    for c in range(2):
        np.testing.assert_array_equal(
            out[:, :, c], pillow_resize(planes[:, :, c], (7, 3), bilinear)
        )


def test_resize_to_the_same_size_returns_the_input() -> None:
    image = picture((8, 6, 3))
    assert Resize(6)(image) is image


def test_resize_errors_name_the_argument_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"got dtype=uint16 with shape \(4, 4\)"):
        Resize(2)(np.zeros((4, 4), np.uint16))
    with pytest.raises(TypeError, match=r"got dtype=uint8 with shape \(4, 4, 2\)"):
        Resize(2)(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(
        ValueError, match=r"interpolation should be one of .* got interpolation='cubic'"
    ):
        Resize(2, interpolation="cubic")
    with pytest.raises(ValueError, match=r"max_size should be an int greater than size=8"):
        Resize(8, max_size=8)
    with pytest.raises(ValueError, match=r"max_size is only used when size is an int"):
        Resize((8, 8), max_size=10)
    with pytest.warns(UserWarning, match=r"antialias=False\) is ignored: Pillow always"):
        Resize(8, antialias=False)


# --- Compose, Lambda ---------------------------------------------------------------------


def test_compose_threads_rng_through_and_calls_plain_functions_with_the_image() -> None:
    image = picture((8, 8, 3))
    seen: list[tuple[int, ...]] = []

    def record(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x

    pipeline = Compose([RandomCrop(6, padding=2), record, RandomHorizontalFlip(), ToFloat()])
    out = pipeline(image, rng=np.random.default_rng(3))
    replay = np.random.default_rng(3)
    expected = RandomCrop(6, padding=2)(image, rng=replay)
    expected = ToFloat()(RandomHorizontalFlip()(expected, rng=replay))
    np.testing.assert_array_equal(out, expected, strict=True)
    assert seen == [(6, 6, 3)]
    nested = Compose([Compose([RandomCrop(6, padding=2)]), Compose([RandomHorizontalFlip()])])
    np.testing.assert_array_equal(
        ToFloat()(nested(image, rng=np.random.default_rng(3))), expected, strict=True
    )


def test_compose_and_lambda_errors() -> None:
    with pytest.raises(TypeError, match=r"transforms\[1\] is 3 \(int\)"):
        Compose([ToFloat(), 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"wrap a single transform in a list: Compose"):
        Compose(ToFloat())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"fn should be a callable, but got fn='x'"):
        Lambda("x")  # type: ignore[arg-type]
    np.testing.assert_array_equal(Lambda(np.fliplr)(np.eye(2)), [[0, 1], [1, 0]])


# --- every transform: pickle, repr, inputs untouched, determinism ---------------------------


def every_transform() -> list[Transform]:
    return [
        RandomCrop(6, padding=2, fill=(1, 2, 3)),
        RandomCrop(5, padding=(1, 2), padding_mode="reflect"),
        RandomHorizontalFlip(),
        CenterCrop((5, 9)),
        Resize(5, interpolation="bicubic"),
        ToFloat(),
        ToCHW(),
        Lambda(np.fliplr),
        Compose([RandomCrop(6, padding=2), RandomHorizontalFlip(), ToFloat(), ToCHW()]),
        Compose([ToFloat(), ToCHW(), Normalize(MEAN, STD), ToHWC()]),
    ]


@pytest.mark.parametrize("transform", every_transform(), ids=repr)
def test_transform_pickles_leaves_its_input_alone_and_is_deterministic(
    transform: Transform,
) -> None:
    image = picture((7, 8, 3))
    source = read_only(image)
    copy = pickle.loads(pickle.dumps(transform))
    assert repr(copy) == repr(transform)
    first = transform(source, rng=np.random.default_rng(4))
    again = copy(source, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(first, again, strict=True)
    np.testing.assert_array_equal(source, image)


def test_normalize_pickles_and_leaves_its_input_alone() -> None:
    image = picture((3, 4, 4), np.float32)
    source = read_only(image)
    normalize = pickle.loads(pickle.dumps(Normalize(MEAN, STD)))
    np.testing.assert_array_equal(normalize(source), Normalize(MEAN, STD)(image), strict=True)
    np.testing.assert_array_equal(source, image)


def test_reprs_show_the_arguments() -> None:
    assert repr(RandomCrop(32, padding=4)) == (
        "RandomCrop(size=(32, 32), padding=(4, 4, 4, 4), pad_if_needed=False, fill=0, "
        "padding_mode='constant')"
    )
    assert repr(RandomCrop((3, 4), fill=[1, 2, 3], padding_mode="edge")) == (
        "RandomCrop(size=(3, 4), padding=None, pad_if_needed=False, fill=(1, 2, 3), "
        "padding_mode='edge')"
    )
    assert repr(RandomHorizontalFlip()) == "RandomHorizontalFlip(p=0.5)"
    assert repr(CenterCrop(3)) == "CenterCrop(size=(3, 3))"
    assert repr(Resize(256)) == (
        "Resize(size=256, interpolation='bilinear', max_size=None, antialias=True)"
    )
    assert repr(Normalize(0.5, (0.25,))) == "Normalize(mean=(0.5,), std=(0.25,), layout='CHW')"
    assert repr(ToFloat()) == "ToFloat(dtype=float32, scale=True)"
    assert repr(ToCHW()) == "ToCHW()" and repr(ToHWC()) == "ToHWC()"
    assert repr(Lambda(np.fliplr)) == "Lambda(fn=fliplr)"
    assert repr(Compose([ToFloat(), ToCHW()])) == (
        "Compose(\n    ToFloat(dtype=float32, scale=True)\n    ToCHW()\n)"
    )


def test_all_lists_exactly_the_public_classes() -> None:
    public = {
        name
        for name, value in vars(transforms).items()
        if isinstance(value, type) and value.__module__ == transforms.__name__
        if not name.startswith("_")
    }
    assert sorted(transforms.__all__) == sorted(public)


# --- sample_rng: the loader's per-sample generator -----------------------------------------


def test_random_transforms_outside_a_loader_need_an_rng() -> None:
    for transform in (RandomCrop(2), RandomHorizontalFlip(), Compose([RandomCrop(2)])):
        with pytest.raises(RuntimeError, match=r"sample_rng\(\) is only defined while"):
            transform(picture((4, 4)))
    assert ToFloat()(picture((2, 2))).dtype == np.float32  # deterministic: no generator needed


class Augmented(ladle.Dataset[np.ndarray]):
    def __init__(self) -> None:
        self.images = picture((12, 8, 8, 3))
        self.transform = Compose(
            [RandomCrop(8, padding=2), RandomHorizontalFlip(), ToFloat(), ToCHW()]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.transform(self.images[index])


def test_a_seeded_loader_gives_the_same_augmentations() -> None:
    def batches(seed: int) -> list[np.ndarray]:
        return list(ladle.DataLoader(Augmented(), batch_size=4, seed=seed))

    first, again, other = batches(0), batches(0), batches(1)
    assert len(first) == 3 and first[0].shape == (4, 3, 8, 8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_fill_must_fit_the_image_dtype() -> None:
    rng = np.random.default_rng(0)
    for fill in (float("nan"), 1.5, -1, (0, 256, 0)):
        with pytest.raises(ValueError, match=r"fill=.* does not fit the dtype uint8"):
            RandomCrop(4, padding=2, fill=fill)(picture((2, 2, 3)), rng=rng)
    crop = RandomCrop(4, padding=2, fill=float("nan"))
    assert np.isnan(crop(picture((2, 2), np.float32), rng=rng)).sum() == 12  # floats hold NaN
    with pytest.raises(ValueError, match=r"fill=nan does not fit the dtype uint8"):
        crop(picture((2, 2)), rng=rng)  # checked for each new dtype, not once per shape
    assert RandomCrop(4, padding=2, fill=7.0)(picture((2, 2)), rng=rng).dtype == np.uint8


def test_transforms_pickle_under_their_public_names() -> None:
    import pickle

    for transform in (RandomCrop(3, padding=1), Normalize(0.5, 0.25), Compose([ToCHW()])):
        assert type(transform).__module__ == "ladle.transforms"
        assert b"ladle.transforms.base" not in pickle.dumps(transform)
        assert repr(pickle.loads(pickle.dumps(transform))) == repr(transform)
