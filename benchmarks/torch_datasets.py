"""The dataset bodies as ``torch.utils.data.Dataset`` subclasses.

Imported only once torch is known to be installed. They live at module level, in a module of
their own, so that a spawned torch worker can unpickle them (it imports this module, torch and
``bodies``, never ladle), and a spawned ladle worker never imports torch.
"""

from __future__ import annotations

from typing import Any

import torch.utils.data
from bodies import (
    AugmentBody,
    BigSampleBody,
    JpegBody,
    JpegFilesBody,
    MappedRowsBody,
    ObjectsBody,
    RowsBody,
)

__all__ = [
    "TorchAugment",
    "TorchBigSamples",
    "TorchJpeg",
    "TorchJpegFiles",
    "TorchMappedRows",
    "TorchObjects",
    "TorchRows",
]

Dataset: Any = torch.utils.data.Dataset


class TorchRows(RowsBody, Dataset):
    """The plain Python dataset as a torch.utils.data.Dataset."""


class TorchAugment(AugmentBody, Dataset):
    """Pad, random crop, flip, to float CHW, as a torch Dataset."""


class TorchBigSamples(BigSampleBody, Dataset):
    """3 x 224 x 224 float32 samples made on the fly, as a torch Dataset."""


class TorchJpeg(JpegBody, Dataset):
    """In-memory JPEG bytes decoded and cropped with Pillow, as a torch Dataset."""


class TorchObjects(ObjectsBody, Dataset):
    """Many small Python objects, trivial __getitem__, as a torch Dataset."""


class TorchJpegFiles(JpegFilesBody, Dataset):
    """JPEG files read, decoded and cropped per sample, as torchvision's ImageFolder does."""


class TorchMappedRows(MappedRowsBody, Dataset):
    """Rows of a memory-mapped .npy file, one per sample, as a torch Dataset."""
