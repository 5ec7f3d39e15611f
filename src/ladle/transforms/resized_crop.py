"""The ImageNet training crop: torchvision's RandomResizedCrop on arrays, and a fused version
that decodes a JPEG only as large as the chosen box needs.

The box is drawn as torchvision draws it: up to 10 tries of an area fraction uniform in
``scale`` and an aspect ratio log-uniform in ``ratio``, kept when it fits in the image, its
corner then uniform over the places it fits; after 10 misses, the largest centred box whose
ratio lies in ``ratio``. The draws come from ladle's per-sample generator (see the package
docstring), so the boxes have torchvision's distribution, not its stream of numbers.

:class:`DecodeRandomResizedCrop` draws the same box from the JPEG header's size, before any
pixel is decoded, then decodes at the largest DCT reduction (1/2, 1/4, 1/8) at which the box is
still at least the output size, and resamples the box's part of the reduced image. The result
differs from a full decode followed by :class:`RandomResizedCrop` only where the reduced decode
does (see its docstring for the measured difference); with no reduction it is the same array.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ladle.interop import require
from ladle.transforms.base import Array, Transform, describe, generator, image_hw, size_pair
from ladle.transforms.geometry import INTERPOLATIONS, Resize
from ladle.validation import check_choice

__all__ = ["DecodeRandomResizedCrop", "RandomResizedCrop"]

_TRIES = 10  # torchvision's attempts before it falls back to the centred box
_MAX_REDUCTION = 8


def _bounds(value: Any, name: str, fix: str) -> tuple[float, float]:
    """``value`` as ``(low, high)``: two finite positive numbers with low <= high."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value
        )
    ):
        raise TypeError(
            f"{name} should be a pair (min, max) of numbers, but got {name}={value!r}; {fix}"
        )
    low, high = float(value[0]), float(value[1])
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(
            f"{name} should be (min, max) with 0 < min <= max, but got {name}={value!r}; {fix}"
        )
    return low, high


class RandomResizedCrop(Transform):
    """A random box of the image resized to ``size``, as torchvision's RandomResizedCrop.

    ``size`` is an int (a square) or ``(h, w)``; ``scale`` bounds the box's area as a fraction
    of the image's, ``ratio`` its width / height; ``interpolation`` is one of Resize's (Pillow's
    filters, antialiased as torchvision's PIL path). Takes what :class:`Resize` takes: uint8
    ``(H, W)`` and ``(H, W, 1|3|4)`` images, float32 ``(H, W[, C])``. :meth:`box` is the draw
    alone, for a caller that crops something else (a JPEG not yet decoded).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        antialias: bool | None = True,
    ) -> None:
        self.size = size_pair(size, "size")
        self.scale = _bounds(scale, "scale", "pass area fractions such as (0.08, 1.0)")
        self.ratio = _bounds(ratio, "ratio", "pass width/height bounds such as (3/4, 4/3)")
        self.interpolation = check_choice(interpolation, "interpolation", INTERPOLATIONS)
        self._resize = Resize(self.size, interpolation, antialias=antialias)
        self._log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))

    def box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of a box drawn for a ``height`` x ``width`` image."""
        if height < 1 or width < 1:
            raise ValueError(
                f"{type(self).__name__} needs an image of at least 1 x 1 pixels, but got one of "
                f"{height} x {width}; filter out empty images (or fix what produced them)"
            )
        area = height * width
        for _ in range(_TRIES):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(self._log_ratio[0], self._log_ratio[1]))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        shape = width / height
        if shape < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif shape > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        rows, cols = image_hw(image, self)
        return self.resized(image, self.box(rows, cols, generator(rng)))

    def resized(self, image: Array, box: tuple[int, int, int, int]) -> Array:
        """The ``(top, left, h, w)`` box of ``image``, resized to ``size``."""
        top, left, h, w = box
        return self._resize(image[top : top + h, left : left + w])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
            f"interpolation={self.interpolation!r})"
        )


@functools.cache
def _images() -> ModuleType:
    # imported here: ladle.formats imports ladle.transforms (its crops), not the other way
    import ladle.formats.images as images

    return images


