"""The parent side of ``ladle bench``: one child process per library, run one after the other,
while this process samples the memory of the child's whole process tree."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ladle.bench.children import stop_child
from ladle.bench.memory import MemorySampler, preferred_measure
from ladle.bench.settings import LIBRARIES, BenchError, Result, Settings, is_dataset

__all__ = ["run_bench"]


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
    package_root = str(Path(__file__).resolve().parents[2])  # this very ladle, in the child
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "ladle.bench", "--child", str(job), str(result_file)]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        memory = preferred_measure()
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
    if not is_dataset(dataset) and not callable(dataset):
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
