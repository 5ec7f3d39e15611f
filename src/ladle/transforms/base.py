"""What every transform shares: the base class, the generator rule, image and argument checks."""

from __future__ import annotations

import abc
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ladle.seeding import sample_rng
from ladle.validation import check_fits_dtype

__all__ = ["Array", "Transform"]

Array = npt.NDArray[Any]


class Transform(abc.ABC):
    """Base class of ladle's transforms: ``transform(image, rng=None) -> image``.

    :class:`Compose` passes ``rng`` only to instances of this class; other callables in a
    Compose are called with the image alone.
    """

    @abc.abstractmethod
    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        """Return the transformed image; random transforms draw from ``rng`` when given."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def generator(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        return sample_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng should be a numpy.random.Generator or None, but got rng={rng!r}; "
            f"pass np.random.default_rng(seed), or leave it out inside a ladle DataLoader"
        )
    return rng


def image_hw(image: Any, transform: Transform) -> tuple[int, int]:
    """``(H, W)`` of an ``(H, W)`` or ``(H, W, C)`` image, or raise naming the transform."""
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{type(transform).__name__} takes a NumPy image of shape (H, W) or (H, W, C), but "
            f"got {type(image).__name__}; convert it with np.asarray(image)"
        )
    if not 2 <= image.ndim <= 3:
        raise ValueError(
            f"{type(transform).__name__} takes an image of shape (H, W) or (H, W, C), but got "
            f"shape {image.shape}; apply it before ToCHW(), one image at a time"
        )
    return image.shape[0], image.shape[1]


def describe(image: Any) -> str:
    if isinstance(image, np.ndarray):
        return f"an array of dtype={image.dtype} and shape {image.shape}"
    return f"{type(image).__name__} {image!r:.60}"


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def size_pair(size: Any, name: str) -> tuple[int, int]:
    """torchvision's size rule: an int, or a sequence of one or two ints, as ``(h, w)``."""
    given = size
    if is_int(size):
        size = (size, size)
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 1:
        size = (size[0], size[0])
    if not (isinstance(size, Sequence) and len(size) == 2 and all(map(is_int, size))):
        raise TypeError(
            f"{name} should be an int or a (height, width) pair, but got {name}={given!r}; "
            f"pass e.g. {name}=224 or {name}=(224, 160)"
        )
    if size[0] < 1 or size[1] < 1:
        raise ValueError(
            f"{name} should be positive, but got {name}={tuple(size)!r}; pass sizes of at "
            f"least 1 pixel"
        )
    return int(size[0]), int(size[1])


def padding4(padding: Any) -> tuple[int, int, int, int]:
    """torchvision's padding rule, as ``(left, top, right, bottom)``."""
    sides = (padding,) if is_int(padding) else padding
    if not (isinstance(sides, Sequence) and len(sides) in (1, 2, 4) and all(map(is_int, sides))):
        raise TypeError(
            f"padding should be an int or a sequence of 1, 2 or 4 ints (all sides; left/right and "
            f"top/bottom; left, top, right, bottom), but got padding={padding!r}"
        )
    if any(side < 0 for side in sides):
        raise ValueError(
            f"padding should be non-negative, but got padding={padding!r}; pass 0 or more "
            f"pixels per side"
        )
    left, top, right, bottom = (int(side) for side in tuple(sides) * (4 // len(sides)))
    return left, top, right, bottom


def check_fill(fill: Any) -> Any:
    if is_real(fill):
        return fill
    if isinstance(fill, Sequence) and len(fill) > 0 and all(map(is_real, fill)):
        return tuple(fill)
    raise TypeError(
        f"fill should be a number or a sequence of numbers (one per channel), but got "
        f"fill={fill!r}; pass e.g. fill=0 or fill=(124, 116, 104)"
    )


def check_fill_for(fill: Any, image: Array, transform: Transform) -> None:
    """Raise unless ``fill`` has one value or one per channel, each stored exactly in the
    image's dtype (NaN, 1.5 or 300 do not fit uint8)."""
    values = fill if isinstance(fill, tuple) else (fill,)
    channels = image.shape[2] if image.ndim == 3 else 1
    if len(values) not in (1, channels):
        raise ValueError(
            f"{type(transform).__name__} got fill={fill!r} with {len(values)} values for an "
            f"image of shape {image.shape} with {channels} channel(s); give one value per "
            f"channel, or a single number"
        )
    for value in values:
        check_fits_dtype(
            value, "fill", image.dtype, fix=f"pass a fill that {image.dtype} images can hold"
        )


def window(image: Array, top: int, left: int, height: int, width: int, fill: Any) -> Array:
    """The ``height`` x ``width`` window of ``image`` at ``(top, left)``, outside it ``fill``.

    The window may reach past the image on any side: that is constant padding without building
    the padded image. A window inside the image is returned as a view. ``fill`` is already
    checked against the image's dtype.
    """
    rows, cols = image.shape[0], image.shape[1]
    bottom, right = top + height, left + width
    if top >= 0 and left >= 0 and bottom <= rows and right <= cols:
        return image[top:bottom, left:right]
    shape = (height, width, *image.shape[2:])
    if isinstance(fill, tuple):
        out = np.empty(shape, image.dtype)
        out[...] = fill
    elif fill == 0:
        out = np.zeros(shape, image.dtype)  # calloc: no separate fill pass
    else:
        out = np.empty(shape, image.dtype)
        out.fill(fill)
    y0, y1 = max(top, 0), min(bottom, rows)
    x0, x1 = max(left, 0), min(right, cols)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out
