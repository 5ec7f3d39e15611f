"""Image transforms on NumPy arrays, with torchvision's names and argument semantics.

Images are laid out as Pillow decodes them: ``(H, W)`` grayscale or ``(H, W, C)``. The geometric
transforms (flip, crops, resize) take that layout, so apply them before :class:`ToCHW`;
:class:`Normalize` takes either layout (``layout="CHW"``, torchvision's, by default).

Transforms never write into their input. Their output may be a view of it (a flip, a crop that
needs no padding, :class:`ToCHW`, a resize to the same size), so copy before writing into one;
:class:`ToFloat` always returns a fresh array.

Random transforms draw from ``rng=`` when a ``numpy.random.Generator`` is given, and otherwise
from :func:`ladle.sample_rng`, the generator of the sample being loaded: with the loader's
``seed`` set, the same sample gets the same crop and flip for any ``num_workers``, and after a
resume. :class:`Compose` passes its ``rng`` on to each transform. Every transform is a plain
class that pickles, for worker processes.
"""

from __future__ import annotations

import abc
import functools
import numbers
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from ladle.interop import require
from ladle.seeding import sample_rng

__all__ = [
    "CenterCrop",
    "Compose",
    "Lambda",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Resize",
    "ToCHW",
    "ToFloat",
    "ToHWC",
    "Transform",
]

Array = npt.NDArray[Any]
PaddingMode = Literal["constant", "edge", "reflect", "symmetric"]

_PADDING_MODES = ("constant", "edge", "reflect", "symmetric")
_INTERPOLATIONS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "box": "BOX",
    "hamming": "HAMMING",
}


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


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        return sample_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng should be a numpy.random.Generator or None, but got rng={rng!r}; "
            f"pass np.random.default_rng(seed), or leave it out inside a ladle DataLoader"
        )
    return rng


def _image_hw(image: Any, transform: Transform) -> tuple[int, int]:
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


def _describe(image: Any) -> str:
    if isinstance(image, np.ndarray):
        return f"an array of dtype={image.dtype} and shape {image.shape}"
    return f"{type(image).__name__} {image!r:.60}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _size_pair(size: Any, name: str) -> tuple[int, int]:
    """torchvision's size rule: an int, or a sequence of one or two ints, as ``(h, w)``."""
    if _is_int(size):
        size = (size, size)
    elif isinstance(size, Sequence) and len(size) == 1:
        size = (size[0], size[0])
    if not (isinstance(size, Sequence) and len(size) == 2 and all(map(_is_int, size))):
        raise TypeError(
            f"{name} should be an int or a (height, width) pair, but got {name}={size!r}"
        )
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"{name} should be positive, but got {name}={tuple(size)!r}")
    return int(size[0]), int(size[1])


