"""What the benchmark measures: the data, the contenders of each scenario, and their targets.

A contender is a factory for a fresh loader (anything iterable once per epoch, yielding batches
whose first element is the batch's sample array), or, in an isolated scenario (``disk``), the
command line of a child process that runs one epoch and reports its figures. The harness in
``run.py`` decides how to time them; nothing here knows about clocks. The dataset bodies live in
``bodies.py``, their torch classes in ``torch_datasets.py`` (imported only when torch is
installed), the data on disk and the isolated runs in ``disk.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from bodies import (
    AugmentBody,
    BigSampleBody,
    JpegBody,
    JpegRecordTransform,
    ObjectsBody,
    RowsBody,
    SeededAugmentBody,
)

import ladle

N_SAMPLES = 60_000
N_FEATURES = 784
N_CLASSES = 10
BATCH_SIZE = 256

WORKERS = 2
AUGMENT_IMAGES, AUGMENT_SIZE, AUGMENT_BATCH = 20_000, 32, 256
NUMPY_AUGMENT_BATCH = 128
AUGMENT_PAD = "zero"  # or "reflect": np.pad's border mirroring, 3x the per-sample work
BIG_SAMPLES, BIG_SHAPE, BIG_BATCH = 2_048, (3, 224, 224), 32
JPEG_IMAGES, JPEG_SIZE, JPEG_CROP, JPEG_QUALITY, JPEG_BATCH = 2_000, 256, 224, 90, 64
# imagenet: photo-sized JPEGs (ImageNet's are around 500 x 375), the training crop to 224
IMAGENET_IMAGES, IMAGENET_IMAGES_QUICK, IMAGENET_BATCH = 2_000, 400, 64
IMAGENET_HEIGHT, IMAGENET_WIDTH, IMAGENET_QUALITY = 375, 500, 90
# jpeg-files: the image folder's size is disk.JPEG_FILES (20,000; --quick 2,000); the serial
# limit decodes this many batches a round rather than whole epochs
JPEG_FILES_BATCH, JPEG_FILES_LIMIT_BATCHES = 64, 30
# disk: disk.DISK_SAMPLES x 128 KiB (4 GiB; --quick 4,096, 512 MiB); ladle's tree must stay below
DISK_BATCH, DISK_PEAK_MIB = 64, 1024
# 700,000 records of (int, str, float) are 128 MiB of Python objects (tracemalloc, Python 3.11).
STARTUP_RECORDS, STARTUP_BATCH = 700_000, 64
# ladle.torch against ladle: throughput at least this fraction, time to first batch at most this
# multiple (startup); the tensor conversion in the main process is the only extra work
LADLE_TORCH_THROUGHPUT, LADLE_TORCH_FIRST_BATCH = 0.95, 1.05

CACHE = Path(__file__).resolve().parent / "results"  # git-ignored

Role = Literal["ladle", "torch", "limit"]


class Unavailable(Exception):
    """A scenario cannot run here (an optional package is missing); the message says why."""


Metric = Literal["throughput", "first_batch", "peak_memory"]


@dataclass(frozen=True)
class Setup:
    """What every scenario is built with: torch (None when not installed), whether the
    worker scenarios keep their workers between epochs (``persistent_workers``, both sides),
    and whether this is a ``--quick`` run (the on-disk scenarios then use smaller data)."""

    torch: ModuleType | None
    persistent_workers: bool = False
    quick: bool = False


@dataclass(frozen=True)
class Contender:
    """One way of producing the scenario's batches.

    ``make`` builds a fresh loader; iterating the loader once is one epoch. ``role`` says what the
    contender is compared as: ladle, the torch reference, or the physical limit. ``scale``
    multiplies the measured throughput: the limit of a worker scenario is the serial loop times
    the cores the workers can use. ``samples_per_epoch`` overrides the scenario's for a
    contender whose "epoch" is a fixed number of batches (a serial limit over a large data
    set). In an isolated scenario ``make`` is None and ``command(out)`` is the command line of
    a child process that runs one epoch and writes its figures to ``out`` as JSON.
    """

    name: str
    role: Role
    make: Callable[[], Iterable[Any]] | None
    note: str = ""
    scale: float = 1.0
    samples_per_epoch: int | None = None
    command: Callable[[Path], list[str]] | None = None


@dataclass(frozen=True)
class Target:
    """``contender``'s figure over the reference's must be within ``bound``.

    ``reference`` is a role: ``"torch"`` means the torch contender of the scenario (the fastest
    one), ``"limit"`` the physical-limit contender; ``"ladle"`` the contender named ``"ladle"``
    (not the fastest of the role: the other ladle rows are variants measured against it);
    ``"absolute"`` compares with ``bound`` itself. ``metric="throughput"``: samples/s ratio at
    least ``bound``; ``metric="first_batch"``: time-to-first-batch ratio at most ``bound``;
    ``metric="peak_memory"`` (reference ``"absolute"``): the peak memory of the contender's
    process tree (PSS, see ``run.py``) at most ``bound`` MiB. ``against`` names another
    contender to compare with instead of the role's (like with like: the same dataset).
    """

    contender: str
    reference: Literal["torch", "limit", "ladle", "absolute"]
    bound: float
    metric: Metric = "throughput"
    against: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    samples_per_epoch: int
    batch_size: int
    contenders: list[Contender]
    targets: list[Target] = field(default_factory=list)
    num_workers: int = 0
    persistent_workers: bool = False
    throughput: bool = True  # False: only time to first batch (and memory) is measured
    warmup_batches: int | None = None  # None: the harness's default
    rounds: int | None = None  # None: the harness's (--rounds overrides either)
    epochs_per_round: int | None = None  # set: no calibration epoch, this many epochs a round
    isolated: bool = False  # every contender runs in child processes (Contender.command)
    bytes_per_sample: int | None = None  # set: GB/s is reported too
    close: Callable[[], None] | None = None  # set: called once measured (servers, temp dirs)


@dataclass(frozen=True)
class Data:
    """The shared in-memory data: features ``x`` (float32) and labels ``y`` (int64)."""

    x: np.ndarray
    y: np.ndarray


def make_data(n: int = N_SAMPLES, features: int = N_FEATURES, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, features), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, size=n, dtype=np.int64)
    return Data(x, y)


@functools.cache
def shared_data() -> Data:
    """The data of ``in-memory`` and ``python-dataset``, made once; ``cache_clear()`` drops it."""
    return make_data()


def ladle_torch_target(metric: Metric = "throughput") -> Target:
    """ladle.torch's target: within 5% of the scenario's ``"ladle"`` contender."""
    if metric == "first_batch":
        return Target("ladle.torch", "ladle", LADLE_TORCH_FIRST_BATCH, "first_batch")
    return Target("ladle.torch", "ladle", LADLE_TORCH_THROUGHPUT)


def load_torch() -> ModuleType | None:
    """torch, or None when it is not installed (the torch contenders are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def make_images(n: int, size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random HWC uint8 images of ``size`` x ``size`` x 3, and int64 labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return images, rng.integers(0, N_CLASSES, size=n, dtype=np.int64)


def _encode_jpeg(rng: np.random.Generator, size: int, quality: int, width: int = 0) -> bytes:
    """A ``size`` x ``size`` (or ``size`` x ``width``) photo-like JPEG."""
    from PIL import Image

    width = width or size
    # Smooth colour fields plus grain: compresses and decodes like a photo, unlike pure noise.
    coarse = Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, size), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    image = Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_jpegs(
    n: int = JPEG_IMAGES,
    size: int = JPEG_SIZE,
    quality: int = JPEG_QUALITY,
    seed: int = 2,
    width: int = 0,
) -> list[bytes]:
    """``n`` RGB JPEGs of ``size`` x ``size`` (``size`` high, ``width`` wide when given),
    encoded once and cached under results/."""
    shape = f"{size}x{width}" if width else f"{size}"
    path = CACHE / f"jpeg-{n}x{shape}-q{quality}-seed{seed}.npz"
    if path.exists():
        with np.load(path) as cached:
            data, ends = cached["data"], cached["ends"]
        starts = np.concatenate([[0], ends[:-1]])
        return [data[a:b].tobytes() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    rng = np.random.default_rng(seed)
    blobs = [_encode_jpeg(rng, size, quality, width) for _ in range(n)]
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(
        partial,
        data=np.frombuffer(b"".join(blobs), np.uint8),
        ends=np.cumsum([len(b) for b in blobs]),
    )
    os.replace(partial, path)
    return blobs


def make_records(n: int = STARTUP_RECORDS) -> list[tuple[int, str, float]]:
    """``n`` small Python records; 700,000 of them are 128 MiB of objects."""
    return [(i, f"record-{i:08d}", i * 0.5) for i in range(n)]


def limit_scale(num_workers: int) -> float:
    """How many times the serial loop the workers can run at best: one per core they get."""
    return float(min(num_workers, os.cpu_count() or 1))


class NumpyGather:
    """The physical limit of the in-memory case: one NumPy gather per array per batch.

    Each epoch draws one permutation and slices it into batches, as a shuffling loader must.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y, size = self.x, self.y, self.batch_size
        perm = self.rng.permutation(len(x))
        for start in range(0, len(perm), size):
            idx = perm[start : start + size]
            yield x[idx], y[idx]


class GetitemLoop:
    """The floor of the Python-dataset case: the same ``__getitem__`` calls, serially, then one
    ``np.array`` per field (the fastest NumPy stack of a list of small arrays). With
    ``batches`` an epoch stops after that many batches (of a fresh permutation)."""

    def __init__(
        self, dataset: Any, batch_size: int, seed: int = 0, batches: int | None = None
    ) -> None:
        self.dataset, self.batch_size, self.batches = dataset, batch_size, batches
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        getitem, size = self.dataset.__getitem__, self.batch_size
        perm = self.rng.permutation(len(self.dataset))
        if self.batches is not None:
            perm = perm[: self.batches * size]
        for start in range(0, len(perm), size):
            xs, ys = zip(*[getitem(i) for i in perm[start : start + size].tolist()], strict=True)
            yield np.array(xs), np.array(ys)


class LadleRows(RowsBody, ladle.Dataset[tuple[Any, int]]):
    """The plain Python dataset as a ladle.Dataset."""


class LadleAugment(ladle.Dataset[tuple[np.ndarray, int]]):
    """The augment scenario as a ladle user writes it: ``ladle.transforms``, whose random crop
    and flip draw from ``ladle.sample_rng()`` (so the epoch is the same for any worker count).
    The same work as ``AugmentBody``, the NumPy code torch runs. ``rng`` is for the serial
    limit, which runs outside a loader, where no sample_rng() exists."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        pad_mode: str = "zero",
        rng: np.random.Generator | None = None,
    ) -> None:
        from ladle import transforms as T

        self.images = images
        self.labels = labels
        mode = "constant" if pad_mode == "zero" else pad_mode
        self.transform = T.Compose(
            [
                T.RandomCrop(images.shape[1], padding=AugmentBody.pad, padding_mode=mode),
                T.RandomHorizontalFlip(),
                T.ToCHW(),  # before ToFloat: the cast then writes CHW in one pass
                T.ToFloat(),
            ]
        )
        self.rng = rng

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.transform(self.images[i], rng=self.rng), int(self.labels[i])


class LadleBigSamples(BigSampleBody, ladle.Dataset[tuple[np.ndarray, int]]):
    """3 x 224 x 224 float32 samples made on the fly, as a ladle.Dataset."""


class LadleJpeg(JpegBody, ladle.Dataset[tuple[np.ndarray, int]]):
    """In-memory JPEG bytes decoded and cropped with Pillow, as a ladle.Dataset."""


class LadleImageNet(ladle.Dataset[tuple[np.ndarray, int]]):
    """The ImageNet training recipe from ladle's pieces: DecodeRandomResizedCrop (the box from
    the JPEG header), a flip, and NormalizeToCHW (ToFloat + ToCHW + Normalize in one pass)."""

    def __init__(
        self,
        blobs: list[bytes],
        labels: np.ndarray,
        size: int = 224,
        rng: np.random.Generator | None = None,
    ) -> None:
        import ladle.transforms as T

        self.blobs = blobs
        self.labels = labels
        self.rng = rng  # the serial limit's, outside a loader (inside, sample_rng())
        self.pipeline = T.Compose(
            [
                T.DecodeRandomResizedCrop(size),
                T.RandomHorizontalFlip(),
                T.NormalizeToCHW((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.pipeline(self.blobs[i], rng=self.rng), int(self.labels[i])


class LadleSeededAugment(SeededAugmentBody, ladle.Dataset[tuple[np.ndarray, int]]):
    """The user-written augmentation (per-sample default_rng(i)), as a ladle.Dataset."""


class LadleObjects(ObjectsBody, ladle.Dataset[tuple[int, float]]):
    """Many small Python objects, trivial __getitem__, as a ladle.Dataset."""


def in_memory(setup: Setup) -> Scenario:
    data, torch = shared_data(), setup.torch
    x, y = data.x, data.y
    n, size = len(x), BATCH_SIZE
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(ladle.TensorDataset(x, y), batch_size=size, shuffle=True),
            "ladle.TensorDataset(x, y) on NumPy arrays; NumPy batches",
        ),
    ]
    if torch is not None:
        import ladle.torch as lt  # here, not at the top: a spawned ladle worker never imports it

        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tud = torch.utils.data
        contenders += [
            Contender(
                "ladle output='torch'",
                "ladle",
                lambda: ladle.DataLoader(
                    ladle.TensorDataset(x, y), batch_size=size, shuffle=True, output="torch"
                ),
                "same, batches handed over as torch tensors (zero-copy)",
            ),
            Contender(
                "ladle.torch",
                "ladle",
                lambda: lt.DataLoader(lt.TensorDataset(tx, ty), batch_size=size, shuffle=True),
                "ladle.torch.DataLoader(ladle.torch.TensorDataset(tx, ty)), the torch tensors",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(tud.TensorDataset(tx, ty), batch_size=size, shuffle=True),
                "torch.utils.data.TensorDataset on tensors sharing the same memory",
            ),
        ]
    contenders.append(
        Contender(
            "numpy gather (limit)",
            "limit",
            lambda: NumpyGather(x, y, size),
            "rng.permutation(n) per epoch, then x[idx], y[idx] per batch",
        )
    )
    return Scenario(
        name="in-memory",
        description=(
            f"TensorDataset of {n:,} x {x.shape[1]} float32 + int64 labels, "
            f"batch {size}, shuffle, num_workers=0"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[
            Target("ladle", "torch", 6.0),
            Target("ladle", "limit", 0.70),
            ladle_torch_target(),
        ],
    )


def python_dataset(setup: Setup) -> Scenario:
    data, torch = shared_data(), setup.torch
    x, y = data.x, data.y
    n, size = len(x), BATCH_SIZE
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(LadleRows(x, y), batch_size=size, shuffle=True),
            "ladle.Dataset subclass over NumPy arrays",
        )
    ]
    if torch is not None:
        from torch_datasets import TorchRows as rows

        import ladle.torch as lt

        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tud = torch.utils.data
        contenders += [
            Contender(
                "ladle.torch",
                "ladle",
                lambda: lt.DataLoader(rows(x, y), batch_size=size, shuffle=True),
                "ladle.torch.DataLoader over torch's Dataset subclass (NumPy arrays)",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(rows(x, y), batch_size=size, shuffle=True),
                "torch Dataset subclass, same body, same NumPy arrays",
            ),
            Contender(
                "torch, tensor data",
                "torch",
                lambda: tud.DataLoader(rows(tx, ty), batch_size=size, shuffle=True),
                "same body over torch tensors (x[i] is a tensor row)",
            ),
        ]
    contenders.append(
        Contender(
            "getitem loop (limit)",
            "limit",
            lambda: GetitemLoop(LadleRows(x, y), size),
            "the same __getitem__ calls in a list comprehension, then np.array per field",
        )
    )
    return Scenario(
        name="python-dataset",
        description=(
            f"map-style Python Dataset, __getitem__ -> (x[i], int(y[i])), x {n:,} x "
            f"{x.shape[1]} float32, batch {size}, shuffle, num_workers=0"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[Target("ladle", "torch", 2.0), ladle_torch_target()],
    )


def _worker_options(setup: Setup) -> dict[str, Any]:
    """The loader arguments of the worker scenarios, the same for ladle and torch."""
    return {"num_workers": WORKERS, "persistent_workers": setup.persistent_workers}


def _epochs_note(setup: Setup) -> str:
    if setup.persistent_workers:
        return "persistent_workers=True (both)"
    return "workers re-created every epoch (both)"


def _worker_scenario(
    setup: Setup,
    name: str,
    description: str,
    ladle_dataset: Any,
    torch_class: str,
    torch_args: tuple[Any, ...],
    batch_size: int,
    targets: list[Target],
    limit_dataset: Any = None,
    threads: bool = False,
    same_work: bool = True,
) -> Scenario:
    """ladle and torch, each with ``WORKERS`` default (fork) process workers, shuffling, plus
    the serial loop (over ``limit_dataset``, default ``ladle_dataset``) scaled by the cores.
    ``threads`` adds ladle with thread workers, for work that releases the GIL. ``same_work``
    False: the torch dataset does other work than ladle's (torch ops against ladle's fused
    pieces), so ladle.torch's target runs over ladle's dataset, and over torch's as well."""
    limit_dataset = ladle_dataset if limit_dataset is None else limit_dataset
    options = _worker_options(setup)
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(ladle_dataset, batch_size=batch_size, shuffle=True, **options),
            f"ladle.Dataset subclass, {WORKERS} process workers (fork), NumPy batches in shared "
            f"memory",
        )
    ]
    if threads:
        contenders.append(
            Contender(
                "ladle, threads",
                "ladle",
                lambda: ladle.DataLoader(
                    ladle_dataset,
                    batch_size=batch_size,
                    shuffle=True,
                    worker_type="thread",
                    **options,
                ),
                f"the same, {WORKERS} thread workers (decoding and resizing release the GIL)",
            )
        )
    if setup.torch is not None:
        import torch_datasets

        import ladle.torch as lt

        torch_dataset = getattr(torch_datasets, torch_class)(*torch_args)
        tud = setup.torch.utils.data
        if not same_work:  # like with like for the 5% bound: ladle's dataset, tensors out
            contenders.append(
                Contender(
                    "ladle.torch",
                    "ladle",
                    lambda: lt.DataLoader(
                        ladle_dataset, batch_size=batch_size, shuffle=True, **options
                    ),
                    f"ladle.torch.DataLoader over the ladle contender's dataset, {WORKERS} "
                    f"process workers (fork), tensor batches",
                )
            )
        contenders += [
            Contender(
                "ladle.torch" if same_work else "ladle.torch, torch's dataset",
                "ladle",
                lambda: lt.DataLoader(
                    torch_dataset, batch_size=batch_size, shuffle=True, **options
                ),
                f"ladle.torch.DataLoader over torch's Dataset subclass, {WORKERS} process workers "
                f"(fork), tensor batches",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(
                    torch_dataset, batch_size=batch_size, shuffle=True, **options
                ),
                f"torch Dataset subclass, same body, {WORKERS} process workers (fork)",
            ),
        ]
    scale = limit_scale(WORKERS)
    contenders.append(
        Contender(
            f"serial x{scale:g} (limit)",
            "limit",
            lambda: GetitemLoop(limit_dataset, batch_size),
            f"the same __getitem__ calls serially, np.array per field, throughput x{scale:g} "
            f"(min of workers and cores)",
            scale=scale,
        )
    )
    return Scenario(
        name=name,
        description=(
            f"{description}, batch {batch_size}, shuffle, num_workers={WORKERS}, "
            f"{_epochs_note(setup)}"
        ),
        samples_per_epoch=len(ladle_dataset),
        batch_size=batch_size,
        contenders=contenders,
        targets=[*targets, ladle_torch_target()],
        num_workers=WORKERS,
        persistent_workers=setup.persistent_workers,
        warmup_batches=4,
    )


def augment(setup: Setup) -> Scenario:
    images, labels = make_images(AUGMENT_IMAGES, AUGMENT_SIZE)
    return _worker_scenario(
        setup,
        "augment",
        f"{AUGMENT_IMAGES:,} x {AUGMENT_SIZE}x{AUGMENT_SIZE}x3 uint8 in memory, per sample "
        f"pad-4 ({AUGMENT_PAD}) + random crop + random flip -> float32 CHW / 255: ladle "
        f"through ladle.transforms and sample_rng(), torch through the same work in NumPy",
        LadleAugment(images, labels, AUGMENT_PAD),
        "TorchAugment",
        (images, labels, AUGMENT_PAD),
        AUGMENT_BATCH,
        [Target("ladle", "torch", 1.7)],
        limit_dataset=LadleAugment(images, labels, AUGMENT_PAD, np.random.default_rng(0)),
    )


def big_samples(setup: Setup) -> Scenario:
    shape = "x".join(map(str, BIG_SHAPE))
    return _worker_scenario(
        setup,
        "big-samples",
        f"{BIG_SAMPLES:,} samples, each a {shape} float32 array made by np.full in "
        f"__getitem__ (transport-bound)",
        LadleBigSamples(BIG_SAMPLES, BIG_SHAPE),
        "TorchBigSamples",
        (BIG_SAMPLES, BIG_SHAPE),
        BIG_BATCH,
        [Target("ladle", "torch", 3.0)],
    )


def jpeg(setup: Setup) -> Scenario:
    _need_pillow()
    blobs = make_jpegs()
    # torch's collate warns once per worker that np.asarray(image) is read-only; the forked
    # workers inherit this filter. The warning says writes would be undefined; none happen.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    labels = np.random.default_rng(3).integers(0, N_CLASSES, size=len(blobs), dtype=np.int64)
    mean_kib = sum(map(len, blobs)) / len(blobs) / 1024
    return _worker_scenario(
        setup,
        "jpeg",
        f"{len(blobs):,} {JPEG_SIZE}x{JPEG_SIZE} RGB JPEGs (q{JPEG_QUALITY}, {mean_kib:.0f} KiB "
        f"each) in memory, per sample Pillow decode + random crop {JPEG_CROP} + np.asarray -> "
        f"HWC uint8",
        LadleJpeg(blobs, labels, JPEG_CROP),
        "TorchJpeg",
        (blobs, labels, JPEG_CROP),
        JPEG_BATCH,
        [Target("ladle", "torch", 1.25)],
    )


def numpy_augment(setup: Setup) -> Scenario:
    """The augment scenario's work as a user writes it in ``__getitem__``, the same body on
    both sides: what ladle's transport and collation win with nothing of ladle's in the body."""
    images, labels = make_images(AUGMENT_IMAGES, AUGMENT_SIZE)
    return _worker_scenario(
        setup,
        "numpy-augment",
        f"{AUGMENT_IMAGES:,} x {AUGMENT_SIZE}x{AUGMENT_SIZE}x3 uint8 in memory; the same "
        f"__getitem__ on both sides: np.random.default_rng(i), pad 4 + random crop + random "
        f"flip -> float32 CHW / 255; batch {NUMPY_AUGMENT_BATCH}",
        LadleSeededAugment(images, labels),
        "TorchSeededAugment",
        (images, labels),
        NUMPY_AUGMENT_BATCH,
        [Target("ladle", "torch", 1.7)],
    )


def imagenet(setup: Setup) -> Scenario:
    """The ImageNet training recipe on photo-sized JPEGs: ladle's pieces against the same
    recipe written the torchvision way."""
    _need_pillow()
    n = IMAGENET_IMAGES_QUICK if setup.quick else IMAGENET_IMAGES
    blobs = make_jpegs(n, IMAGENET_HEIGHT, IMAGENET_QUALITY, seed=4, width=IMAGENET_WIDTH)
    labels = np.random.default_rng(5).integers(0, N_CLASSES, size=len(blobs), dtype=np.int64)
    mean_kib = sum(map(len, blobs)) / len(blobs) / 1024
    return _worker_scenario(
        setup,
        "imagenet",
        f"{len(blobs):,} {IMAGENET_WIDTH}x{IMAGENET_HEIGHT} photo-like JPEGs (q{IMAGENET_QUALITY}, "
        f"{mean_kib:.0f} KiB each) in memory; RandomResizedCrop({JPEG_CROP}) + flip + normalize "
        f"to float32 CHW: ladle's DecodeRandomResizedCrop + NormalizeToCHW, torch the "
        f"torchvision way (PIL decode, crop, resize, ToTensor, Normalize)",
        LadleImageNet(blobs, labels, JPEG_CROP),
        "TorchImageNet",
        (blobs, labels, JPEG_CROP),
        IMAGENET_BATCH,
        [Target("ladle", "torch", 2.5)],
        limit_dataset=LadleImageNet(blobs, labels, JPEG_CROP, np.random.default_rng(0)),
        threads=True,
        same_work=False,
    )


def _say(message: str) -> None:
    import disk

    disk.say(message)


def _need_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise Unavailable("Pillow is not installed: pip install Pillow (make bench does)") from None


def jpeg_files(setup: Setup) -> Scenario:
    """An image folder on disk: torch reads the files (open, decode, crop, as torchvision's
    ImageFolder with RandomCrop), ladle the same bytes from shards through ShardDataset."""
    _need_pillow()
    import disk

    from ladle.formats import ShardDataset
    from ladle.formats.sources import DecodeCrop

    n = disk.JPEG_FILES_QUICK if setup.quick else disk.JPEG_FILES
    files = disk.image_files(n)
    read, seconds = disk.warm_page_cache([*files.paths, *disk.files_under(files.shards)])
    _say(
        f"  page cache warmed: read {read / 2**20:,.0f} MiB (the {n:,} files and the shards) "
        f"in {seconds:.1f} s"
    )
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    size, crop, options = JPEG_FILES_BATCH, JPEG_CROP, _worker_options(setup)
    transform = JpegRecordTransform(crop)
    shards = ShardDataset(files.shards, transform=transform)
    decoded = ShardDataset(files.shards, transform=DecodeCrop(crop))
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(shards, batch_size=size, shuffle=True, **options),
            f"ladle.DataLoader(ShardDataset(shards, transform=decode + crop)), {WORKERS} process "
            f"workers (fork)",
        ),
        Contender(
            "ladle's decode",
            "ladle",
            lambda: ladle.DataLoader(decoded, batch_size=size, shuffle=True, **options),
            f"the same shards with ladle's own decode (libjpeg-turbo through simplejpeg) and "
            f"RandomCrop, {WORKERS} process workers (fork)",
        ),
        Contender(
            "ladle's decode, threads",
            "ladle",
            lambda: ladle.DataLoader(
                decoded, batch_size=size, shuffle=True, worker_type="thread", **options
            ),
            f"the same with {WORKERS} thread workers (the decoder releases the GIL)",
        ),
    ]
    if setup.torch is not None:
        from torch_datasets import TorchJpegFiles

        import ladle.torch as lt

        tud = setup.torch.utils.data
        folder = TorchJpegFiles(files.paths, files.labels, crop)
        contenders += [
            Contender(
                "ladle.torch",
                "ladle",
                lambda: lt.DataLoader(folder, batch_size=size, shuffle=True, **options),
                f"ladle.torch.DataLoader over torch's Dataset of the file paths, {WORKERS} "
                f"process workers (fork)",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(folder, batch_size=size, shuffle=True, **options),
                f"torch Dataset over the file paths: open, decode + crop per sample, "
                f"{WORKERS} process workers (fork)",
            ),
        ]
    scale, batches = limit_scale(WORKERS), JPEG_FILES_LIMIT_BATCHES
    serial = ShardDataset(files.shards, transform=transform)
    contenders.append(
        Contender(
            f"serial x{scale:g} (limit)",
            "limit",
            lambda: GetitemLoop(serial, size, batches=batches),
            f"ladle's __getitem__ (shard record + decode + crop) serially for {batches} batches "
            f"a round, np.array per field, throughput x{scale:g}",
            scale=scale,
            samples_per_epoch=batches * size,
        )
    )
    mean_kib = files.file_bytes / n / 1024
    return Scenario(
        name="jpeg-files",
        description=(
            f"{n:,} {JPEG_SIZE}x{JPEG_SIZE} RGB JPEGs on disk ({mean_kib:.0f} KiB each, "
            f"{files.file_bytes / 2**20:,.0f} MiB, page cache warm), torch from the image "
            f"folder's files, ladle from shards ({files.shard_bytes / 2**20:,.0f} MiB); per "
            f"sample Pillow decode + random crop {crop} + np.asarray -> HWC uint8; batch {size}, "
            f"shuffle, num_workers={WORKERS}, {_epochs_note(setup)}; whole epochs, one a round "
            f"(the limit: {batches} batches a round)"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[
            Target("ladle", "torch", 1.3),
            Target("ladle's decode", "torch", 2.0),
            Target("ladle's decode", "limit", 1.3),
            ladle_torch_target(),
        ],
        num_workers=WORKERS,
        persistent_workers=setup.persistent_workers,
        warmup_batches=4,
        rounds=3,
        epochs_per_round=1,
    )


def disk_data(setup: Setup) -> Scenario:
    """4 GiB of fixed-shape samples on disk, every contender in a fresh child process whose
    whole tree's memory is sampled: one shuffled epoch per child."""
    import disk

    n = disk.DISK_SAMPLES_QUICK if setup.quick else disk.DISK_SAMPLES
    data = disk.array_files(n)
    total = n * data.sample_bytes
    read, seconds = disk.warm_page_cache([data.x, data.y, *disk.files_under(data.shards)])
    _say(
        f"  page cache warmed: read {read / 2**30:,.2f} GiB (x.npy, y.npy and the shards) in "
        f"{seconds:.1f} s"
    )
    size = DISK_BATCH

    def command(kind: str) -> Callable[[Path], list[str]]:
        return disk.child_command(kind, data, size, WORKERS)

    contenders = [
        Contender(
            "ladle",
            "ladle",
            None,
            f"ladle.DataLoader(ShardDataset(shards)): one gather per batch, checksums verified, "
            f"{WORKERS} process workers",
            command=command("ladle"),
        ),
        Contender(
            "ladle verify=False",
            "ladle",
            None,
            "the same without checking each record's crc32 (ShardDataset(shards, verify=False))",
            command=command("ladle-noverify"),
        ),
        Contender(
            "ladle NpyDataset",
            "ladle",
            None,
            f"ladle.DataLoader(NpyDataset([x.npy, y.npy])): one gather per batch from the maps, "
            f"{WORKERS} process workers",
            command=command("ladle-npy"),
        ),
    ]
    if setup.torch is not None:
        contenders.append(
            Contender(
                "ladle.torch",
                "ladle",
                None,
                f"ladle.torch.DataLoader over torch's per-sample Dataset (x[i] of the mapped "
                f".npy), {WORKERS} process workers",
                command=command("ladle.torch"),
            )
        )
        contenders.append(
            Contender(
                "torch",
                "torch",
                None,
                f"torch DataLoader over a per-sample Dataset: x[i] of np.load(x.npy, "
                f"mmap_mode='r'), default_collate, {WORKERS} process workers",
                command=command("torch"),
            )
        )
    shape = "x".join(map(str, disk.DISK_SHAPE))
    return Scenario(
        name="disk",
        description=(
            f"{n:,} x {shape} uint8 (+ int64 label) on disk, {total / 2**30:,.2f} GiB, page "
            f"cache warm; every contender in a fresh child process, one shuffled epoch each, "
            f"batch {size}, num_workers={WORKERS}; memory: the child's whole tree"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[
            Target("ladle", "absolute", DISK_PEAK_MIB, "peak_memory"),
            ladle_torch_target(),
        ],
        num_workers=WORKERS,
        rounds=3,
        epochs_per_round=1,
        isolated=True,
        bytes_per_sample=data.sample_bytes,
    )


def startup(setup: Setup) -> Scenario:
    records = make_records()
    size = STARTUP_BATCH
    options = _worker_options(setup) | {"multiprocessing_context": "spawn"}
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(LadleObjects(records), batch_size=size, **options),
            f"ladle.Dataset subclass, {WORKERS} spawned workers",
        )
    ]
    if setup.torch is not None:
        from torch_datasets import TorchObjects

        import ladle.torch as lt

        tud = setup.torch.utils.data
        contenders += [
            Contender(
                "ladle, torch Dataset",
                "ladle",
                lambda: ladle.DataLoader(TorchObjects(records), batch_size=size, **options),
                "ladle.DataLoader over torch's Dataset subclass: its spawned workers import "
                "torch to unpickle it, as ladle.torch's must",
            ),
            Contender(
                "ladle.torch",
                "ladle",
                lambda: lt.DataLoader(TorchObjects(records), batch_size=size, **options),
                f"ladle.torch.DataLoader over torch's Dataset subclass, {WORKERS} spawned workers",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(TorchObjects(records), batch_size=size, **options),
                f"torch Dataset subclass, same body, {WORKERS} spawned workers",
            ),
        ]
    return Scenario(
        name="startup",
        description=(
            f"{len(records):,} (int, str, float) records (128 MiB of Python objects) in the "
            f"dataset, trivial __getitem__, batch {size}, num_workers={WORKERS}, spawn: time to "
            f"first batch of fresh loaders"
        ),
        samples_per_epoch=len(records),
        batch_size=size,
        contenders=contenders,
        targets=[
            Target("ladle", "torch", 0.5, "first_batch"),
            # like with like: a torch Dataset costs every spawned worker an import of torch
            Target(
                "ladle.torch",
                "ladle",
                LADLE_TORCH_FIRST_BATCH,
                "first_batch",
                against="ladle, torch Dataset",
            ),
        ],
        num_workers=WORKERS,
        throughput=False,
    )


def s3_objects(setup: Setup) -> Scenario:
    """Shards on an S3 API server on 127.0.0.1 (moto, started for the scenario): warm node
    cache vs local disk, cold vs torch with a GET per sample (``benchmarks/s3.py``)."""
    missing = [m for m in ("s3fs", "moto", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        raise Unavailable(
            f"needs {', '.join(missing)}: pip install 'ladle[storage]' 'moto[server]'"
        )
    import s3

    scenario: Scenario = s3.scenario(setup)
    return scenario


SCENARIOS: dict[str, Callable[[Setup], Scenario]] = {
    "in-memory": in_memory,
    "python-dataset": python_dataset,
    "augment": augment,
    "big-samples": big_samples,
    "jpeg": jpeg,
    "numpy-augment": numpy_augment,
    "imagenet": imagenet,
    "startup": startup,
    "jpeg-files": jpeg_files,
    "disk": disk_data,
    "s3": s3_objects,
}
# The scenarios built on shared_data(): once none of them is left to run, the data can go.
USES_SHARED_DATA = frozenset({"in-memory", "python-dataset"})
