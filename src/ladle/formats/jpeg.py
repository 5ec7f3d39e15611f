"""The fast JPEG path: libjpeg-turbo through simplejpeg, straight into NumPy, and decoding at a
reduced size in the DCT domain.

simplejpeg (MIT; its wheels bundle libjpeg-turbo) is optional (``pip install 'ladle[images]'``
installs it). Where it is missing, or cannot decode an image as it is asked to, callers fall
back to Pillow, so it changes speed, never results: Pillow's wheels decode with the same
libjpeg-turbo and the same settings (accurate integer DCT, smooth chroma upsampling), so both
paths give the same pixels, bit for bit, at full size and at every reduced size. The tests hold
that.

Reduced size. libjpeg can skip the high frequencies of each 8x8 block and write the image at
1/2, 1/4 or 1/8 of its size for a fraction of the work. :func:`reduction` picks the largest of
these factors that still leaves at least the size a caller needs; the result is what Pillow's
``Image.draft()`` gives for the same request. (libjpeg-turbo also offers factors such as 3/8 or
7/8; they cost more than a full decode here, so they are never used.)
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

import numpy.typing as npt

__all__ = ["REDUCTIONS", "decode_jpeg", "is_jpeg", "jpeg_header", "reduced_size", "reduction"]

Array = npt.NDArray[Any]

REDUCTIONS = (8, 4, 2, 1)  # the DCT-domain factors used, largest first
_SOI = b"\xff\xd8\xff"  # every JPEG starts with the start-of-image marker and another marker
# the source colour spaces whose conversion libjpeg does as Pillow does; CMYK/YCCK go to Pillow
_DECODED_AS = {"RGB": ("YCbCr", "RGB", "Gray"), "L": ("Gray",)}
_COLORSPACE = {"RGB": "RGB", "L": "GRAY"}


@functools.cache
def _simplejpeg() -> ModuleType | None:
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg  # type: ignore[no-any-return]


def is_jpeg(data: Any) -> bool:
    """True when ``data`` (bytes-like) starts like a JPEG file."""
    return bytes(memoryview(data)[:3]) == _SOI


def jpeg_header(data: Any) -> tuple[int, int, str] | None:
    """``(height, width, colorspace)`` of the JPEG in ``data``, read from its header alone; None
    when the fast decoder is missing or ``data`` is not a JPEG it reads."""
    simplejpeg = _simplejpeg()
    if simplejpeg is None or not is_jpeg(data):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return int(height), int(width), str(colorspace)


def reduction(height: int, width: int, min_height: int, min_width: int) -> int:
    """The largest factor of :data:`REDUCTIONS` at which a ``height`` x ``width`` JPEG still
    decodes to at least ``min_height`` x ``min_width`` (Pillow's ``draft()`` rule: the factor
    divides both sides at least that many times)."""
    for factor in REDUCTIONS:
        if height // factor >= min_height and width // factor >= min_width:
            return factor
    return 1


def reduced_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """The size libjpeg decodes a ``height`` x ``width`` image to at ``1/factor``."""
    return math.ceil(height / factor), math.ceil(width / factor)


def decode_jpeg(
    data: Any, mode: str, factor: int = 1, header: tuple[int, int, str] | None = None
) -> Array | None:
    """The JPEG in ``data`` decoded to ``mode`` (``"RGB"``: ``(H, W, 3)``; ``"L"``: ``(H, W)``)
    at ``1/factor`` of its size, as a writable uint8 array; None where this path does not apply
    (no simplejpeg, not a JPEG, another mode, a CMYK source, a damaged file): decode it with
    Pillow then, which gives the same pixels or the error. ``header``: :func:`jpeg_header` of
    ``data``, when the caller has read it already."""
    simplejpeg = _simplejpeg()
    if simplejpeg is None or mode not in _COLORSPACE:
        return None
    header = jpeg_header(data) if header is None else header
    if header is None or header[2] not in _DECODED_AS[mode]:
        return None
    height, width = reduced_size(header[0], header[1], factor)
    try:
        image = simplejpeg.decode_jpeg(
            data,
            colorspace=_COLORSPACE[mode],
            min_height=height,
            min_width=width,
            min_factor=factor,
        )
    except ValueError:  # damaged or truncated: Pillow decides (it may decode what it can)
        return None
    if image.shape[:2] != (height, width):
        return None  # not the factor asked for; never hand back another size silently
    return image[:, :, 0] if mode == "L" else image  # type: ignore[no-any-return]
