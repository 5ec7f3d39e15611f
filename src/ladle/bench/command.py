"""The ``ladle bench [PATH]`` command: its options, and the run they ask for."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from ladle.bench.report import footnote, format_table, write_json, write_plot
from ladle.bench.runner import run_bench
from ladle.bench.settings import DEMO_SAMPLES, LIBRARIES, WORKER_TYPES, BenchError, OpenPath
from ladle.interop import require

__all__ = ["add_arguments", "run"]


def _int_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, but got {text!r}")
    return value


_positive = functools.partial(_int_at_least, 1)
_count = functools.partial(_int_at_least, 0)


def _libraries(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in LIBRARIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of {', '.join(LIBRARIES)}, but got {text!r}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ladle bench``."""
    parser.add_argument(
        "path",
        nargs="?",
        help="a shard directory, a .npy file or folder of .npy files, or an image folder; "
        f"default: the demo's {DEMO_SAMPLES:,} built-in digits",
    )
    parser.add_argument("--batch-size", type=_positive, default=64)
    parser.add_argument("--workers", type=_count, default=2, help="num_workers (default 2)")
    parser.add_argument("--epochs", type=_positive, default=1)
    parser.add_argument("--limit", type=_positive, help="batches per epoch (default: all)")
    parser.add_argument("--no-shuffle", action="store_true", help="load in index order")
    parser.add_argument(
        "--libraries", type=_libraries, default=LIBRARIES, help="default: ladle,torch"
    )
    parser.add_argument("--crop", type=_positive, default=224, help="image crop side (PATH)")
    parser.add_argument("--worker-type", choices=WORKER_TYPES, default="process")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="write a bar chart here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")


def _dataset(path: str | None, crop: int) -> tuple[Any, str, int]:
    """What the children load, a description, and its length."""
    if path is None:
        from ladle.demo import Digits

        return functools.partial(Digits, DEMO_SAMPLES), "the demo's built-in digits", DEMO_SAMPLES
    if not Path(path).exists():
        raise FileNotFoundError(
            f"dataset path {path!r} does not exist; pass a shard directory, a .npy file or "
            f"folder, or an image folder (or no PATH for the built-in digits)"
        )
    opened = OpenPath(path, crop)
    return opened, path, len(opened())  # opened here once so that a bad file fails early


def run(args: argparse.Namespace) -> int:
    """Run ``ladle bench`` with parsed ``args``; the exit status (2 for bad input)."""
    try:
        if args.plot is not None:
            require("matplotlib", "ladle bench --plot")
        dataset, description, size = _dataset(args.path, args.crop)
    except (OSError, ValueError, ImportError) as error:
        print(f"ladle bench: error: {error}", file=sys.stderr)
        return 2
    shuffle = "shuffled" if not args.no_shuffle else "in order"
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs > 1 else "")
    limit = "" if args.limit is None else f" of at most {args.limit} batches"
    print(
        f"ladle bench: {description} ({size:,} samples), batch {args.batch_size}, "
        f"{args.workers} {args.worker_type} workers, {epochs}{limit}, {shuffle}"
    )
    try:
        results = run_bench(
            dataset,
            batch_size=args.batch_size,
            num_workers=args.workers,
            epochs=args.epochs,
            shuffle=not args.no_shuffle,
            limit=args.limit,
            libraries=args.libraries,
            worker_type=args.worker_type,
        )
    except ValueError as error:
        print(f"ladle bench: error: {error}", file=sys.stderr)
        return 2
    except BenchError as error:
        print(f"ladle bench: error: {error}", file=sys.stderr)
        return 1
    print(format_table(results))
    if results and results[0].peak_bytes is not None:
        print(footnote())
    if args.json is not None:
        settings = {
            "path": args.path,
            "crop": args.crop,
            "batch_size": args.batch_size,
            "num_workers": args.workers,
            "epochs": args.epochs,
            "limit": args.limit,
            "shuffle": not args.no_shuffle,
            "worker_type": args.worker_type,
        }
        write_json(args.json, results, dataset=description, size=size, settings=settings)
        print(f"wrote {args.json}")
    if args.plot is not None:
        write_plot(args.plot, results, title=f"ladle bench: {description}")
        print(f"wrote {args.plot}")
    return 0
