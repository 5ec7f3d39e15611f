"""Photo-like test images, shared by the JPEG and transform tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(height: int, width: int, seed: int = 0, fields: tuple[int, int] = (5, 7)) -> np.ndarray:
    """Smooth colour fields (``fields`` of them, up and across) with grain: what photos
    compress like."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(*fields, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-6, 7, size=smooth.shape, dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def encode(
    array: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **options: object
) -> bytes:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
