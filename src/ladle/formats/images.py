"""Decoding images into NumPy arrays with Pillow: from bytes, or from a file.

Pillow is an optional extra, imported on the first decode (with an install hint if missing), so
``import ladle`` stays NumPy-only.

The array is ``np.asarray(image)`` of the (converted) Pillow image, in its natural shape and
dtype: ``"RGB"`` gives ``(H, W, 3)`` uint8, ``"RGBA"`` ``(H, W, 4)``, ``"L"`` ``(H, W)`` (no
channel axis, as torchvision's PIL images give after ``np.asarray``), ``"I"`` int32, ``"F"``
float32, ``"1"`` bool. It is **read-only**: Pillow hands NumPy an immutable ``bytes`` copy of its
pixels, and copying it again into a writable array would cost a second pass over every image for
nothing, since ladle's transforms never write into their input and collation copies anyway. Call
``.copy()`` (or ``np.array(image)``) before writing into one, or before ``torch.from_numpy``.
"""

from __future__ import annotations

import functools
import io
import os
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ladle.errors import ImageDecodeError
from ladle.interop import require
from ladle.validation import check_path

__all__ = ["decode_image", "load_image"]

Array = npt.NDArray[Any]

# What Pillow raises for data it cannot decode: UnidentifiedImageError and truncated files are
# OSErrors; some plugins raise SyntaxError or ValueError on malformed headers.


@functools.cache
def _pil_image() -> ModuleType:
    return require("PIL.Image", "ladle.formats.decode_image")


def _decode_errors() -> tuple[type[Exception], ...]:
    """What Pillow raises for data it cannot decode; DecompressionBombError derives from
    Exception alone."""
    return (OSError, SyntaxError, ValueError, _pil_image().DecompressionBombError)


def _to_array(source: Any, mode: str | None) -> Array:
    """Open ``source`` (a file object), decode it and convert it to ``mode`` if it differs."""
    with _pil_image().open(source) as image:
        if mode is not None and image.mode != mode:
            return np.asarray(image.convert(mode))  # convert() decodes the pixels first
        return np.asarray(image)


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


def decode_image(data: bytes | bytearray | memoryview | Array, mode: str | None = "RGB") -> Array:
    """The image encoded in ``data`` (JPEG, PNG, ... anything Pillow reads) as a NumPy array.

    ``mode`` is the Pillow mode to convert to when the image's own mode differs (``"RGB"``, as
    torchvision's loader; ``None`` keeps the file's mode). ``data`` is bytes, a bytearray, a
    memoryview or a uint8 NumPy array, such as a record read from a shard. See the module
    docstring for the array's shape, dtype and read-only flag. Undecodable data raises
    ValueError.
    """
    _check_mode(mode)
    if not isinstance(data, bytes | bytearray | memoryview | np.ndarray):
        is_path = isinstance(data, str | os.PathLike)
        hint = "; use load_image(path) to read a file" if is_path else ""
        raise TypeError(
            f"decode_image takes the encoded image as bytes, bytearray, memoryview or a uint8 "
            f"array, but got {type(data).__name__}{hint}"
        )
    _check_known_mode(mode)
    buffer = io.BytesIO(np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data)
    try:
        return _to_array(buffer, mode)
    except _decode_errors() as error:
        with buffer.getbuffer() as view:
            size, head = view.nbytes, bytes(view[:8])
        raise ValueError(
            f"decode_image could not decode {size} bytes starting {head!r} "
            f"as an image ({type(error).__name__}: {error}); pass complete JPEG, PNG or other "
            f"Pillow-readable data"
        ) from error


def load_image(path: str | os.PathLike[str], mode: str | None = "RGB") -> Array:
    """The image in the file at ``path`` as a NumPy array: torchvision's ``pil_loader``.

    Opens the file, decodes it with Pillow and converts it to ``mode`` (see
    :func:`decode_image`). A missing file raises FileNotFoundError; a file Pillow cannot decode
    raises :class:`ladle.errors.ImageDecodeError` naming it: a FormatError (so a ValueError) and,
    like Pillow's own ``UnidentifiedImageError``, an OSError.
    """
    _check_mode(mode)
    path = check_path(path, "path")
    _check_known_mode(mode)
    with open(path, "rb") as file:
        try:
            return _to_array(file, mode)
        except _decode_errors() as error:
            raise ImageDecodeError(
                f"load_image could not decode {os.fspath(path)!r} as an image "
                f"({type(error).__name__}: {error}); check that the file is a complete image "
                f"Pillow reads, or filter it out with is_valid_file=",
                os.fspath(path),
            ) from error