def _padding4(padding: Any) -> tuple[int, int, int, int]:
    """torchvision's padding rule, as ``(left, top, right, bottom)``."""
    sides = (padding,) if _is_int(padding) else padding
    if not (isinstance(sides, Sequence) and len(sides) in (1, 2, 4) and all(map(_is_int, sides))):
        raise TypeError(
            f"padding should be an int or a sequence of 1, 2 or 4 ints (all sides; left/right and "
            f"top/bottom; left, top, right, bottom), but got padding={padding!r}"
        )
    if any(side < 0 for side in sides):
        raise ValueError(f"padding should be non-negative, but got padding={padding!r}")
    left, top, right, bottom = (int(side) for side in tuple(sides) * (4 // len(sides)))
    return left, top, right, bottom


def _check_fill(fill: Any) -> Any:
    if _is_real(fill):
        return fill
    if isinstance(fill, Sequence) and len(fill) > 0 and all(map(_is_real, fill)):
        return tuple(fill)
    raise TypeError(
        f"fill should be a number or a sequence of numbers (one per channel), but got fill={fill!r}"
    )


def _check_fill_channels(fill: tuple[Any, ...], image: Array, transform: Transform) -> None:
    channels = image.shape[2] if image.ndim == 3 else 1
    if len(fill) not in (1, channels):
        raise ValueError(
            f"{type(transform).__name__} got fill={fill!r} with {len(fill)} values for an image "
            f"of shape {image.shape} with {channels} channel(s); give one value per channel, or "
            f"a single number"
        )


def _window(image: Array, top: int, left: int, height: int, width: int, fill: Any) -> Array:
    """The ``height`` x ``width`` window of ``image`` at ``(top, left)``, outside it ``fill``.

    The window may reach past the image on any side: that is constant padding without building
    the padded image. A window inside the image is returned as a view.
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
        try:
            out.fill(fill)
        except OverflowError:
            raise ValueError(
                f"fill={fill!r} does not fit the image's dtype {image.dtype}; pass a fill in "
                f"its range"
            ) from None
    y0, y1 = max(top, 0), min(bottom, rows)
    x0, x1 = max(left, 0), min(right, cols)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


class Compose(Transform):
    """Apply ``transforms`` in order, passing ``rng`` on to each ladle :class:`Transform`.

    Other callables (plain functions, torchvision-style callables) are called as ``t(image)``.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        if not isinstance(transforms, Sequence) or isinstance(transforms, str | bytes):
            raise TypeError(
                f"transforms should be a list of callables, but got transforms={transforms!r}; "
                f"wrap a single transform in a list: Compose([transform])"
            )
        for position, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    f"transforms should be a list of callables, but transforms[{position}] is "
                    f"{transform!r} ({type(transform).__name__}); wrap a function of the image "
                    f"in Lambda, or instantiate the transform class"
                )
        self.transforms = list(transforms)

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        # Checked per call rather than once in __init__: torchvision users edit .transforms.
        for transform in self.transforms:
            if isinstance(transform, Transform):
                image = transform(image, rng=rng)
            else:
                image = transform(image)
        return image

    def __repr__(self) -> str:
        lines = "".join(f"\n    {transform!r}" for transform in self.transforms)
        return f"{type(self).__name__}({lines}\n)"


class RandomHorizontalFlip(Transform):
    """Flip left-right (axis 1 of an ``(H, W)`` or ``(H, W, C)`` image) with probability ``p``.

    One ``rng.random()`` is drawn per call whatever ``p`` is, so changing ``p`` does not shift
    the draws of the transforms after it. The flip is a view with a negative stride.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not _is_real(p) or not 0 <= p <= 1:
            raise ValueError(f"p should be a probability in [0, 1], but got p={p!r}")
        self.p: float = float(p)

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        _image_hw(image, self)
        if _generator(rng).random() < self.p:
            return image[:, ::-1]
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p!r})"


class RandomCrop(Transform):
    """Crop a random ``size`` window, after optional padding; torchvision's semantics.

    ``size``: an int (square) or ``(h, w)``. ``padding``: an int (all sides), ``(left/right,
    top/bottom)`` or ``(left, top, right, bottom)``. ``pad_if_needed`` pads an image smaller than
    ``size`` after ``padding``, by the shortfall on both sides of that axis, as torchvision does.
    ``fill`` (a number, or one per channel) is used by ``padding_mode="constant"``; the other
    modes are NumPy's ``edge``, ``reflect`` and ``symmetric`` (torchvision's are the same).

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
        self.size = _size_pair(size, "size")
        self.padding = None if padding is None else _padding4(padding)
        if not isinstance(pad_if_needed, bool):
            raise TypeError(
                f"pad_if_needed should be True or False, but got pad_if_needed={pad_if_needed!r}"
            )
        self.pad_if_needed = pad_if_needed
        self.fill = _check_fill(fill)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode should be one of {', '.join(map(repr, _PADDING_MODES))}, but got "
                f"padding_mode={padding_mode!r}"
            )
        self.padding_mode = cast(PaddingMode, padding_mode)
        self._pads = self.padding or (0, 0, 0, 0)
        self._plans: dict[tuple[int, ...], tuple[int, int, int, int]] = {}

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if self.padding_mode != "constant":
            _image_hw(image, self)
            return self._crop_padded(image, _generator(rng))
        # The geometry depends only on the image's shape: validated and worked out once per
        # shape, so the per-image cost is two draws and one copy.
        plan = self._plans.get(image.shape) if isinstance(image, np.ndarray) else None
        if plan is None:
            plan = self._plan(image)
        top_pad, left_pad, top_choices, left_choices = plan
        rng = sample_rng() if rng is None else _generator(rng)
        top = int(rng.random() * top_choices) - top_pad
        left = int(rng.random() * left_choices) - left_pad
        return _window(image, top, left, self.size[0], self.size[1], self.fill)

    def _plan(self, image: Array) -> tuple[int, int, int, int]:
        """For constant padding: (top pad, left pad, top choices, left choices) of a shape."""
        rows, cols = _image_hw(image, self)
        if type(self.fill) is tuple:
            _check_fill_channels(self.fill, image, self)
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
        self.size = _size_pair(size, "size")

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        rows, cols = _image_hw(image, self)
        height, width = self.size
        top_pad = (height - rows) // 2 if height > rows else 0
        left_pad = (width - cols) // 2 if width > cols else 0
        padded_rows = max(rows, height)
        padded_cols = max(cols, width)
        top = round((padded_rows - height) / 2.0)  # an int, rounded half to even
        left = round((padded_cols - width) / 2.0)
        return _window(image, top - top_pad, left - left_pad, height, width, 0)

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
        if _is_int(size) or (isinstance(size, Sequence) and len(size) == 1):
            self.size = _size_pair(size, "size")[0]
        else:
            self.size = _size_pair(size, "size")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation should be one of {', '.join(map(repr, _INTERPOLATIONS))}, but "
                f"got interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        if max_size is not None:
            if not isinstance(self.size, int):
                raise ValueError(
                    f"max_size is only used when size is an int (the smaller edge), but got "
                    f"size={self.size} with max_size={max_size!r}; drop max_size, or pass an int "
                    f"size"
                )
            if not _is_int(max_size) or max_size <= self.size:
                raise ValueError(
                    f"max_size should be an int greater than size={self.size}, but got "
                    f"max_size={max_size!r}"
                )
        self.max_size = max_size
        if antialias is False:
            import warnings

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
        rows, cols = _image_hw(image, self)
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
        resample = getattr(pil.Resampling, _INTERPOLATIONS[self.interpolation])
        resized = pil.fromarray(image).resize((size[1], size[0]), resample)
        return np.array(resized)  # np.asarray would be read-only: Pillow's buffer is bytes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, "
            f"max_size={self.max_size}, antialias={self.antialias})"
        )


