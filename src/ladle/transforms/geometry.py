"""Geometric transforms on ``(H, W)`` and ``(H, W, C)`` images: flip, crops and resize."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Literal, cast

import numpy as np

from ladle.interop import require
from ladle.seeding import sample_rng
from ladle.transforms.base import (
    Array,
    Transform,
    check_fill,
    check_fill_for,
    generator,
    image_hw,
    is_int,
    padding4,
    size_pair,
    window,
)
from ladle.validation import check_bool, check_choice, check_int, check_probability

__all__ = ["CenterCrop", "RandomCrop", "RandomHorizontalFlip", "Resize"]

PaddingMode = Literal["constant", "edge", "reflect", "symmetric"]

_PADDING_MODES = ("constant", "edge", "reflect", "symmetric")
INTERPOLATIONS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "box": "BOX",
    "hamming": "HAMMING",
}


class RandomHorizontalFlip(Transform):
    """Flip left-right (axis 1 of an ``(H, W)`` or ``(H, W, C)`` image) with probability ``p``.

    One ``rng.random()`` is drawn per call whatever ``p`` is, so changing ``p`` does not shift
    the draws of the transforms after it. The flip is a view with a negative stride.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p: float = check_probability(p, "p", fix="pass a probability such as p=0.5")

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        image_hw(image, self)
        if generator(rng).random() < self.p:
            return image[:, ::-1]
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p!r})"


class RandomCrop(Transform):
    """Crop a random ``size`` window, after optional padding; torchvision's semantics.

    ``size``: an int (square) or ``(h, w)``. ``padding``: an int (all sides), ``(left/right,
    top/bottom)`` or ``(left, top, right, bottom)``. ``pad_if_needed`` pads an image smaller than
    ``size`` after ``padding``, by the shortfall on both sides of that axis, as torchvision does.
    ``fill`` (a number, or one per channel, that the image's dtype holds exactly) is used by
    ``padding_mode="constant"``; the other modes are NumPy's ``edge``, ``reflect`` and
    ``symmetric`` (torchvision's are the same).

    Draws ``top = int(rng.random() * (H_padded - h + 1))``, then ``left`` likewise (a float
    draw costs a third of ``rng.integers``; its bias is below 2**-50). With constant
    padding the padded image is never built: only the crop is allocated, and a crop that lies
    inside the image is a view of it.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        pad_if_needed: bool = False,
        fill: float | Sequence[float] = 0,
        padding_mode: str = "constant",
    ) -> None:
        self.size = size_pair(size, "size")
        self.padding = None if padding is None else padding4(padding)
        self.pad_if_needed = check_bool(pad_if_needed, "pad_if_needed")
        self.fill = check_fill(fill)
        mode = check_choice(padding_mode, "padding_mode", _PADDING_MODES)
        self.padding_mode = cast(PaddingMode, mode)
        self._pads = self.padding or (0, 0, 0, 0)
        self._plans: dict[tuple[int, ...], tuple[int, int, int, int]] = {}
        self._fill_fits: set[np.dtype[Any]] = set()  # dtypes the fill was checked against

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if self.padding_mode != "constant":
            image_hw(image, self)
            return self._crop_padded(image, generator(rng))
        # The geometry depends only on the image's shape: validated and worked out once per
        # shape, so the per-image cost is two draws and one copy.
        plan = self._plans.get(image.shape) if isinstance(image, np.ndarray) else None
        if plan is None:
            plan = self._plan(image)
        if image.dtype not in self._fill_fits:
            check_fill_for(self.fill, image, self)
            self._fill_fits.add(image.dtype)
        top_pad, left_pad, top_choices, left_choices = plan
        rng = sample_rng() if rng is None else generator(rng)
        top = int(rng.random() * top_choices) - top_pad
        left = int(rng.random() * left_choices) - left_pad
        return window(image, top, left, self.size[0], self.size[1], self.fill)

    def _plan(self, image: Array) -> tuple[int, int, int, int]:
        """For constant padding: (top pad, left pad, top choices, left choices) of a shape."""
        rows, cols = image_hw(image, self)
        check_fill_for(self.fill, image, self)
        height, width = self.size
        left_pad, top_pad, right_pad, bottom_pad = self._pads
        padded_rows = rows + top_pad + bottom_pad
        padded_cols = cols + left_pad + right_pad
        if self.pad_if_needed:
            # torchvision pads the shortfall on both sides, so the padded size overshoots
            if padded_cols < width:
                left_pad += width - padded_cols
                padded_cols += 2 * (width - padded_cols)
            if padded_rows < height:
                top_pad += height - padded_rows
                padded_rows += 2 * (height - padded_rows)
        self._check_fits(rows, cols, padded_rows, padded_cols)
        plan = (top_pad, left_pad, padded_rows - height + 1, padded_cols - width + 1)
        if len(self._plans) < 64:  # a dataset of many image sizes: stop caching, stay correct
            self._plans[image.shape] = plan
        return plan

    def _crop_padded(self, image: Array, rng: np.random.Generator) -> Array:
        """Edge, reflect and symmetric padding: np.pad, in torchvision's order, then slice."""
        rows, cols = image.shape[0], image.shape[1]
        height, width = self.size
        channel = ((0, 0),) * (image.ndim - 2)
        if self.padding is not None:
            left, top, right, bottom = self.padding
            image = np.pad(image, ((top, bottom), (left, right), *channel), self.padding_mode)
        padded_rows, padded_cols = image.shape[0], image.shape[1]
        # Two separate pads as in torchvision: for reflect and symmetric they differ from one.
        if self.pad_if_needed and padded_cols < width:
            extra = width - padded_cols
            image = np.pad(image, ((0, 0), (extra, extra), *channel), self.padding_mode)
        if self.pad_if_needed and padded_rows < height:
            extra = height - padded_rows
            image = np.pad(image, ((extra, extra), (0, 0), *channel), self.padding_mode)
        self._check_fits(rows, cols, image.shape[0], image.shape[1])
        top = int(rng.random() * (image.shape[0] - height + 1))
        left = int(rng.random() * (image.shape[1] - width + 1))
        return image[top : top + height, left : left + width]

    def _check_fits(self, rows: int, cols: int, padded_rows: int, padded_cols: int) -> None:
        if padded_rows < self.size[0] or padded_cols < self.size[1]:
            raise ValueError(
                f"RandomCrop size={self.size} is larger than the image, {(rows, cols)} "
                f"(padded: {(padded_rows, padded_cols)}); pass pad_if_needed=True, or a larger "
                f"padding="
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, padding={self.padding}, "
            f"pad_if_needed={self.pad_if_needed}, fill={self.fill!r}, "
            f"padding_mode={self.padding_mode!r})"
        )


