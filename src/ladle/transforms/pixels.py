"""Pixel values and layout: Normalize, ToFloat, and the ``(H, W, C)`` <-> ``(C, H, W)`` views."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ladle.transforms.base import Array, Transform, describe, is_real
from ladle.validation import check_bool, check_choice, check_number

__all__ = ["Normalize", "ToCHW", "ToFloat", "ToHWC"]


def _channel_values(values: Any, name: str, *, positive: bool) -> tuple[float, ...]:
    """A number, or one per channel, as floats: finite, and > 0 when ``positive``."""
    if is_real(values):
        named = [(name, values)]
    else:
        try:
            array = None if isinstance(values, str | bytes) else np.asarray(values)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim > 1 or array.size == 0 or array.dtype.kind not in "iuf":
            raise TypeError(
                f"{name} should be a number or a sequence of numbers (one per channel), but got "
                f"{name}={values!r}; pass e.g. {name}=(0.485, 0.456, 0.406)"
            )
        if array.ndim == 0:
            named = [(name, array.item())]
        else:
            named = [(f"{name}[{i}]", value) for i, value in enumerate(array.tolist())]
    fix = "pass positive values: a std of 0 divides by zero, a negative one flips the sign"
    fix = fix if positive else ""
    return tuple(check_number(value, label, positive=positive, fix=fix) for label, value in named)


class Normalize(Transform):
    """``(image - mean) / std`` per channel, on a floating-point image; not in place.

    ``layout="CHW"`` (torchvision's, after :class:`ToCHW`) reads channels on axis -3, so a batch
    ``(N, C, H, W)`` works too; ``layout="HWC"`` reads them on the last axis. ``mean`` and ``std``
    are numbers or one value per channel, finite, and ``std`` positive. They are cast to the
    image's dtype before the arithmetic, and the division is a true division, so float32
    results equal torchvision's bit for bit.
    """

    def __init__(
        self, mean: float | Sequence[float], std: float | Sequence[float], layout: str = "CHW"
    ) -> None:
        self.layout = check_choice(layout, "layout", ("CHW", "HWC"))
        self.mean = _channel_values(mean, "mean", positive=False)
        self.std = _channel_values(std, "std", positive=True)
        self._shape = (-1, 1, 1) if self.layout == "CHW" else (-1,)
        self._axis = -3 if self.layout == "CHW" else -1
        self._constants: dict[np.dtype[Any], tuple[Array, Array]] = {}
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            self.constants(dtype)  # a std that is zero as float32 fails here, not in a worker

    def check_channels(self, channels: int, shape: tuple[int, ...]) -> None:
        """Raise unless ``mean`` and ``std`` fit an image of ``shape`` with ``channels``."""
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"Normalize got {name} with {len(values)} values for an image of shape "
                    f"{shape} with {channels} channels (layout={self.layout!r}); give one "
                    f"value per channel, or check layout="
                )

    def constants(self, dtype: np.dtype[Any]) -> tuple[Array, Array]:
        """``mean`` and ``std`` as arrays of ``dtype``, shaped to broadcast over the layout."""
        constants = self._constants.get(dtype)
        if constants is None:
            with np.errstate(over="ignore", under="ignore"):
                mean = np.asarray(self.mean, dtype).reshape(self._shape)
                std = np.asarray(self.std, dtype).reshape(self._shape)
            if not (std.all() and np.isfinite(std).all() and np.isfinite(mean).all()):
                raise ValueError(
                    f"std should have no zeros, and mean and std should be finite, but got "
                    f"mean={self.mean}, std={self.std} (as {dtype}); a zero std would divide by "
                    f"zero: pass values that {dtype} holds"
                )
            constants = self._constants[dtype] = (mean, std)
        return constants

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if not isinstance(image, np.ndarray) or image.dtype.kind != "f":
            raise TypeError(
                f"Normalize needs a floating-point NumPy image, but got {describe(image)}; apply "
                f"ToFloat() first"
            )
        if image.ndim < 3:
            raise ValueError(
                f"Normalize(layout={self.layout!r}) needs an image with a channel axis, but got "
                f"shape {image.shape}; apply ToCHW() first (it makes (H, W) into (1, H, W))"
            )
        self.check_channels(image.shape[self._axis], image.shape)
        mean, std = self.constants(image.dtype)
        # order="C": after ToCHW the image is a transposed view, and broadcasting into a
        # C-ordered result is twice as fast as into one that follows the view's strides.
        out: Array = np.subtract(image, mean, order="C")
        out /= std  # the same two roundings as (image - mean) / std, one allocation fewer
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, layout={self.layout!r})"


@functools.cache
def _int_max(dtype: np.dtype[Any]) -> int:
    return int(np.iinfo(dtype).max)  # np.iinfo costs ~0.5 us, a third of ToFloat's time


class ToFloat(Transform):
    """Cast to a floating dtype; integer images are scaled to [0, 1] when ``scale`` is set.

    Integers are divided by their dtype's maximum (255 for uint8), as torchvision's ToTensor and
    ConvertImageDtype do; the division (not a multiplication by the reciprocal) gives torch's
    float32 values bit for bit. Floating-point and bool images are only cast.
    """

    def __init__(self, dtype: npt.DTypeLike = np.float32, scale: bool = True) -> None:
        try:  # np.dtype(None) would be float64: refuse it rather than guess
            resolved = None if dtype is None else np.dtype(dtype)
        except TypeError:
            resolved = None
        if resolved is None or resolved.kind != "f":
            raise TypeError(
                f"dtype should be a floating-point dtype such as np.float32, but got "
                f"dtype={dtype!r}; pass np.float32, np.float64 or np.float16"
            )
        self.dtype = resolved
        self.scale = check_bool(scale, "scale")

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if not isinstance(image, np.ndarray) or image.dtype.kind not in "biuf":
            raise TypeError(
                f"ToFloat takes a NumPy array of integers, floats or bools, but got "
                f"{describe(image)}; convert it with np.asarray(image)"
            )
        # A fresh copy, so the scaling below may be in place. C order follows the logical
        # layout: after ToCHW a flipped image converts in one pass of long rows (~2.6 us for
        # 32x32x3) instead of three-element runs (~4.6 us).
        out = image.astype(self.dtype, order="C")
        if self.scale and image.dtype.kind in "iu":
            np.divide(out, _int_max(image.dtype), out=out)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype.name}, scale={self.scale})"


def _ndim(image: Any, transform: Transform) -> int:
    ndim = getattr(image, "ndim", None)
    if not isinstance(ndim, int):
        raise TypeError(
            f"{type(transform).__name__} takes a NumPy image, but got {describe(image)}; convert "
            f"it with np.asarray(image)"
        )
    return ndim


class ToCHW(Transform):
    """``(H, W, C)`` to ``(C, H, W)`` and ``(H, W)`` to ``(1, H, W)``, as views."""

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        ndim = _ndim(image, self)
        if ndim == 3:
            return image.transpose(2, 0, 1)
        if ndim == 2:
            return image[np.newaxis]
        raise ValueError(
            f"ToCHW takes an image of shape (H, W) or (H, W, C), but got shape {image.shape}"
        )


class ToHWC(Transform):
    """``(C, H, W)`` to ``(H, W, C)``, as a view: the inverse of :class:`ToCHW`."""

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if _ndim(image, self) == 3:
            return image.transpose(1, 2, 0)
        raise ValueError(f"ToHWC takes an image of shape (C, H, W), but got shape {image.shape}")


class NormalizeToCHW(Transform):
    """:class:`ToFloat`, :class:`ToCHW` and :class:`Normalize` in one pass: a uint8 ``(H, W, C)``
    or ``(H, W)`` image to a normalized float32 ``(C, H, W)`` array, equal bit for bit to
    ``Normalize(mean, std)(ToCHW()(ToFloat()(image)))`` (torchvision's ToTensor + Normalize).

    The three steps' float32 operations, in their order, but written into one C-ordered result:
    the scaling reads the uint8 image through the CHW view, and the normalization then runs in
    place, so no float32 HWC copy is made and none is read through strides (about 3x faster
    for 224 x 224 x 3). Other dtypes and shapes take the three steps.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.normalize = Normalize(mean, std, layout="CHW")
        self._steps = (ToFloat(), ToCHW(), self.normalize)

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            result = image
            for step in self._steps:
                result = step(result)
            return result
        chw = ToCHW()(image)
        self.normalize.check_channels(chw.shape[0], chw.shape)
        mean, std = self.normalize.constants(np.dtype(np.float32))
        out: Array = np.empty(chw.shape, dtype=np.float32)
        np.divide(chw, _int_max(image.dtype), out=out, dtype=np.float32)
        np.subtract(out, mean, out=out)
        np.divide(out, std, out=out)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.normalize.mean}, std={self.normalize.std})"
