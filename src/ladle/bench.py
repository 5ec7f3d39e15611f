"""``ladle bench [PATH]``: ladle against ``torch.utils.data`` on one dataset, side by side.

Each library runs in a fresh child process (``python -m ladle.bench --child``) that builds the
dataset, a loader with the same batch size, workers and shuffle, and times its epochs, while
this process samples the memory of the child's whole process tree (the child and its workers:
proportional anonymous and shared memory, PSS, see :mod:`ladle._runtime.memory`). A fresh
process per library keeps one library's imports, heap and page faults out of the other's
figures: the torch child pays for importing torch, the ladle child does not, as in a program
that uses only one of them.

The torch side is what a torch user has: a per-sample dataset (``dataset[i]``; a
``__getitems__`` is hidden), ``default_collate``, tensors out. The ladle side is
``ladle.DataLoader(dataset, ..., seed=0)``, NumPy out. Libraries run in the order given, so with
data on disk the first one reads it from a colder page cache (ladle, by default).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ladle._runtime.children import stop_child
from ladle._runtime.memory import Measure, MemorySampler, supported, tree_memory
from ladle.interop import require

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

LIBRARIES = ("ladle", "torch")
WORKER_TYPES = ("process", "thread")
DEMO_SAMPLES = 12_000
MIB = 1 << 20
_NOT_WRITABLE = "The given NumPy array is not writable"
_MEASURE_TEXT = {"pss": "Pss_Anon + Pss_Shmem", "rss": "RssAnon + RssShmem"}
_FOOTNOTE = {
    "pss": "peak memory: proportional anonymous and shared memory (Pss_Anon + Pss_Shmem) summed "
    "over each\n  library's own process tree: a page shared by a worker and its parent is split "
    "between them,\n  file pages (the page cache, memory-mapped data) are left out",
    "rss": "peak memory: anonymous and shared memory (RssAnon + RssShmem) summed over each "
    "library's own\n  process tree, pages a forked worker shares with its parent counted once "
    "per process",
}


def _memory_measure() -> Measure | None:
    """PSS where the kernel gives it apart from file pages, else RSS, else None (no /proc)."""
    if supported("pss"):
        return "pss"
    return "rss" if supported("rss") else None


class BenchError(RuntimeError):
    """A library's benchmark run failed in its child process."""


@dataclass(frozen=True)
class Settings:
    """How every library loads the data; validated here, so the children need not."""

    batch_size: int = 64
    num_workers: int = 2
    epochs: int = 1
    shuffle: bool = True
    limit: int | None = None  # batches per epoch; None runs whole epochs
    worker_type: str = "process"

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("num_workers", 0), ("epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, but got {name}={value!r}")
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"limit must be None or an int >= 1, but got limit={limit!r}")
        if limit is not None and limit < 1:
            raise ValueError(
                f"limit is the number of batches per epoch and must be >= 1, but got "
                f"limit={limit}; use limit=None for whole epochs"
            )
        if self.worker_type not in WORKER_TYPES:
            raise ValueError(
                f"worker_type must be one of {WORKER_TYPES}, but got "
                f"worker_type={self.worker_type!r}"
            )


@dataclass(frozen=True)
class Result:
    """One library's run. Memory is the child's tree's PSS (Pss_Anon + Pss_Shmem; RssAnon +
    RssShmem where the kernel gives no PSS), file-backed pages left out."""

    library: str
    version: str
    samples: int
    batches: int
    seconds: float  # from each epoch's iter() to its last batch, summed over epochs
    samples_per_s: float
    first_batch_s: float  # iter() to the first batch of the first epoch, workers' start included
    peak_bytes: int | None  # None where memory cannot be measured (not Linux)
    baseline_bytes: int | None  # the child alone, dataset built, before its loader started
    processes: int  # most processes in the tree at once (0 when not measured)


@dataclass(frozen=True)
class OpenPath:
    """A dataset on disk, opened in each child with ``ladle.formats.open_dataset``."""

    path: str
    crop: int = 224

    def __call__(self) -> Any:
        from ladle.formats import open_dataset  # type: ignore[attr-defined,unused-ignore]

        return open_dataset(self.path, crop=self.crop)