@functools.cache
def _jpeg() -> ModuleType:
    import ladle.formats.jpeg as jpeg

    return jpeg


class DecodeRandomResizedCrop(Transform):
    """Encoded image bytes to :class:`RandomResizedCrop`'s output, decoding a JPEG at the
    smallest DCT scale that still covers the box (see the module docstring).

    Takes bytes, a bytearray, a memoryview or a uint8 array of an encoded image; ``mode`` is
    :func:`ladle.formats.decode_image`'s. A JPEG read from its header is decoded reduced when
    the box is at least twice the output size; any other image is decoded whole and cropped as
    :class:`RandomResizedCrop` does, from the same distribution of boxes. On photo-like JPEGs
    the reduced path differs from a full decode followed by RandomResizedCrop by a mean absolute
    difference of about 0.3 (of 255), 1 at the 99th percentile, 3 at most (1200 x 900 and
    2000 x 1500 sources, output 224; the tests hold it under 1, 2 and 8). A box smaller than
    twice the output, as most are for ImageNet-sized photos at 224, is decoded whole: libjpeg
    cannot reduce less than 2x faster than it decodes, and neither simplejpeg nor Pillow can
    decode only a region, so the saving is for larger sources or smaller outputs.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        mode: str = "RGB",
    ) -> None:
        self.crop = RandomResizedCrop(size, scale, ratio, interpolation)
        self.mode = check_choice(mode, "mode", ("RGB", "L"))

    def __call__(self, data: Any, *, rng: np.random.Generator | None = None) -> Array:
        record = isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype == np.uint8
        if not (record or isinstance(data, bytes | bytearray | memoryview)):
            raise TypeError(
                f"DecodeRandomResizedCrop takes an encoded image (bytes, bytearray, memoryview "
                f"or a 1-D uint8 array), but got {describe(data)}; for a decoded image use "
                f"RandomResizedCrop"
            )
        rng = generator(rng)
        encoded = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data
        header = _jpeg().jpeg_header(encoded)
        if header is None:  # not a JPEG, or no fast decoder to read its header
            return self.crop(_images().decode_image(encoded, self.mode), rng=rng)
        height, width = header[0], header[1]
        top, left, h, w = drawn = self.crop.box(height, width, rng)
        factor = self._reduction(h, w)
        if factor == 1:
            return self.crop.resized(_images().decode_image(encoded, self.mode), drawn)
        image = _images().decode_image(encoded, self.mode, (height // factor, width // factor))
        # Pixel k of the reduced image is block k of the source, pixels [k * factor, (k + 1) *
        # factor): coordinates scale by 1 / factor. (Not by the sizes' ratio: a side that is no
        # multiple of the factor decodes to ceil(side / factor), a partial block at its end.)
        reduced = _jpeg().reduced_size(height, width, factor)
        rows = 1 / factor if image.shape[0] == reduced[0] else image.shape[0] / height
        cols = 1 / factor if image.shape[1] == reduced[1] else image.shape[1] / width
        box = (left * cols, top * rows, (left + w) * cols, (top + h) * rows)
        return self._resample(image, box)

    def _reduction(self, h: int, w: int) -> int:
        """The largest power-of-two factor at which the box still covers the output size."""
        factor = _MAX_REDUCTION
        while factor > 1 and (h // factor < self.crop.size[0] or w // factor < self.crop.size[1]):
            factor //= 2
        return factor

    def _resample(self, image: Array, box: tuple[float, float, float, float]) -> Array:
        pil = require("PIL.Image", "ladle.transforms.DecodeRandomResizedCrop")
        resample = getattr(pil.Resampling, INTERPOLATIONS[self.crop.interpolation])
        out_h, out_w = self.crop.size
        resized = pil.fromarray(image).resize((out_w, out_h), resample, box=box)
        return np.array(resized)

    def __repr__(self) -> str:
        crop = self.crop
        return (
            f"{type(self).__name__}(size={crop.size}, scale={crop.scale}, ratio={crop.ratio}, "
            f"interpolation={crop.interpolation!r}, mode={self.mode!r})"
        )
