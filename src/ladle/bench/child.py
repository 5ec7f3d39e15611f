"""The child side of ``ladle bench``: one library, one process (``python -m ladle.bench
--child JOB RESULT``), timing its loader's epochs over the dataset it unpickles."""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from ladle.bench.memory import preferred_measure, tree_memory
from ladle.bench.settings import Settings, is_dataset
from ladle.interop import require

__all__ = ["PerSample", "child_main", "measure"]

_NOT_WRITABLE = "The given NumPy array is not writable"


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
    if not is_dataset(dataset):
        raise ValueError(
            f"ladle bench needs a map-style dataset (__getitem__ and __len__), but got "
            f"{type(dataset).__name__}; wrap an iterable in a map-style dataset first"
        )
    size = len(dataset)
    loader, version = _make_loader(library, dataset, settings)  # imports torch, starts nothing
    memory = preferred_measure()
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


def child_main(job_path: str, result_path: str) -> int:
    """Entry of the child: read the job, measure, write the figures (or the error) as JSON."""
    job = json.loads(Path(job_path).read_text())
    sys.path.extend(entry for entry in job["sys_path"] if entry not in sys.path)
    try:
        made = pickle.loads(Path(job["dataset"]).read_bytes())
        dataset = made if is_dataset(made) else made()
        outcome: dict[str, Any] = {
            "result": measure(job["library"], dataset, Settings(**job["settings"]))
        }
    except Exception as error:
        import traceback

        traceback.print_exc()
        outcome = {"error": f"{type(error).__name__}: {error}"}
    Path(result_path).write_text(json.dumps(outcome))
    return 0 if "result" in outcome else 1