class PerSample:
    """The dataset as a torch user has it: ``dataset[i]`` one sample at a time, no
    ``__getitems__``. torch's DataLoader needs only ``__getitem__`` and ``__len__``, so this
    plain class stands in for a ``torch.utils.data.Dataset`` subclass without importing torch
    in the parent."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def _is_dataset(value: Any) -> bool:
    return hasattr(value, "__getitem__") and hasattr(value, "__len__")


# -- the child: one library, one process -----------------------------------------------------


def _make_loader(library: str, dataset: Any, settings: Settings) -> tuple[Any, str]:
    if library == "ladle":
        import ladle
        from ladle.loader import DataLoader

        loader = DataLoader(
            dataset,
            batch_size=settings.batch_size,
            shuffle=settings.shuffle,
            num_workers=settings.num_workers,
            seed=0,
            worker_type=settings.worker_type,
        )
        return loader, ladle.__version__
    torch = require("torch", "ladle bench --libraries torch")
    # Memory-mapped or decoded-image samples are often read-only arrays; torch's collate warns
    # once per worker that it wraps them without copying. Nothing writes to them here.
    warnings.filterwarnings("ignore", message=_NOT_WRITABLE)
    loader = torch.utils.data.DataLoader(
        PerSample(dataset),
        batch_size=settings.batch_size,
        shuffle=settings.shuffle,
        num_workers=settings.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    return loader, str(torch.__version__)


def measure(library: str, dataset: Any, settings: Settings) -> dict[str, Any]:
    """Time ``settings.epochs`` epochs of ``library``'s loader over ``dataset`` in this process.

    Returns the fields of :class:`Result` that the child knows (not the tree's peak)."""
    if not _is_dataset(dataset):
        raise ValueError(
            f"ladle bench needs a map-style dataset (__getitem__ and __len__), but got "
            f"{type(dataset).__name__}; wrap an iterable in a map-style dataset first"
        )
    size = len(dataset)
    loader, version = _make_loader(library, dataset, settings)  # imports torch, starts nothing
    memory = _memory_measure()
    baseline = None if memory is None else tree_memory(os.getpid(), memory)
    samples = batches = 0
    seconds = 0.0
    first_batch: float | None = None
    for _ in range(settings.epochs):
        started = last = time.perf_counter()
        iterator = iter(loader)
        epoch_batches = 0
        _batch = None
        for _batch in iterator:
            last = time.perf_counter()
            if first_batch is None:
                first_batch = last - started
            epoch_batches += 1
            if epoch_batches == settings.limit:
                break
        del _batch
        close = getattr(iterator, "close", None)  # ladle; torch stops its workers on del
        if close is not None:
            close()
        del iterator
        seconds += last - started
        batches += epoch_batches
        samples += min(epoch_batches * settings.batch_size, size)
    if first_batch is None:
        raise ValueError(f"the dataset yielded no batches (len(dataset)={size}); bench needs data")
    return {
        "library": library,
        "version": version,
        "samples": samples,
        "batches": batches,
        "seconds": seconds,
        "samples_per_s": samples / max(seconds, 1e-9),
        "first_batch_s": first_batch,
        "baseline_bytes": baseline,
        # the child's own last reading: the parent's paced PSS readings may miss its end
        "last_bytes": None if memory is None else tree_memory(os.getpid(), memory),
    }


def _child_main(job_path: str, result_path: str) -> int:
    """Entry of the child: read the job, measure, write the figures (or the error) as JSON."""
    job = json.loads(Path(job_path).read_text())
    sys.path.extend(entry for entry in job["sys_path"] if entry not in sys.path)
    try:
        made = pickle.loads(Path(job["dataset"]).read_bytes())
        dataset = made if _is_dataset(made) else made()
        outcome: dict[str, Any] = {
            "result": measure(job["library"], dataset, Settings(**job["settings"]))
        }
    except Exception as error:
        import traceback

        traceback.print_exc()
        outcome = {"error": f"{type(error).__name__}: {error}"}
    Path(result_path).write_text(json.dumps(outcome))
    return 0 if "result" in outcome else 1


# -- the parent: one child per library -------------------------------------------------------


def _run_child(library: str, dataset_file: Path, settings: Settings) -> Result:
    folder = dataset_file.parent
    job, result_file, log_file = folder / "job.json", folder / "result.json", folder / "log.txt"
    result_file.unlink(missing_ok=True)
    job.write_text(
        json.dumps(
            {
                "library": library,
                "settings": asdict(settings),
                "dataset": str(dataset_file),
                "sys_path": sys.path,
            }
        )
    )
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)  # this very ladle, in the child
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "ladle.bench", "--child", str(job), str(result_file)]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        memory = _memory_measure()
        sampler = None if memory is None else MemorySampler(process.pid, measure=memory).start()
        try:
            process.wait()
        finally:
            if sampler is not None:
                sampler.stop()
            stop_child(process)
    outcome = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "result" not in outcome:
        lines = log_file.read_text(errors="replace").strip().splitlines()
        reason = outcome.get("error") or (lines[-1] if lines else "no output")
        raise BenchError(
            f"the {library} run failed in its child process (exit code {process.returncode}): "
            f"{reason}"
        )
    fields = outcome["result"]
    # the child's readings bound the peak from below too (the sampler's are paced, see
    # MemorySampler); None only where memory is not measured at all
    readings = [fields["baseline_bytes"], fields.pop("last_bytes", None)]
    if sampler is not None:
        readings.append(sampler.peak)
    known = [reading for reading in readings if reading is not None]
    return Result(
        **fields,
        peak_bytes=max(known) if sampler is not None and known else None,
        processes=0 if sampler is None else sampler.max_processes,
    )