class Normalize(Transform):
    """``(image - mean) / std`` per channel, on a floating-point image; not in place.

    ``layout="CHW"`` (torchvision's, after :class:`ToCHW`) reads channels on axis -3, so a batch
    ``(N, C, H, W)`` works too; ``layout="HWC"`` reads them on the last axis. ``mean`` and ``std``
    are numbers or one value per channel. They are cast to the image's dtype before the
    arithmetic, and the division is a true division, so float32 results equal torchvision's bit
    for bit.
    """

    def __init__(
        self, mean: float | Sequence[float], std: float | Sequence[float], layout: str = "CHW"
    ) -> None:
        if layout not in ("CHW", "HWC"):
            raise ValueError(f"layout should be 'CHW' or 'HWC', but got layout={layout!r}")
        self.layout = layout
        self.mean = self._values(mean, "mean")
        self.std = self._values(std, "std")
        self._shape = (-1, 1, 1) if layout == "CHW" else (-1,)
        self._axis = -3 if layout == "CHW" else -1
        self._constants: dict[np.dtype[Any], tuple[Array, Array]] = {}
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            self._constants_for(dtype)  # a std that is zero as float32 fails here, not in a worker

    @staticmethod
    def _values(values: Any, name: str) -> tuple[float, ...]:
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim > 1 or array.size == 0:
            raise TypeError(
                f"{name} should be a number or a sequence of numbers (one per channel), but got "
                f"{name}={values!r}"
            )
        return tuple(float(v) for v in array.reshape(-1))

    def _constants_for(self, dtype: np.dtype[Any]) -> tuple[Array, Array]:
        constants = self._constants.get(dtype)
        if constants is None:
            mean = np.asarray(self.mean, dtype).reshape(self._shape)
            std = np.asarray(self.std, dtype).reshape(self._shape)
            if not std.all():
                raise ValueError(
                    f"std should have no zeros, but got std={self.std} (as {dtype}); a zero std "
                    f"would divide by zero"
                )
            constants = self._constants[dtype] = (mean, std)
        return constants

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if not isinstance(image, np.ndarray) or image.dtype.kind != "f":
            raise TypeError(
                f"Normalize needs a floating-point NumPy image, but got {_describe(image)}; apply "
                f"ToFloat() first"
            )
        if image.ndim < 3:
            raise ValueError(
                f"Normalize(layout={self.layout!r}) needs an image with a channel axis, but got "
                f"shape {image.shape}; apply ToCHW() first (it makes (H, W) into (1, H, W))"
            )
        channels = image.shape[self._axis]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"Normalize got {name} with {len(values)} values for an image of shape "
                    f"{image.shape} with {channels} channels (layout={self.layout!r}); give one "
                    f"value per channel, or check layout="
                )
        mean, std = self._constants_for(image.dtype)
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
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            resolved = None
        if resolved is None or resolved.kind != "f":
            raise TypeError(
                f"dtype should be a floating-point dtype such as np.float32, but got "
                f"dtype={dtype!r}"
            )
        if not isinstance(scale, bool):
            raise TypeError(f"scale should be True or False, but got scale={scale!r}")
        self.dtype = resolved
        self.scale = scale

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if not isinstance(image, np.ndarray) or image.dtype.kind not in "biuf":
            raise TypeError(
                f"ToFloat takes a NumPy array of integers, floats or bools, but got "
                f"{_describe(image)}; convert it with np.asarray(image)"
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


class ToCHW(Transform):
    """``(H, W, C)`` to ``(C, H, W)`` and ``(H, W)`` to ``(1, H, W)``, as views."""

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if image.ndim == 3:
            return image.transpose(2, 0, 1)
        if image.ndim == 2:
            return image[np.newaxis]
        raise ValueError(
            f"ToCHW takes an image of shape (H, W) or (H, W, C), but got shape {image.shape}"
        )


class ToHWC(Transform):
    """``(C, H, W)`` to ``(H, W, C)``, as a view: the inverse of :class:`ToCHW`."""

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        if image.ndim == 3:
            return image.transpose(1, 2, 0)
        raise ValueError(f"ToHWC takes an image of shape (C, H, W), but got shape {image.shape}")


class Lambda(Transform):
    """Apply ``fn(image)``; the transform pickles when ``fn`` does (a module-level function)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"fn should be callable, but got fn={fn!r} ({type(fn).__name__})")
        self.fn = fn

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        return self.fn(image)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"{type(self).__name__}(fn={name})"
