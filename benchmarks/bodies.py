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

__all__ = [
    "AugmentBody",
    "BigSampleBody",
    "JpegBody",
    "JpegFilesBody",
    "JpegRecordTransform",
    "MappedRowsBody",
    "ObjectsBody",
    "RowsBody",
    "decode_crop",
    "SeededAugmentBody",
]


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


class SeededAugmentBody(AugmentBody):
    """The same augmentation as a user writes it without ladle's help: the crop and flip draw
    from ``np.random.default_rng(i)``, a generator made for the sample (so the same sample gets
    the same augmentation in every epoch, for any worker count, in ladle and in torch)."""

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(i)
        image = self.images[i]
        height, width, channels = image.shape
        pad = self.pad
        padded = np.zeros((height + 2 * pad, width + 2 * pad, channels), image.dtype)
        padded[pad : pad + height, pad : pad + width] = image
        top, left = rng.integers(0, 2 * pad + 1, size=2)
        crop = padded[top : top + height, left : left + width]
        if rng.random() < 0.5:
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


def decode_crop(source: Any, size: int) -> np.ndarray:
    """The per-sample work of the JPEG scenarios: Pillow opens ``source`` (a file object or a
    BytesIO), a random ``size`` x ``size`` window is drawn from the global ``np.random``, the
    image is converted to RGB if it is not already, cropped (which decodes it whole, as
    torchvision's RandomCrop of a PIL image does), and returned as an HWC uint8 array.

    ``np.asarray`` gives a read-only view of Pillow's pixel bytes (no copy); torch's collate
    warns once per worker that it wraps a read-only array, which the scenarios silence.
    torchvision's ``pil_loader`` calls ``convert("RGB")`` unconditionally, which copies an RGB
    image once more; here neither side pays for that copy.
    """
    from PIL import Image

    image = Image.open(source)
    width, height = image.size
    top = np.random.randint(0, height - size + 1)
    left = np.random.randint(0, width - size + 1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image)


class JpegBody:
    """Encoded JPEG images held in memory: :func:`decode_crop` of the bytes, and the label."""

    def __init__(self, blobs: list[bytes], labels: np.ndarray, crop: int = 224) -> None:
        self.blobs = blobs
        self.labels = labels
        self.crop = crop

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return decode_crop(io.BytesIO(self.blobs[i]), self.crop), int(self.labels[i])


class JpegFilesBody:
    """An image folder as torchvision's ``ImageFolder`` with ``RandomCrop`` reads it: a path
    and a label per sample; ``__getitem__`` opens the file and runs :func:`decode_crop` on it
    (Pillow reads the file through the open file object as it decodes)."""

    def __init__(self, paths: list[str], labels: list[int], crop: int = 224) -> None:
        self.paths = paths
        self.labels = labels
        self.crop = crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        with open(self.paths[i], "rb") as file:
            return decode_crop(file, self.crop), int(self.labels[i])


class JpegRecordTransform:
    """The same work as a transform of ``(jpeg_bytes, label)`` samples, as a ShardDataset of
    the image folder gives them: :func:`decode_crop` of the bytes, and the label."""

    def __init__(self, crop: int = 224) -> None:
        self.crop = crop

    def __call__(self, sample: tuple[bytes, int]) -> tuple[np.ndarray, int]:
        data, label = sample
        return decode_crop(io.BytesIO(data), self.crop), int(label)


class MappedRowsBody:
    """Rows of a memory-mapped ``.npy`` file and labels from another, one sample at a time, as
    a torch user reads a large array: ``np.load(mmap_mode="r")``, ``x[i]`` (a read-only view
    of the map; collate copies it into the batch). Each process maps the files when it first
    reads; pickling keeps only the paths."""

    def __init__(self, x_path: str, y_path: str) -> None:
        self.x_path = x_path
        self.y_path = y_path
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.length = int(np.load(x_path, mmap_mode="r").shape[0])

    def _map(self) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None or self.y is None:
            self.x = np.load(self.x_path, mmap_mode="r").view(np.ndarray)
            self.y = np.load(self.y_path, mmap_mode="r").view(np.ndarray)
        return self.x, self.y

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        x, y = self._map()
        return x[i], int(y[i])

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"x": None, "y": None}


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
