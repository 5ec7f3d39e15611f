"""``python -m ladle.bench``: ``ladle bench`` itself, or, as ``--child JOB RESULT``, the child
process in which :func:`ladle.bench.run_bench` runs one library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ladle.bench.child import child_main
from ladle.bench.command import add_arguments, run


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"] and len(argv) == 3:
        return child_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(prog="ladle bench")  # as `ladle bench`'s own parser
    add_arguments(parser)
    return run(parser.parse_args(argv))


raise SystemExit(main(sys.argv[1:]))