def run_bench(
    dataset: Any,
    *,
    batch_size: int = 64,
    num_workers: int = 2,
    epochs: int = 1,
    shuffle: bool = True,
    limit: int | None = None,
    libraries: Sequence[str] = LIBRARIES,
    worker_type: str = "process",
    out: Callable[[str], object] = print,
) -> list[Result]:
    """Run each of ``libraries`` over ``dataset`` in a child process of its own; one
    :class:`Result` each, in order.

    ``dataset`` is a map-style dataset, or a zero-argument callable that returns one (a
    module-level function, class or ``functools.partial``): each child unpickles it, and calls
    it if it is a factory, so a large dataset is better passed as a factory such as
    :class:`OpenPath`. torch is skipped, with a note to ``out``, when it is not installed.
    """
    settings = Settings(batch_size, num_workers, epochs, shuffle, limit, worker_type)
    unknown = [name for name in libraries if name not in LIBRARIES]
    if unknown or not libraries or isinstance(libraries, str):
        raise ValueError(
            f"libraries must be a non-empty sequence of names from {LIBRARIES}, but got "
            f"libraries={libraries!r}"
        )
    if not _is_dataset(dataset) and not callable(dataset):
        raise ValueError(
            f"dataset must be a map-style dataset or a zero-argument callable returning one, "
            f"but got {type(dataset).__name__}"
        )
    try:
        blob = pickle.dumps(dataset)
    except Exception as error:
        raise ValueError(
            f"dataset must be picklable to reach the benchmark's child processes, but pickling "
            f"{type(dataset).__name__} failed ({error}); pass a module-level factory instead"
        ) from error
    results = []
    with tempfile.TemporaryDirectory(prefix="ladle-bench-") as folder:
        dataset_file = Path(folder) / "dataset.pickle"
        dataset_file.write_bytes(blob)
        for library in libraries:
            if library == "torch" and importlib.util.find_spec("torch") is None:
                out("torch is not installed, so its run is skipped; pip install torch to compare")
                continue
            if library == "torch" and worker_type == "thread" and num_workers > 0:
                out("torch has no thread workers: its run uses worker processes")
            results.append(_run_child(library, dataset_file, settings))
    return results


# -- reporting -------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def format_table(results: Sequence[Result]) -> str:
    """An aligned text table: throughput, ratio to torch, first batch, peak tree memory."""
    torch = next((r for r in results if r.library == "torch"), None)
    headers = ("library", "samples/s", "vs torch", "first batch", "peak memory", "+loader")
    rows = [headers]
    for r in results:
        added = (
            "-"
            if r.peak_bytes is None or r.baseline_bytes is None
            else f"+{max(r.peak_bytes - r.baseline_bytes, 0) / MIB:,.0f} MiB"
        )
        ratio = "-" if torch is None else f"{r.samples_per_s / torch.samples_per_s:.2f}x"
        rows.append(
            (
                f"{r.library} {r.version}",
                f"{r.samples_per_s:,.0f}",
                ratio,
                f"{1000 * r.first_batch_s:,.1f} ms",
                _mib(r.peak_bytes) + (f" ({r.processes} procs)" if r.processes > 1 else ""),
                added,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], results: Sequence[Result], **about: Any) -> None:
    """The results, plus whatever describes the run (``about``), as JSON."""
    report = {**about, "results": [asdict(r) for r in results]}
    Path(path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> list[Result]:
    """The results of :func:`write_json`."""
    return [Result(**fields) for fields in json.loads(Path(path).read_text())["results"]]


def write_plot(path: str | os.PathLike[str], results: Sequence[Result], title: str = "") -> None:
    """Bar charts of throughput and peak tree memory, side by side, as a PNG (matplotlib, Agg:
    no display needed, and pyplot's global state is left alone)."""
    require("matplotlib", "ladle bench --plot")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.4), layout="constrained")
    speed, memory = figure.subplots(1, 2)
    names = [r.library for r in results]
    colors = ["#d95f02" if name == "ladle" else "#7570b3" for name in names]
    bars = speed.bar(names, [r.samples_per_s for r in results], color=colors)
    speed.bar_label(bars, fmt="{:,.0f}")
    speed.set_title("throughput: higher is better")
    speed.set_ylabel("samples/s")
    bars = memory.bar(names, [(r.peak_bytes or 0) / MIB for r in results], color=colors)
    memory.bar_label(bars, fmt="{:,.0f}")
    memory.set_title("peak tree memory: lower is better")
    memory.set_ylabel("MiB (" + _MEASURE_TEXT[_memory_measure() or "pss"] + ")")
    for axes in (speed, memory):
        axes.margins(y=0.12)  # room for the labels above the bars
    if title:
        figure.suptitle(title)
    figure.savefig(path, format="png", dpi=100)


# -- the command -----------------------------------------------------------------------------


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
        print(
            _FOOTNOTE.get(_memory_measure() or "pss", "")
            + "; +loader: the rise\n  above the library's process before its loader started"
        )
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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"] and len(sys.argv) == 4:
        from ladle.bench import _child_main  # the importable module, not this __main__ copy

        raise SystemExit(_child_main(sys.argv[2], sys.argv[3]))
    from ladle.cli import main

    raise SystemExit(main(["bench", *sys.argv[1:]]))
