"""What the benchmark measures: the data, the contenders of each scenario, and their targets.

A contender is a factory for a fresh loader (anything iterable once per epoch, yielding batches
whose first element is the batch's sample array). The harness in ``run.py`` decides how to time
them; nothing here knows about clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

import ladle

N_SAMPLES = 60_000
N_FEATURES = 784
N_CLASSES = 10
BATCH_SIZE = 256

Role = Literal["ladle", "torch", "limit"]


@dataclass(frozen=True)
class Contender:
    """One way of producing the scenario's batches.

    ``make`` builds a fresh loader; iterating the loader once is one epoch. ``role`` says what the
    contender is compared as: ladle, the torch reference, or the physical limit.
    """

    name: str
    role: Role
    make: Callable[[], Iterable[Any]]
    note: str = ""


@dataclass(frozen=True)
class Target:
    """``contender``'s throughput over the reference's must be at least ``minimum``.

    ``reference`` is a role: ``"torch"`` means the fastest torch contender of the scenario,
    ``"limit"`` the physical-limit contender.
    """

    contender: str
    reference: Literal["torch", "limit"]
    minimum: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    samples_per_epoch: int
    batch_size: int
    contenders: list[Contender]
    targets: list[Target] = field(default_factory=list)


@dataclass(frozen=True)
class Data:
    """The shared in-memory data: features ``x`` (float32) and labels ``y`` (int64)."""

    x: np.ndarray
    y: np.ndarray


def make_data(n: int = N_SAMPLES, features: int = N_FEATURES, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, features), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, size=n, dtype=np.int64)
    return Data(x, y)


def load_torch() -> ModuleType | None:
    """torch, or None when it is not installed (the torch contenders are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class NumpyGather:
    """The physical limit of the in-memory case: one NumPy gather per array per batch.

    Each epoch draws one permutation and slices it into batches, as a shuffling loader must.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y, size = self.x, self.y, self.batch_size
        perm = self.rng.permutation(len(x))
        for start in range(0, len(perm), size):
            idx = perm[start : start + size]
            yield x[idx], y[idx]


class GetitemLoop:
    """The floor of the Python-dataset case: the same ``__getitem__`` calls, serially, then one
    ``np.array`` per field (the fastest NumPy stack of a list of small arrays)."""

    def __init__(self, dataset: Any, batch_size: int, seed: int = 0) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        getitem, size = self.dataset.__getitem__, self.batch_size
        perm = self.rng.permutation(len(self.dataset))
        for start in range(0, len(perm), size):
            xs, ys = zip(*[getitem(i) for i in perm[start : start + size].tolist()], strict=True)
            yield np.array(xs), np.array(ys)


class RowsBody:
    """The body of the plain Python dataset, shared verbatim by its ladle and torch classes."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.x[i], int(self.y[i])


class LadleRows(RowsBody, ladle.Dataset[tuple[Any, int]]):
    """The plain Python dataset as a ladle.Dataset."""


def torch_rows_class(torch: ModuleType) -> type:
    """The plain Python dataset as a torch Dataset, made on demand (torch is optional)."""

    class TorchRows(RowsBody, torch.utils.data.Dataset):  # type: ignore[misc, name-defined]
        """The plain Python dataset as a torch.utils.data.Dataset."""

    return TorchRows


def in_memory(data: Data, torch: ModuleType | None) -> Scenario:
    x, y = data.x, data.y
    n, size = len(x), BATCH_SIZE
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(ladle.TensorDataset(x, y), batch_size=size, shuffle=True),
            "ladle.TensorDataset(x, y) on NumPy arrays; NumPy batches",
        ),
    ]
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tud = torch.utils.data
        contenders += [
            Contender(
                "ladle output='torch'",
                "ladle",
                lambda: ladle.DataLoader(
                    ladle.TensorDataset(x, y), batch_size=size, shuffle=True, output="torch"
                ),
                "same, batches handed over as torch tensors (zero-copy)",
            ),
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(tud.TensorDataset(tx, ty), batch_size=size, shuffle=True),
                "torch.utils.data.TensorDataset on tensors sharing the same memory",
            ),
        ]
    contenders.append(
        Contender(
            "numpy gather (limit)",
            "limit",
            lambda: NumpyGather(x, y, size),
            "rng.permutation(n) per epoch, then x[idx], y[idx] per batch",
        )
    )
    return Scenario(
        name="in-memory",
        description=(
            f"TensorDataset of {n:,} x {x.shape[1]} float32 + int64 labels, "
            f"batch {size}, shuffle, num_workers=0"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[Target("ladle", "torch", 6.0), Target("ladle", "limit", 0.70)],
    )


def python_dataset(data: Data, torch: ModuleType | None) -> Scenario:
    x, y = data.x, data.y
    n, size = len(x), BATCH_SIZE
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: ladle.DataLoader(LadleRows(x, y), batch_size=size, shuffle=True),
            "ladle.Dataset subclass over NumPy arrays",
        )
    ]
    if torch is not None:
        rows = torch_rows_class(torch)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tud = torch.utils.data
        contenders += [
            Contender(
                "torch",
                "torch",
                lambda: tud.DataLoader(rows(x, y), batch_size=size, shuffle=True),
                "torch Dataset subclass, same body, same NumPy arrays",
            ),
            Contender(
                "torch, tensor data",
                "torch",
                lambda: tud.DataLoader(rows(tx, ty), batch_size=size, shuffle=True),
                "same body over torch tensors (x[i] is a tensor row)",
            ),
        ]
    contenders.append(
        Contender(
            "getitem loop (limit)",
            "limit",
            lambda: GetitemLoop(LadleRows(x, y), size),
            "the same __getitem__ calls in a list comprehension, then np.array per field",
        )
    )
    return Scenario(
        name="python-dataset",
        description=(
            f"map-style Python Dataset, __getitem__ -> (x[i], int(y[i])), x {n:,} x "
            f"{x.shape[1]} float32, batch {size}, shuffle, num_workers=0"
        ),
        samples_per_epoch=n,
        batch_size=size,
        contenders=contenders,
        targets=[Target("ladle", "torch", 2.0)],
    )


SCENARIOS: dict[str, Callable[[Data, ModuleType | None], Scenario]] = {
    "in-memory": in_memory,
    "python-dataset": python_dataset,
}
