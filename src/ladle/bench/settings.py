"""What a ``ladle bench`` run is: the libraries it compares, the settings every library loads
with, one library's result, and the dataset each child process opens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEMO_SAMPLES",
    "LIBRARIES",
    "MIB",
    "WORKER_TYPES",
    "BenchError",
    "OpenPath",
    "Result",
    "Settings",
    "is_dataset",
]

LIBRARIES = ("ladle", "torch")
WORKER_TYPES = ("process", "thread")
DEMO_SAMPLES = 12_000
MIB = 1 << 20


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


def is_dataset(value: Any) -> bool:
    """Whether ``value`` is a map-style dataset (``__getitem__`` and ``__len__``)."""
    return hasattr(value, "__getitem__") and hasattr(value, "__len__")
