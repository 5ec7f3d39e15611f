"""Tensor samples from worker processes travel in the shared-memory slabs, as arrays do: the
main process gets tensors whose memory is the slab, equal to torch's DataLoader's batches.

Before, a batch of tensors (a dataset ending in ToTensor, torch ops in ``__getitem__``) went
pickled through the pipe: 0.6x torch's own loader on the ImageNet recipe. Every loader has
``timeout=60``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import ladle
import ladle.torch as lt

WORKERS = {"num_workers": 2, "timeout": 60}


class Tensors(tud.Dataset[Any]):
    """Samples of torch tensors in several dtypes, some too small for a slab, one bfloat16."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> Any:
        image = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 32, 32) + i
        return {
            "image": image,
            "mask": (image > 1500).to(torch.uint8),
            "half": image.to(torch.float16),
            "brain": image[0].to(torch.bfloat16),  # no NumPy dtype: pickled, as torch sends it
            "transposed": image[0].t(),  # a non-contiguous view
            "label": torch.tensor(i),
            "ids": torch.arange(6000, dtype=torch.int64) * i,
        }


def slab_ranges() -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of ladle's /dev/shm segments."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.basename(fields[5]).startswith("ladle-"):
                start, end = (int(part, 16) for part in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def in_slab(tensor: torch.Tensor) -> bool:
    address = tensor.data_ptr()
    return any(start <= address < end for start, end in slab_ranges())


pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="slabs live in /dev/shm")


@pytest.mark.parametrize("namespace", [ladle, lt], ids=["ladle", "ladle.torch"])
def test_tensor_batches_equal_torchs_and_live_in_the_slabs(namespace: Any) -> None:
    expected = list(tud.DataLoader(Tensors(), batch_size=8))
    loader = namespace.DataLoader(Tensors(), batch_size=8, **WORKERS)
    batches = []
    for batch in loader:
        assert type(batch["image"]) is torch.Tensor
        # the big leaves are views of the slab the worker collated into, not unpickled copies
        assert in_slab(batch["image"]) and in_slab(batch["ids"]) and in_slab(batch["half"])
        assert not in_slab(batch["brain"])
        batches.append(batch)
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            assert got[key].shape == want[key].shape, key
            assert torch.equal(got[key], want[key]), key
    del batches, got


class OneTensor(ladle.Dataset[Any]):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> Any:
        return np.full((64, 64), i, dtype=np.float32)


def stack_as_tensor(samples: list[np.ndarray]) -> torch.Tensor:
    """A collate_fn of the user's that returns a tensor made outside the slab."""
    return torch.from_numpy(np.stack(samples)).mul(2)


def test_a_tensor_made_by_a_collate_fn_is_copied_into_the_slab() -> None:
    loader = ladle.DataLoader(OneTensor(), batch_size=4, collate_fn=stack_as_tensor, **WORKERS)
    batches = list(loader)
    assert all(type(b) is torch.Tensor and in_slab(b) for b in batches)
    for position, batch in enumerate(batches):
        for row, index in enumerate(range(4 * position, 4 * position + 4)):
            assert torch.equal(batch[row], torch.full((64, 64), 2.0 * index))


class Parameters(tud.Dataset[Any]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> Any:
        return torch.nn.Parameter(torch.full((100, 100), float(i)), requires_grad=False)


def test_tensor_subclasses_keep_their_type() -> None:
    expected = list(tud.DataLoader(Parameters(), batch_size=2, num_workers=2))
    batches = list(lt.DataLoader(Parameters(), batch_size=2, **WORKERS))
    for got, want in zip(batches, expected, strict=True):
        assert type(got) is type(want)
        assert torch.equal(got, want)


class MemoizedClips(tud.Dataset[Any]):
    """A dataset that collates each clip's frames once, in ``__getitem__``, and keeps them."""

    def __init__(self, collate: Any, frame: Any) -> None:
        self.collate, self.frame, self.memo = collate, frame, {}

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> Any:
        if i not in self.memo:
            self.memo[i] = self.collate([self.frame(i) for _ in range(4)])
        return self.memo[i]


@pytest.mark.parametrize(
    ("collate", "frame"),
    [
        (ladle.default_collate, lambda i: np.full((64, 64), i, np.float32)),
        (lt.default_collate, lambda i: torch.full((64, 64), float(i))),
    ],
    ids=["numpy", "torch"],
)
def test_what_the_dataset_collates_and_keeps_is_not_written_over(collate: Any, frame: Any) -> None:
    # Only the loader's collate writes into a slab, which is written again once its batch is
    # done: a clip collated in __getitem__ and memoized there lived in a slab, and later epochs
    # read other batches' bytes in it.
    loader = ladle.DataLoader(
        MemoizedClips(collate, frame), batch_size=4, persistent_workers=True, **WORKERS
    )
    for _ in range(3):
        for k, batch in enumerate(loader):
            first = np.asarray(batch[:, 0, 0, 0])
            np.testing.assert_array_equal(first, np.arange(4 * k, 4 * k + 4, dtype=np.float32))
    loader.close()


class Float8(tud.Dataset[Any]):
    """Tensors of the dtypes plain pickle cannot bring back (torch's loader uses shared memory):
    float8 and complex32, also empty and 0-d."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> Any:
        values = torch.arange(8, dtype=torch.float32) / 4 + i
        return {
            "e4m3": values.to(torch.float8_e4m3fn),
            "e5m2": values.reshape(2, 4).t().to(torch.float8_e5m2),  # non-contiguous
            "chalf": torch.complex(values, -values).to(torch.complex32),
            "empty": torch.zeros(0, dtype=torch.float8_e4m3fn),
            "scalar": torch.tensor(float(i)).to(torch.float8_e5m2),
        }


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("namespace", [ladle, lt], ids=["ladle", "ladle.torch"])
def test_float8_and_complex32_tensors_cross_from_workers_as_torchs_do(namespace: Any) -> None:
    expected = list(tud.DataLoader(Float8(), batch_size=4, num_workers=2))
    batches = list(namespace.DataLoader(Float8(), batch_size=4, **WORKERS))
    assert len(batches) == len(expected) == 3
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
            assert torch.equal(got[key].view(torch.uint8), want[key].view(torch.uint8)), key
