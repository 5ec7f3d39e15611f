"""The dataset bodies as ``torch.utils.data.Dataset`` subclasses.

Imported only once torch is known to be installed. They live at module level, in a module of
their own, so that a spawned torch worker can unpickle them (it imports this module, torch and
``bodies``, never ladle), and a spawned ladle worker never imports torch.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
import torch.utils.data
from bodies import (
    AugmentBody,
    BigSampleBody,
    JpegBody,
    JpegFilesBody,
    MappedRowsBody,
    ObjectsBody,
    RowsBody,
    SeededAugmentBody,
)

__all__ = [
    "TorchAugment",
    "TorchImageNet",
    "TorchBigSamples",
    "TorchJpeg",
    "TorchJpegFiles",
    "TorchMappedRows",
    "TorchObjects",
    "TorchRows",
    "TorchSeededAugment",
]

Dataset: Any = torch.utils.data.Dataset


class TorchRows(RowsBody, Dataset):
    """The plain Python dataset as a torch.utils.data.Dataset."""


class TorchAugment(AugmentBody, Dataset):
    """Pad, random crop, flip, to float CHW, as a torch Dataset."""


class TorchSeededAugment(SeededAugmentBody, Dataset):
    """The augmentation with a per-sample np.random.default_rng(i), as a torch Dataset."""


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


class TorchImageNet(Dataset):
    """The ImageNet training recipe written the torchvision way, without torchvision (its
    wheel does not load beside torch's CPU build here): Pillow decode, RandomResizedCrop's box
    drawn from torch's generator as torchvision draws it, Pillow crop + bilinear resize, a
    flip, ToTensor (uint8 HWC to float CHW / 255) and Normalize, in torch ops."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, blobs: list[bytes], labels: Any, size: int = 224) -> None:
        self.blobs = blobs
        self.labels = labels
        self.size = size
        self.mean = torch.tensor(self.MEAN).view(3, 1, 1)
        self.std = torch.tensor(self.STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.blobs)

    @staticmethod
    def box(height: int, width: int) -> tuple[int, int, int, int]:
        area, log_ratio = height * width, torch.log(torch.tensor((3 / 4, 4 / 3)))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,)).item())
                left = int(torch.randint(0, width - w + 1, size=(1,)).item())
                return top, left, h, w
        return 0, 0, height, width  # never reached for these images: they fit the ratio

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.open(io.BytesIO(self.blobs[i])).convert("RGB")
        top, left, h, w = self.box(image.height, image.width)
        image = image.crop((left, top, left + w, top + h))
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        if torch.rand(1).item() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
        tensor = tensor.float().div(255)
        return tensor.sub_(self.mean).div_(self.std), int(self.labels[i])
