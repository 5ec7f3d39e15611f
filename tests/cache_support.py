"""Datasets for the sample-cache tests (importable by spawned workers)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import ladle


class Decoded(ladle.Dataset[tuple[np.ndarray, int]]):
    """A deterministic "decode": an HWC uint8 image and a label per sample. Each call appends
    one byte to ``calls`` (O_APPEND: atomic across processes), so that its size counts the
    calls of every process that computed samples."""

    def __init__(self, n: int, calls: str, size: int = 24) -> None:
        self.n, self.calls, self.size = n, calls, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        fd = os.open(self.calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        rng = np.random.default_rng(i)
        return rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8), i


def calls(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


class RandomCrop(ladle.Dataset[tuple[np.ndarray, int]]):
    """The augmentation on top of the cache: a crop drawn from ``sample_rng()``."""

    def __init__(self, base: Any, crop: int) -> None:
        self.base, self.crop = base, crop

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image, label = self.base[i]
        rng = ladle.sample_rng()
        y, x = rng.integers(0, image.shape[0] - self.crop + 1, 2)
        return image[y : y + self.crop, x : x + self.crop], label


class Slow(ladle.Dataset[np.ndarray]):
    """Big samples whose every byte is the index: a torn read would mix two values."""

    def __init__(self, n: int, nbytes: int) -> None:
        self.n, self.nbytes = n, nbytes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full(self.nbytes, i % 251, np.uint8)


class Drawing(ladle.Dataset[np.ndarray]):
    """A dataset that draws while it "decodes": it must not be cached."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> np.ndarray:
        return ladle.sample_rng().integers(0, 1000, 3)
