"""Decoding images into NumPy arrays: from bytes, or from a file.

JPEGs in RGB or L go through libjpeg-turbo directly (:mod:`ladle.formats.jpeg`, when simplejpeg
is installed), everything else through Pillow; both give the same pixels. Pillow and simplejpeg
are optional extras, imported on the first decode (with an install hint if Pillow is missing),
so ``import ladle`` stays NumPy-only.

``min_size=(h, w)`` lets a JPEG decode at a reduced size in the DCT domain (1/2, 1/4 or 1/8):
the largest reduction that leaves at least ``h`` x ``w``, as Pillow's ``draft()`` picks it.
Other formats decode at full size. It is for a pipeline that shrinks the image anyway.

The array is ``np.asarray(image)`` of the (converted) Pillow image, in its natural shape and
dtype: ``"RGB"`` gives ``(H, W, 3)`` uint8, ``"RGBA"`` ``(H, W, 4)``, ``"L"`` ``(H, W)`` (no
channel axis, as torchvision's PIL images give after ``np.asarray``), ``"I"`` int32, ``"F"``
float32, ``"1"`` bool. It is **read-only**: Pillow hands NumPy an immutable ``bytes`` copy of its
pixels, and copying it again into a writable array would cost a second pass over every image for
nothing, since ladle's transforms never write into their input and collation copies anyway. The
JPEG path's arrays are marked read-only too, so that code does not work for one file and fail for
the next. Call ``.copy()`` (or ``np.array(image)``) before writing into one, or before
``torch.from_numpy``.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ladle.errors import ImageDecodeError
from ladle.formats import jpeg
from ladle.interop import require
from ladle.validation import check_int, check_path

__all__ = ["decode_image", "load_bytes", "load_image"]

Array = npt.NDArray[Any]

_PILLOW_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL.Image.MAX_IMAGE_PIXELS's default

# What Pillow raises for data it cannot decode: UnidentifiedImageError and truncated files are
# OSErrors; some plugins raise SyntaxError or ValueError on malformed headers.


@functools.cache
def _pil_image() -> ModuleType:
    return require("PIL.Image", "ladle.formats.decode_image")


def _decode_errors() -> tuple[type[Exception], ...]:
    """What Pillow raises for data it cannot decode; DecompressionBombError derives from
    Exception alone."""
    return (OSError, SyntaxError, ValueError, _pil_image().DecompressionBombError)


def _to_array(data: Any, mode: str | None, min_size: tuple[int, int] | None) -> Array:
    """Decode the encoded bytes ``data`` (bytes-like), converted to ``mode`` if it differs."""
    if mode is not None:
        fast = _fast_jpeg(data, mode, min_size)
        if fast is not None:
            return fast
    with _pil_image().open(io.BytesIO(data)) as image:
        if min_size is not None and image.format == "JPEG":
            width, height = image.size
            factor = jpeg.reduction(height, width, *min_size)
            if factor > 1:
                image.draft(None, (width // factor, height // factor))
        if mode is not None and image.mode != mode:
            return np.asarray(image.convert(mode))  # convert() decodes the pixels first
        return np.asarray(image)


def _fast_jpeg(data: Any, mode: str, min_size: tuple[int, int] | None) -> Array | None:
    header = jpeg.jpeg_header(data)
    if header is None or _over_pillows_limit(header[0], header[1]):
        return None
    factor = 1 if min_size is None else jpeg.reduction(header[0], header[1], *min_size)
    image = jpeg.decode_jpeg(data, mode, factor, header)
    if image is not None:
        image.flags.writeable = False  # as Pillow's arrays are (see the module docstring)
    return image


def _over_pillows_limit(height: int, width: int) -> bool:
    """Whether Pillow warns about or refuses an image this big (its decompression-bomb guard,
    ``Image.MAX_IMAGE_PIXELS``): such a JPEG goes to Pillow, which does. Pillow not imported
    yet: its default limit, since nobody can have changed it."""
    pil = sys.modules.get("PIL.Image")
    limit = getattr(pil, "MAX_IMAGE_PIXELS", None) if pil is not None else _PILLOW_MAX_PIXELS
    return limit is not None and max(1, height) * max(1, width) > limit


def check_min_size(min_size: Any) -> tuple[int, int] | None:
    """``min_size`` as ``(h, w)``: None, an int (both sides) or a pair of positive ints."""
    if min_size is None:
        return None
    pair = (min_size, min_size) if isinstance(min_size, int) else min_size
    fix = "pass (height, width) in pixels, an int for both, or None for the full size"
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError(f"min_size should be (height, width), but got min_size={min_size!r}; {fix}")
    return (
        check_int(pair[0], "min_size[0]", minimum=1, fix=fix),
        check_int(pair[1], "min_size[1]", minimum=1, fix=fix),
    )


def _check_mode(mode: Any) -> None:
    if mode is not None and not isinstance(mode, str):
        raise TypeError(
            f"mode should be a Pillow mode string such as 'RGB' or 'L', or None to keep the "
            f"image's own mode, but got mode={mode!r}"
        )


@functools.cache
def _known_mode(mode: str) -> bool:
    modes = getattr(_pil_image(), "MODES", None)
    return modes is None or mode in modes


def _check_known_mode(mode: str | None) -> None:
    """Refuse a mode Pillow does not know before decoding, rather than as a decode failure."""
    if mode is not None and not _known_mode(mode):
        raise ValueError(
            f"mode should be a Pillow mode such as 'RGB', 'L' or 'RGBA', but got mode={mode!r}; "
            f"Pillow's modes are {', '.join(_pil_image().MODES)}"
        )


def decode_image(
    data: bytes | bytearray | memoryview | Array,
    mode: str | None = "RGB",
    min_size: int | tuple[int, int] | None = None,
) -> Array:
    """The image encoded in ``data`` (JPEG, PNG, ... anything Pillow reads) as a NumPy array.

    ``mode`` is the Pillow mode to convert to when the image's own mode differs (``"RGB"``, as
    torchvision's loader; ``None`` keeps the file's mode). ``data`` is bytes, a bytearray, a
    memoryview or a uint8 NumPy array, such as a record read from a shard. ``min_size=(h, w)``
    lets a JPEG decode smaller, down to 1/8, while keeping at least ``h`` x ``w`` (see the
    module docstring). See the module docstring for the array's shape, dtype and read-only
    flag. Undecodable data raises ValueError.
    """
    _check_mode(mode)
    size = check_min_size(min_size)
    if not isinstance(data, bytes | bytearray | memoryview | np.ndarray):
        is_path = isinstance(data, str | os.PathLike)
        hint = "; use load_image(path) to read a file" if is_path else ""
        raise TypeError(
            f"decode_image takes the encoded image as bytes, bytearray, memoryview or a uint8 "
            f"array, but got {type(data).__name__}{hint}"
        )
    _check_known_mode(mode)
    encoded = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data
    try:
        return _to_array(encoded, mode, size)
    except _decode_errors() as error:
        view = memoryview(encoded)
        raise ValueError(
            f"decode_image could not decode {view.nbytes} bytes starting {bytes(view[:8])!r} "
            f"as an image ({type(error).__name__}: {error}); pass complete JPEG, PNG or other "
            f"Pillow-readable data"
        ) from error


def load_image(
    path: str | os.PathLike[str],
    mode: str | None = "RGB",
    min_size: int | tuple[int, int] | None = None,
) -> Array:
    """The image in the file at ``path`` as a NumPy array: torchvision's ``pil_loader``.

    Reads the file, decodes it and converts it to ``mode`` (see :func:`decode_image`, also for
    ``min_size``). A missing file raises FileNotFoundError; a file Pillow cannot decode
    raises :class:`ladle.errors.ImageDecodeError` naming it: a FormatError (so a ValueError) and,
    like Pillow's own ``UnidentifiedImageError``, an OSError.
    """
    _check_mode(mode)
    path = check_path(path, "path")
    size = check_min_size(min_size)
    _check_known_mode(mode)
    with open(path, "rb") as file:
        encoded = file.read()  # one read: the JPEG path decodes from memory
    try:
        return _to_array(encoded, mode, size)
    except _decode_errors() as error:
        raise ImageDecodeError(
            f"load_image could not decode {os.fspath(path)!r} as an image "
            f"({type(error).__name__}: {error}); check that the file is a complete image "
            f"Pillow reads, or filter it out with is_valid_file=",
            os.fspath(path),
        ) from error


def load_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file at ``path``, still encoded: the ``loader=`` of an :class:`ImageFolder` whose
    transform decodes (``DecodeRandomResizedCrop``, which needs the JPEG's header before any
    pixel). A missing file raises FileNotFoundError."""
    with open(check_path(path, "path"), "rb") as file:
        return file.read()
