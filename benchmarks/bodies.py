"""Dataset bodies: the ``__len__`` and ``__getitem__`` that ladle and torch run verbatim.

Each body is a plain class; ``scenarios.py`` makes it a ``ladle.Dataset`` and
``torch_datasets.py`` a ``torch.utils.data.Dataset``, so both libraries run the same code. This
module imports NumPy only (Pillow lazily): a spawned worker that unpickles a torch dataset imports
it, and must not pay for ladle, and the other way round.

Random augmentations draw from the global ``np.random``: both libraries seed it in every worker
(torch from its base seed and the worker id, ladle likewise), and one draw costs about a
microsecond, where building a ``np.random.default_rng`` per sample would cost tens.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["AugmentBody", "BigSampleBody", "JpegBody", "ObjectsBody", "RowsBody"]


class RowsBody:
    """The plain Python dataset: one row and its label."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.x[i], int(self.y[i])


class AugmentBody:
    """CIFAR-style augmentation of HWC uint8 images: pad by 4, random crop back to the original
    size, random horizontal flip, then float32 CHW scaled to [0, 1].

    ``pad_mode="zero"`` pads with zeros, as torchvision's ``RandomCrop(32, padding=4)`` does,
    written as a zeroed canvas and one slice copy (about 8 us a sample); ``"reflect"`` mirrors
    the border with ``np.pad(mode="reflect")`` (about 25 us a sample, most of it np.pad's own
    Python overhead).
    """

    pad = 4

    def __init__(self, images: np.ndarray, labels: np.ndarray, pad_mode: str = "zero") -> None:
        if pad_mode not in ("zero", "reflect"):
            raise ValueError(f"pad_mode should be 'zero' or 'reflect', but got {pad_mode!r}")
        self.images = images
        self.labels = labels
        self.pad_mode = pad_mode

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = self.images[i]
        height, width, channels = image.shape
        pad = self.pad
        if self.pad_mode == "zero":
            padded = np.zeros((height + 2 * pad, width + 2 * pad, channels), image.dtype)
            padded[pad : pad + height, pad : pad + width] = image
        else:
            padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        top, left = np.random.randint(0, 2 * pad + 1, size=2)
        crop = padded[top : top + height, left : left + width]
        if np.random.random() < 0.5:
            crop = crop[:, ::-1]
        chw = crop.transpose(2, 0, 1).astype(np.float32, order="C")
        chw /= np.float32(255)
        return chw, int(self.labels[i])


class BigSampleBody:
    """A large sample made on the fly: a C x H x W float32 array filled with the index, so that
    moving the bytes, not making them, is what costs."""

    def __init__(self, length: int, shape: tuple[int, ...] = (3, 224, 224)) -> None:
        self.length = length
        self.shape = shape

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.full(self.shape, i, np.float32), i


class JpegBody:
    """Encoded JPEG images held in memory: Pillow decode, random crop, HWC uint8 array.

    ``np.asarray`` gives a read-only view of Pillow's pixel bytes (no copy); torch's collate
    warns once per worker that it wraps a read-only array, which ``scenarios.jpeg`` silences.
    """

    def __init__(self, blobs: list[bytes], labels: np.ndarray, crop: int = 224) -> None:
        self.blobs = blobs
        self.labels = labels
        self.crop = crop

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        image = Image.open(io.BytesIO(self.blobs[i]))
        width, height = image.size
        size = self.crop
        top = np.random.randint(0, height - size + 1)
        left = np.random.randint(0, width - size + 1)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image), int(self.labels[i])


class ObjectsBody:
    """A dataset whose state is many small Python objects (records of an id, a name and a value),
    as metadata-heavy datasets are; ``__getitem__`` is trivial."""

    def __init__(self, records: list[tuple[int, str, float]]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, float]:
        record = self.records[i]
        return record[0], record[2]
