"""The decoded-sample cache on the jpeg-files workload: epoch 1 (decode and store) against the
epochs after it (read from shared memory), 2 process workers.

    PYTHONPATH=src .venv/bin/python benchmarks/sample_cache.py [--n 20000] [--epochs 3]
        [--persistent-workers]

The images are disk.py's jpeg-files folder (``n`` photo-like 256x256 JPEGs, written once under
benchmarks/results/). The dataset under the cache decodes a file to HWC uint8 with Pillow
(open, convert to RGB when needed, ``np.asarray``); on top of the cache, a random 224 crop is
drawn from ``ladle.sample_rng()``; ladle's DataLoader batches 64 with 2 workers, shuffled and
seeded. ``--epochs`` epochs with the cache, each line its samples/s and the ratio to the first
(which also pays for the first workers' imports: the ratio errs low), then one epoch without
the cache, for reference.
The files are read once before timing, so that the page cache holds them in every run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ladle

CROP, BATCH, WORKERS = 224, 64, 2


class DecodedFiles(ladle.Dataset[tuple[np.ndarray, int]]):
    """JPEG files decoded whole to HWC uint8: the deterministic part, worth caching."""

    def __init__(self, paths: list[str], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb), self.labels[i]


class RandomCrop(ladle.Dataset[tuple[np.ndarray, int]]):
    """The augmentation on top of the cache: a window drawn from ``sample_rng()``."""

    def __init__(self, base: Any, size: int) -> None:
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image, label = self.base[i]
        top, left = ladle.sample_rng().integers(0, image.shape[0] - self.size + 1, 2)
        return image[top : top + self.size, left : left + self.size], label


def epoch(loader: ladle.DataLoader[Any]) -> float:
    """Samples per second of one pass."""
    started, samples = time.perf_counter(), 0
    for images, _ in loader:
        samples += len(images)
    return samples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--persistent-workers", action="store_true")
    args = parser.parse_args()

    import disk

    files = disk.image_files(args.n)
    disk.warm_page_cache(files.paths)
    decoded = DecodedFiles(files.paths, files.labels)
    options: dict[str, Any] = {
        "batch_size": BATCH,
        "shuffle": True,
        "seed": 0,
        "num_workers": WORKERS,
        "persistent_workers": args.persistent_workers,
    }
    print(f"{args.n:,} JPEGs, {WORKERS} workers, batch {BATCH}, crop {CROP}")
    image_bytes = 256 * 256 * 3 + 1024  # a record: the pixels and its pickle, aligned
    with ladle.cache(decoded, max_bytes=args.n * image_bytes) as cached:
        loader = ladle.DataLoader(RandomCrop(cached, CROP), **options)
        first = 0.0
        for e in range(1, args.epochs + 1):
            rate = epoch(loader)
            first = first or rate
            print(
                f"  cached, epoch {e}  {rate:8.0f} samples/s  {rate / first:5.2f}x epoch 1  "
                f"({cached.stored:,} stored, {cached.used_bytes / 2**20:,.0f} MiB)"
            )
        loader.close()
    plain = ladle.DataLoader(RandomCrop(decoded, CROP), **options)
    print(f"  uncached          {epoch(plain):8.0f} samples/s")
    plain.close()


if __name__ == "__main__":
    main()
