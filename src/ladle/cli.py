"""The ``ladle`` command."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from ladle import bench

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ladle", description="ladle: data loading for training")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train a small classifier on the built-in digits through a DataLoader"
    )
    demo.add_argument("--epochs", type=int, default=5, help="passes over the training set")
    demo.add_argument("--samples", type=int, default=12_000, help="size of the digits dataset")
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0, help="fixes data order and augmentation")
    bench.add_arguments(
        commands.add_parser("bench", help="time ladle against torch.utils.data on a dataset")
    )
    pack = commands.add_parser(
        "pack", help="write an image folder or .npy arrays into checksummed shards"
    )
    pack.add_argument("src", help="an image folder (root/<class>/<image>), a .npy file or folder")
    pack.add_argument(
        "out", help="the shard directory to write: a path, or a URL such as s3://bucket/prefix"
    )
    pack.add_argument("--shard-mb", type=float, default=128, help="MiB of data per shard")
    pack.add_argument("--overwrite", action="store_true", help="replace shards already in OUT")
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.add_argument(
        "--jobs", type=int, default=1, help="processes writing at once (same files for any N)"
    )
    inspect = commands.add_parser(
        "inspect", help="show a shard directory's records, fields and sizes; verify checksums"
    )
    inspect.add_argument(
        "path", help="a shard directory (a path or a URL), its index.json or one shard file"
    )
    inspect.add_argument("--no-verify", action="store_true", help="skip the checksum pass")
    inspect.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from ladle.demo import run_demo

        run_demo(
            epochs=args.epochs, samples=args.samples, batch_size=args.batch_size, seed=args.seed
        )
    if args.command == "bench":
        return bench.run(args)
    if args.command == "pack":
        return _pack(args)
    if args.command == "inspect":
        return _inspect(args)
    return 0


def _error(command: str, error: BaseException) -> int:
    print(f"ladle {command}: error: {error}", file=sys.stderr)  # one line, no traceback
    return 2


def _pack(args: argparse.Namespace) -> int:
    from ladle.errors import WorkerDiedError
    from ladle.formats.reader import ShardDataset
    from ladle.formats.report import format_report
    from ladle.formats.sources import pack

    if not (math.isfinite(args.shard_mb) and args.shard_mb > 0):
        return _error("pack", ValueError(f"--shard-mb should be positive, got {args.shard_mb}"))
    if args.jobs < 1:
        return _error("pack", ValueError(f"--jobs should be 1 or more, got {args.jobs}"))
    try:
        out = pack(
            args.src,
            args.out,
            shard_bytes=max(int(args.shard_mb * 2**20), 1),
            progress=not args.quiet,
            overwrite=args.overwrite,
            jobs=args.jobs,
        )
    except (OSError, ValueError, ImportError, WorkerDiedError) as error:
        return _error("pack", error)
    from ladle.errors import FormatError
    from ladle.formats.storage import is_url

    # from a URL, the report reads the index alone: packing does not download what it wrote
    try:
        print(format_report(ShardDataset(out, verify=False), fields=not is_url(str(out))))
    except (OSError, FormatError) as error:  # e.g. no cache_dir to read it through
        print(f"ladle pack: wrote {out}, but reading it back failed: {error}", file=sys.stderr)
        return 2
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ladle.errors import FormatError
    from ladle.formats.progress import Progress
    from ladle.formats.reader import ShardDataset
    from ladle.formats.report import format_report, verify_all

    try:
        dataset = ShardDataset(args.path)
        # the report maps every shard (from a URL: downloads and checks each in full), so a
        # truncated or replaced file fails here, before the checksum pass
        print(format_report(dataset))
        if args.no_verify:
            return 0
        with Progress(len(dataset), "verifying", enabled=not args.quiet) as bar:
            checked, damaged, errors = verify_all(dataset, bar.update)
    except (OSError, FormatError, ImportError) as error:
        return _error("inspect", error)
    if not damaged:
        print(f"checksums {checked:,} records OK")
        return 0
    shown = f", the first {len(errors)}" if len(errors) < damaged else ""
    print(f"checksums FAILED: {damaged:,} of {checked:,} records damaged{shown}:")
    for failure in errors:
        print(f"  {failure}")
    return 1
