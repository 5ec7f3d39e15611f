"""Data on disk for the ``jpeg-files`` and ``disk`` scenarios, and the ``disk`` scenario's runs.

    .venv/bin/python benchmarks/disk.py prepare [--quick]   # write (or check) the cached data

Both data sets are written once under ``benchmarks/results/`` (git-ignored) and reused while a
manifest, written last, still matches the files on disk:

``jpeg-files-<n>/``
    ``images/class_<k>/img_<i>.jpg``: ``n`` photo-like RGB JPEGs (smooth colour fields, a few
    flat shapes, 1/f texture and grain, quality 90, 15-30 KiB each), 10 classes (``i % 10``);
    ``shards/``: the same files' bytes and labels as ``(jpeg_bytes, label)`` samples, packed by
    ``ladle.formats.write_shards`` in the folder's listing order (torchvision's: classes sorted,
    files sorted).
``disk-<n>/``
    ``x.npy`` (``n`` x 2 x 256 x 256 uint8: 128 KiB a sample, 4 GiB for n = 32,768), ``y.npy``
    (int64 labels), and ``shards/``: the same samples as ``(x[i], y[i])`` written by
    ``write_shards``.

The ``disk`` scenario runs every contender in a child process of its own (``disk.py child KIND
DATA OUT``), one shuffled epoch each, so that the parent can sample the memory of that child's
whole tree and nothing else: not the parent's torch import, nor another contender's leftovers.
The child imports only what its library needs: a ladle child never imports torch, a torch
child never imports ladle; a ``ladle.torch`` child (torch's Dataset on ladle's engine) imports
both.

Only the standard library and NumPy are imported at module level (Pillow, ladle and torch
where used), since ``run.py`` imports this module in every scenario's process.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(__file__).resolve().parent / "results"  # git-ignored

JPEG_FILES, JPEG_FILES_QUICK = 20_000, 2_000
JPEG_CLASSES, JPEG_SIZE, JPEG_QUALITY, JPEG_SEED = 10, 256, 90, 5
DISK_SAMPLES, DISK_SAMPLES_QUICK = 32_768, 4_096
DISK_SHAPE, DISK_SEED = (2, 256, 256), 6  # uint8: 128 KiB a sample
_FORMAT = 1  # bump to rewrite the caches when the way they are made changes
_TILE = 384  # side of the precomputed texture tiles the JPEGs crop from


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB" if size < 2**30 else f"{size / 2**30:,.2f} GiB"


# -- photo-like JPEGs ------------------------------------------------------------------------


@functools.cache
def _textures(seed: int, count: int = 8) -> np.ndarray:
    """``count`` tiles of 1/f-like texture plus grain (coarse octaves strong, fine ones weak, as
    in natural images), made once per process; each image crops one at a random offset."""
    from PIL import Image

    rng = np.random.default_rng([seed, 1 << 30])
    tiles = np.zeros((count, _TILE, _TILE, 3), np.float32)
    for tile in tiles:
        for cells, amplitude in ((24, 45.0), (72, 27.0), (192, 16.0)):
            grid = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
            up = grid.resize((_TILE, _TILE), Image.Resampling.BICUBIC)
            tile += (np.asarray(up, dtype=np.float32) - 128.0) * np.float32(amplitude / 128.0)
        tile += rng.standard_normal((_TILE, _TILE, 3), dtype=np.float32) * np.float32(3.0)
    return tiles


def photo_jpeg(seed: int, index: int, size: int = JPEG_SIZE, quality: int = JPEG_QUALITY) -> bytes:
    """Image ``index`` of the set ``seed``, JPEG-encoded: a vertical colour gradient blended
    with a smooth colour field, 5 to 12 flat ellipses, rectangles and triangles, softened by a
    1-pixel box blur, then texture of a random strength. Deterministic in (seed, index)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([seed, index])
    top, bottom = rng.integers(0, 256, (2, 3))
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    field = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    field = field.resize((size, size), Image.Resampling.BICUBIC)
    base = 0.6 * (top * (1 - t) + bottom * t) + 0.4 * np.asarray(field, dtype=np.float32)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(5, 13))):
        x0, y0 = (int(v) for v in rng.integers(-size // 4, size, 2))
        width, height = (int(v) for v in rng.integers(size // 16, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x0 + width, y0 + height), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + width, y0 + height), fill=colour)
        else:
            corners = [(int(a), int(b)) for a, b in rng.integers(0, size, (3, 2))]
            draw.polygon(corners, fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.BoxBlur(1)), dtype=np.float32)
    tile = int(rng.integers(0, 8))
    dy, dx = (int(v) for v in rng.integers(0, _TILE - size, 2))
    texture = _textures(seed)[tile, dy : dy + size, dx : dx + size]
    pixels += texture * np.float32(rng.uniform(0.45, 1.8))
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _image_path(root: Path, index: int) -> Path:
    return root / f"class_{index % JPEG_CLASSES}" / f"img_{index:05d}.jpg"


def _write_images(root: str, start: int, stop: int) -> list[int]:
    """Encode and write images ``start`` to ``stop``; their sizes (runs in a pool worker)."""
    sizes = []
    for index in range(start, stop):
        blob = photo_jpeg(JPEG_SEED, index)
        _image_path(Path(root), index).write_bytes(blob)
        sizes.append(len(blob))
    return sizes


@dataclass(frozen=True)
class ImageFiles:
    """The image folder and its shards: ``paths`` and ``labels`` in the folder's listing order
    (the order of the shards' samples too)."""

    root: Path
    shards: Path
    paths: list[str]
    labels: list[int]
    file_bytes: int
    shard_bytes: int


def list_folder(root: Path) -> tuple[list[str], list[int]]:
    """(paths, labels) of an image folder as torchvision's ImageFolder lists it: classes (the
    subdirectories) sorted, files sorted within each."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        names = sorted(entry.name for entry in os.scandir(root / name) if entry.is_file())
        paths += [str(root / name / file) for file in names]
        labels += [label] * len(names)
    return paths, labels


class _FolderSamples:
    """The image folder as ``(jpeg_bytes, label)`` samples, for write_shards."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int]) -> None:
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        return Path(self.paths[i]).read_bytes(), self.labels[i]


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) and loaded.get("format") == _FORMAT else None


def _shard_bytes(shards: Path, records: int) -> int | None:
    """The shards' total size if they open as ``records`` samples (ShardDataset checks every
    file's size and header against the index), else None."""
    from ladle.formats import ShardDataset

    try:
        dataset = ShardDataset(shards, verify=False)
    except (OSError, ValueError):
        return None
    if len(dataset) != records:
        return None
    return sum(path.stat().st_size for path in dataset.shard_files)


def _write_shards(dataset: Any, shards: Path, metadata: dict[str, Any]) -> None:
    from ladle.formats import write_shards

    write_shards(dataset, shards, metadata=metadata, progress=True, overwrite=True)


def image_files(n: int, workers: int = 2) -> ImageFiles:
    """The ``n`` JPEGs as an image folder and as shards, written once and then reused."""
    base = CACHE / f"jpeg-files-{n}"
    root, shards, manifest_path = base / "images", base / "shards", base / "manifest.json"
    manifest = _manifest(manifest_path)
    if manifest is not None and manifest.get("n") == n:
        paths, labels = list_folder(root) if root.is_dir() else ([], [])
        sizes = manifest["sizes"]
        on_disk = [os.stat(path).st_size for path in paths]
        shard_size = _shard_bytes(shards, n)
        if on_disk == [sizes.get(Path(p).stem) for p in paths] and shard_size is not None:
            return ImageFiles(root, shards, paths, labels, sum(on_disk), shard_size)
        say(f"  {base}: the cached files do not match their manifest; writing them again")
    shutil.rmtree(base, ignore_errors=True)
    for k in range(JPEG_CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    say(f"  writing {n:,} JPEGs ({JPEG_SIZE}x{JPEG_SIZE}, q{JPEG_QUALITY}) to {root}, once")
    started = time.perf_counter()
    chunk = 500
    spans = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    # spawn, not fork: this process may hold torch's threads
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_write_images, str(root), a, b) for a, b in spans]
        all_sizes: list[int] = []
        for done, future in enumerate(futures, start=1):
            all_sizes += future.result()
            if done % 8 == 0 or done == len(futures):
                say(f"    {len(all_sizes):,}/{n:,} images, {time.perf_counter() - started:.0f} s")
    paths, labels = list_folder(root)
    say(f"  packing them into shards in {shards}")
    _write_shards(_FolderSamples(paths, labels), shards, {"source": "jpeg-files", "n": n})
    sizes = {f"img_{i:05d}": size for i, size in enumerate(all_sizes)}
    partial = manifest_path.with_suffix(".partial")
    partial.write_text(json.dumps({"format": _FORMAT, "n": n, "sizes": sizes}))
    os.replace(partial, manifest_path)
    say(f"  wrote {n:,} JPEGs and their shards in {time.perf_counter() - started:.0f} s")
    shard_size = _shard_bytes(shards, n)
    assert shard_size is not None
    return ImageFiles(root, shards, paths, labels, sum(all_sizes), shard_size)


# -- fixed-shape arrays, 4 GiB ---------------------------------------------------------------


@dataclass(frozen=True)
class ArrayFiles:
    """The ``disk`` data: ``x.npy`` and ``y.npy``, and the same samples as shards."""

    x: Path
    y: Path
    shards: Path
    n: int
    sample_bytes: int
    shard_bytes: int


class _NpyRows:
    """``(x[i], y[i])`` of the memory-mapped .npy files, for write_shards."""

    def __init__(self, x: Path, y: Path) -> None:
        self.x = np.load(x, mmap_mode="r")
        self.y = np.load(y, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.x[i]), int(self.y[i])


def _npy_ok(path: Path, shape: tuple[int, ...], dtype: str) -> bool:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return bool(array.shape == shape and array.dtype == np.dtype(dtype))


def array_files(n: int) -> ArrayFiles:
    """``n`` samples of DISK_SHAPE uint8 as .npy and as shards, written once and reused."""
    base = CACHE / f"disk-{n}"
    x, y, shards = base / "x.npy", base / "y.npy", base / "shards"
    manifest_path = base / "manifest.json"
    shape = (n, *DISK_SHAPE)
    sample_bytes = int(np.prod(DISK_SHAPE))
    manifest = _manifest(manifest_path)
    if manifest is not None and manifest.get("shape") == list(shape):
        shard_size = _shard_bytes(shards, n)
        if _npy_ok(x, shape, "|u1") and _npy_ok(y, (n,), "<i8") and shard_size is not None:
            return ArrayFiles(x, y, shards, n, sample_bytes, shard_size)
        say(f"  {base}: the cached files do not match their manifest; writing them again")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    total = n * sample_bytes
    say(f"  writing {n:,} samples of {DISK_SHAPE} uint8 ({_mib(total)}) to {x}, once")
    started = time.perf_counter()
    rng = np.random.default_rng(DISK_SEED)
    np.save(y, rng.integers(0, 1000, n, dtype=np.int64))
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    with open(x, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        chunk = 256  # 32 MiB
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            out.write(rng.integers(0, 256, (rows, *DISK_SHAPE), dtype=np.uint8).tobytes())
            if (start // chunk) % 32 == 31:
                say(f"    {_mib((start + rows) * sample_bytes)} of {_mib(total)}")
    say(f"  wrote {x} in {time.perf_counter() - started:.0f} s; packing it into shards in {shards}")
    started = time.perf_counter()
    _write_shards(_NpyRows(x, y), shards, {"source": "disk", "n": n})
    say(f"  wrote the shards in {time.perf_counter() - started:.0f} s")
    partial = manifest_path.with_suffix(".partial")
    partial.write_text(json.dumps({"format": _FORMAT, "shape": list(shape)}))
    os.replace(partial, manifest_path)
    shard_size = _shard_bytes(shards, n)
    assert shard_size is not None
    return ArrayFiles(x, y, shards, n, sample_bytes, shard_size)


def warm_page_cache(paths: Sequence[str | os.PathLike[str]]) -> tuple[int, float]:
    """Read every file once (plain reads, no mapping) so that each contender finds the same
    data in the page cache; (bytes read, seconds)."""
    started = time.perf_counter()
    total = 0
    buffer = bytearray(8 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            while read := file.readinto(buffer):
                total += read
    return total, time.perf_counter() - started


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


# -- the disk scenario's child runs ----------------------------------------------------------

# The contenders: the library each needs and how it reads the data.
KINDS = ("ladle", "ladle-npy", "ladle-noverify", "ladle.torch", "torch")


def _own_pss() -> int | None:
    """This process's Pss_Anon + Pss_Shmem, in bytes (stdlib only: a torch child must not
    import ladle for it); None where smaps_rollup lacks them."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as file:
            blob = file.read()
    except OSError:
        return None
    fields = {}
    for line in blob.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1]) * 1024
    if b"Pss_Anon:" not in fields:
        return None
    return fields[b"Pss_Anon:"] + fields.get(b"Pss_Shmem:", 0)


def _loader(
    kind: str, data: ArrayFiles, batch_size: int, workers: int
) -> tuple[Callable[[], Any], str]:
    """(a factory of contender ``kind``'s loader, library version); imports the library."""
    if kind == "torch":
        import torch
        from torch_datasets import TorchMappedRows

        # the rows are read-only views of the map; collate copies them into the batch
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

        def torch_loader() -> Any:
            dataset = TorchMappedRows(str(data.x), str(data.y))
            return torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=True, num_workers=workers
            )

        return torch_loader, str(torch.__version__)
    if kind == "ladle.torch":  # torch's Dataset and API on ladle's engine: imports both
        import torch_datasets

        import ladle
        import ladle.torch

        def ladle_torch_loader() -> Any:
            dataset = torch_datasets.TorchMappedRows(str(data.x), str(data.y))
            return ladle.torch.DataLoader(
                dataset, batch_size=batch_size, shuffle=True, num_workers=workers
            )

        return ladle_torch_loader, ladle.__version__
    import ladle
    from ladle.formats import ShardDataset
    from ladle.formats.npy import NpyDataset

    made: Callable[[], Any] = {
        "ladle": lambda: ShardDataset(data.shards),
        "ladle-noverify": lambda: ShardDataset(data.shards, verify=False),
        "ladle-npy": lambda: NpyDataset([data.x, data.y]),
    }[kind]

    def ladle_loader() -> Any:
        return ladle.DataLoader(made(), batch_size=batch_size, shuffle=True, num_workers=workers)

    return ladle_loader, ladle.__version__


def child(kind: str, data: ArrayFiles, out: Path, batch_size: int, workers: int) -> None:
    """One shuffled epoch of contender ``kind``, timed from building the dataset and loader
    (the library already imported; the workers start inside) to the last batch; the figures
    go to ``out`` as JSON, with this process's own PSS just before the loader was built."""
    make, version = _loader(kind, data, batch_size, workers)
    baseline = _own_pss()
    started = time.perf_counter()
    loader = make()
    first: float | None = None
    samples = 0
    for batch in loader:
        samples += batch[0].shape[0]
        if first is None:
            first = time.perf_counter() - started
    seconds = time.perf_counter() - started
    close = getattr(loader, "close", None)
    if callable(close):
        close()
    del loader
    out.write_text(
        json.dumps(
            {
                "kind": kind,
                "version": version,
                "samples": samples,
                "seconds": seconds,
                "first_batch_s": first,
                "baseline_bytes": baseline,
            }
        )
    )


def child_command(
    kind: str, data: ArrayFiles, batch_size: int, workers: int
) -> Callable[[Path], list[str]]:
    """The command line of one child run of ``kind``, given where it writes its figures."""

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            "child",
            kind,
            str(data.x.parent),
            str(out),
            "--batch-size",
            str(batch_size),
            "--workers",
            str(workers),
        ]

    return command


def _open_arrays(base: Path) -> ArrayFiles:
    """The ArrayFiles of a directory array_files wrote (the child trusts its parent's check)."""
    x = base / "x.npy"
    rows = np.load(x, mmap_mode="r")
    return ArrayFiles(x, base / "y.npy", base / "shards", len(rows), rows[0].nbytes, 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="write (or check) the cached data")
    prepare.add_argument("--quick", action="store_true", help="the smaller --quick data sets")
    run = commands.add_parser("child", help="one epoch of one contender (run.py starts these)")
    run.add_argument("kind", choices=KINDS)
    run.add_argument("data", type=Path)
    run.add_argument("out", type=Path)
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "child":
        child(args.kind, _open_arrays(args.data), args.out, args.batch_size, args.workers)
        return 0
    images = image_files(JPEG_FILES_QUICK if args.quick else JPEG_FILES)
    say(f"jpeg-files: {len(images.paths):,} files, {_mib(images.file_bytes)}, in {images.root}")
    arrays = array_files(DISK_SAMPLES_QUICK if args.quick else DISK_SAMPLES)
    say(f"disk: {arrays.n:,} samples, {_mib(arrays.n * arrays.sample_bytes)}, in {arrays.x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
