"""The ``ladle`` command."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

    if args.command == "demo":
        from ladle.demo import run_demo

        run_demo(
            epochs=args.epochs, samples=args.samples, batch_size=args.batch_size, seed=args.seed
        )
    if args.command == "bench":
        return bench.run(args)
    return 0
