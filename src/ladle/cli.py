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
    doctor = commands.add_parser(
        "doctor",
        help="run your loader briefly under a few settings: what bounds it, the best settings",
        description="Run a loader briefly under a few num_workers, worker_type, "
        "prefetch_factor and batch_size settings, and print which stage bounds throughput, "
        "the best setting measured and the peak memory of each.",
    )
    doctor.add_argument(
        "script",
        nargs="?",
        help="a Python file (or module, module:function) defining make_loader(batch_size=...) "
        "that returns a ladle.DataLoader, or a module-level DataLoader named loader; "
        "none: the built-in digits (--demo)",
    )
    doctor.add_argument("--entry", help="the factory's (or loader's) name in SCRIPT")
    doctor.add_argument("--demo", action="store_true", help="diagnose the built-in digits loader")
    doctor.add_argument(
        "--seconds", type=float, default=1.0, help="measuring time per setting (default 1)"
    )
    doctor.add_argument("--plot", metavar="PNG", help="write throughput and memory plots here")
    doctor.add_argument(
        "--workers", help="the num_workers to try, e.g. 0,2,4 (default: 0, 1, CPUs, 2x CPUs)"
    )
    doctor.add_argument(
        "--batch-sizes", help="the batch sizes to try, e.g. 32,128 (default: half and twice)"
    )
    doctor.add_argument("--quiet", action="store_true", help="no line per setting on stderr")
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
    if args.command == "doctor":
        return _doctor(args)
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


def _integers(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{option} should be integers separated by commas, e.g. 0,2,4, got {text!r}"
        ) from None
    if any(value < 0 for value in values):
        raise ValueError(f"{option} should be 0 or more, got {text!r}")
    return values


def _doctor(args: argparse.Namespace) -> int:
    from ladle.doctor import diagnose
    from ladle.doctor.entry import EntryError, find_entry

    try:
        workers = _integers(args.workers, "--workers")
        sizes = _integers(args.batch_sizes, "--batch-sizes")
        if sizes is not None and 0 in sizes:
            raise ValueError(f"--batch-sizes should be 1 or more, got {args.batch_sizes!r}")
        if args.demo or args.script is None:
            if args.entry is not None:
                raise ValueError("--entry names a function in SCRIPT: give SCRIPT too")
            from ladle.demo import make_loader

            factory, name = make_loader, "the built-in digits (ladle.demo.make_loader), batch 64"
        else:
            factory, name = find_entry(args.script, args.entry), None
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr))
        if progress is not None:
            progress("ladle doctor: measuring, a line per setting")
        report = diagnose(
            factory,
            batch_sizes=sizes,
            num_workers=workers,
            seconds=args.seconds,
            plot=args.plot,
            progress=progress,
            name=name,
        )
    except (EntryError, TypeError, ValueError, ImportError) as error:
        return _error("doctor", error)
    print(report)
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