class CenterCrop(Transform):
    """Crop the centre ``size`` window; an image smaller than ``size`` is padded with zeros.

    torchvision's offsets, ``int(round((H - h) / 2.0))`` (round half to even), and its padding
    split (the odd pixel goes to the bottom/right). Without padding the crop is a view.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = size_pair(size, "size")

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        rows, cols = image_hw(image, self)
        height, width = self.size
        top_pad = (height - rows) // 2 if height > rows else 0
        left_pad = (width - cols) // 2 if width > cols else 0
        padded_rows = max(rows, height)
        padded_cols = max(cols, width)
        top = round((padded_rows - height) / 2.0)  # an int, rounded half to even
        left = round((padded_cols - width) / 2.0)
        return window(image, top - top_pad, left - left_pad, height, width, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


@functools.cache
def _pil_image() -> ModuleType:
    return require("PIL.Image", "ladle.transforms.Resize")


class Resize(Transform):
    """Resize through Pillow, as torchvision does for PIL images.

    ``size``: an int resizes the smaller edge to it, keeping the aspect ratio (the longer edge
    becomes ``int(size * long / short)``, capped at ``max_size``); ``(h, w)`` resizes to exactly
    that. Takes uint8 ``(H, W)`` and ``(H, W, 1|3|4)`` images and float32 ``(H, W)`` and
    ``(H, W, C)`` ones (channel by channel, Pillow mode "F"); returns the input's dtype and
    layout. Pillow always antialiases, so ``antialias=False`` is ignored with a warning, as in
    torchvision.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        interpolation: str = "bilinear",
        max_size: int | None = None,
        antialias: bool | None = True,
    ) -> None:
        _pil_image()  # fail here, with the install hint, rather than in a worker
        self.size: int | tuple[int, int]
        if is_int(size) or (isinstance(size, Sequence) and len(size) == 1):
            self.size = size_pair(size, "size")[0]
        else:
            self.size = size_pair(size, "size")
        self.interpolation = check_choice(interpolation, "interpolation", INTERPOLATIONS)
        if max_size is not None:
            if not isinstance(self.size, int):
                raise ValueError(
                    f"max_size is only used when size is an int (the smaller edge), but got "
                    f"size={self.size} with max_size={max_size!r}; drop max_size, or pass an int "
                    f"size"
                )
            max_size = check_int(
                max_size,
                "max_size",
                fix=f"pass an int greater than size={self.size}",
                type_error=ValueError,
            )
            if max_size <= self.size:
                raise ValueError(
                    f"max_size should be an int greater than size={self.size}, but got "
                    f"max_size={max_size!r}; raise it, or drop it"
                )
        self.max_size = max_size
        if antialias is not None:
            antialias = check_bool(antialias, "antialias", fix="pass True (or None)")
        if antialias is False:
            warnings.warn(
                "Resize(antialias=False) is ignored: Pillow always antialiases; pass "
                "antialias=True to silence this warning",
                UserWarning,
                stacklevel=2,
            )
        self.antialias = antialias

    def output_size(self, rows: int, cols: int) -> tuple[int, int]:
        """The ``(h, w)`` an ``rows`` x ``cols`` image is resized to (torchvision's rule)."""
        if not isinstance(self.size, int):
            return self.size
        short, long = (cols, rows) if cols <= rows else (rows, cols)
        new_short, new_long = self.size, int(self.size * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        return (new_long, new_short) if cols <= rows else (new_short, new_long)

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        rows, cols = image_hw(image, self)
        size = self.output_size(rows, cols)
        channels = image.shape[2] if image.ndim == 3 else None
        if image.dtype == np.uint8:
            supported = channels in (None, 1, 3, 4)
        else:
            supported = image.dtype == np.float32 and channels != 0
        if not supported:
            raise TypeError(
                f"Resize takes uint8 images of shape (H, W) or (H, W, 1|3|4), or float32 images "
                f"of shape (H, W) or (H, W, C), but got dtype={image.dtype} with shape "
                f"{image.shape}; convert with image.astype(np.float32) to resize any channels"
            )
        if size == (rows, cols):
            return image
        if channels is None or (image.dtype == np.uint8 and channels != 1):
            return self._resize_plane(image, size)
        planes = [self._resize_plane(image[:, :, c], size) for c in range(image.shape[2])]
        return np.stack(planes, axis=-1)

    def _resize_plane(self, image: Array, size: tuple[int, int]) -> Array:
        pil = _pil_image()
        resample = getattr(pil.Resampling, INTERPOLATIONS[self.interpolation])
        resized = pil.fromarray(image).resize((size[1], size[0]), resample)
        return np.array(resized)  # np.asarray would be read-only: Pillow's buffer is bytes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, "
            f"max_size={self.max_size}, antialias={self.antialias})"
        )
