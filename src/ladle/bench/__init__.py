"""``ladle bench [PATH]``: ladle against ``torch.utils.data`` on one dataset, side by side.

Each library runs in a fresh child process (``python -m ladle.bench --child``) that builds the
dataset, a loader with the same batch size, workers and shuffle, and times its epochs, while
this process samples the memory of the child's whole process tree (the child and its workers:
proportional anonymous and shared memory, PSS, see :mod:`ladle.bench.memory`). A fresh
process per library keeps one library's imports, heap and page faults out of the other's
figures: the torch child pays for importing torch, the ladle child does not, as in a program
that uses only one of them.

The torch side is what a torch user has: a per-sample dataset (``dataset[i]``; a
``__getitems__`` is hidden), ``default_collate``, tensors out. The ladle side is
``ladle.DataLoader(dataset, ..., seed=0)``, NumPy out. Libraries run in the order given, so with
data on disk the first one reads it from a colder page cache (ladle, by default).

The package, one concept a module: :mod:`~ladle.bench.settings` (what a run is),
:mod:`~ladle.bench.child` (one library in its own process), :mod:`~ladle.bench.runner` (the
parent: one child per library), :mod:`~ladle.bench.report` (table, JSON, plot),
:mod:`~ladle.bench.command` (the command's options), and the helpers only benchmarks need:
:mod:`~ladle.bench.memory` (process-tree memory from /proc) and :mod:`~ladle.bench.children`
(stopping a child that runs a loader).
"""

from __future__ import annotations

from ladle.bench.command import add_arguments, run
from ladle.bench.report import format_table, read_json, write_json, write_plot
from ladle.bench.runner import run_bench
from ladle.bench.settings import LIBRARIES, BenchError, OpenPath, Result, Settings

__all__ = [
    "LIBRARIES",
    "BenchError",
    "OpenPath",
    "Result",
    "Settings",
    "add_arguments",
    "format_table",
    "read_json",
    "run",
    "run_bench",
    "write_json",
    "write_plot",
]
