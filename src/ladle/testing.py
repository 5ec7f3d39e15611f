"""Checks for users' own pipelines: does a loader resume exactly where it stopped?

::

    from ladle.testing import assert_resumes

    def make(num_workers=0):
        return ladle.DataLoader(MyDataset(small=True), batch_size=4, shuffle=True, seed=0,
                                num_workers=num_workers)

    assert_resumes(make, resume_with=lambda: make(num_workers=2))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ladle.loader import DataLoader

__all__ = ["assert_batches_equal", "assert_resumes"]


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray | np.generic):
        return np.asarray(value)
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()  # type: ignore[no-any-return]
    if module.startswith("jax") and hasattr(value, "shape"):
        return np.asarray(value)
    return None


def assert_batches_equal(actual: Any, expected: Any, where: str = "batch") -> None:
    """Raise AssertionError unless two batches are bitwise equal: same structure, same array
    types, dtypes and shapes, same bytes (so NaNs compare equal and -0.0 differs from 0.0)."""
    left, right = _as_array(actual), _as_array(expected)
    if left is not None or right is not None:
        if type(actual) is not type(expected):
            raise AssertionError(
                f"{where}: {type(actual).__name__} where {type(expected).__name__} was expected"
            )
        assert left is not None and right is not None
        if left.dtype != right.dtype or left.shape != right.shape:
            raise AssertionError(
                f"{where}: {left.dtype}{list(left.shape)} where "
                f"{right.dtype}{list(right.shape)} was expected"
            )
        if left.dtype.hasobject:
            equal = left.tolist() == right.tolist()
        else:
            equal = np.ascontiguousarray(left).tobytes() == np.ascontiguousarray(right).tobytes()
        if not equal:
            raise AssertionError(f"{where}: values differ:\n{left!r}\nexpected\n{right!r}")
        return
    if type(actual) is not type(expected):
        raise AssertionError(
            f"{where}: {type(actual).__name__} where {type(expected).__name__} was expected"
        )
    if isinstance(actual, Mapping):
        if list(actual) != list(expected):
            raise AssertionError(f"{where}: keys {list(actual)} where {list(expected)} expected")
        for key in actual:
            assert_batches_equal(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(actual, list | tuple):
        if len(actual) != len(expected):
            raise AssertionError(f"{where}: {len(actual)} items where {len(expected)} expected")
        for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
            assert_batches_equal(a, b, f"{where}[{i}]")
    elif dataclasses.is_dataclass(actual) and not isinstance(actual, type):
        for item in dataclasses.fields(actual):
            assert_batches_equal(
                getattr(actual, item.name), getattr(expected, item.name), f"{where}.{item.name}"
            )
    elif actual != expected:
        raise AssertionError(f"{where}: {actual!r} where {expected!r} was expected")


def assert_resumes(
    make_loader: Callable[[], DataLoader],
    *,
    epochs: int = 2,
    resume_with: Callable[[], DataLoader] | None = None,
) -> None:
    """Check that the loaders ``make_loader()`` builds resume exactly, at every cut.

    One loader runs ``epochs`` epochs, saving ``state_dict()`` before every batch and after
    every epoch; each state goes through JSON and into a fresh loader from ``resume_with``
    (default ``make_loader``), whose batches, to the end of the last epoch, must equal the
    uninterrupted run's bitwise. ``resume_with`` may differ in ``num_workers`` or
    ``worker_type``, not in what decides the stream. Use a small dataset: every cut builds a
    loader (and, with workers, starts them). Raises AssertionError naming the first cut and
    batch that differ.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs should be a positive int, but got epochs={epochs!r}")
    resume_with = resume_with or make_loader
    loader = make_loader()
    if not isinstance(loader, DataLoader):
        raise TypeError(f"make_loader should return a ladle.DataLoader, but it returned {loader!r}")
    batches: list[list[Any]] = []
    cuts: list[tuple[int, int, str]] = []  # (epoch, batches consumed in it, saved state)
    try:
        for epoch in range(epochs):
            batches.append([])
            iterator = iter(loader)
            while True:
                cuts.append((epoch, len(batches[epoch]), json.dumps(loader.state_dict())))
                try:
                    batches[epoch].append(next(iterator))
                except StopIteration:
                    break
        cuts.append((epochs, 0, json.dumps(loader.state_dict())))
    finally:
        loader.close()
    for epoch, done, saved in cuts:
        _check_cut(resume_with, batches, epoch, done, json.loads(saved))


def _check_cut(
    make: Callable[[], DataLoader], batches: list[list[Any]], epoch: int, done: int, state: Any
) -> None:
    cut = f"cut after {done} batches of epoch {epoch}"
    loader = make()
    try:
        loader.load_state_dict(state)
        for current in range(epoch, len(batches)):
            expected = batches[current][done if current == epoch else 0 :]
            got = list(loader)
            first = done if current == epoch else 0
            for i, (actual, wanted) in enumerate(zip(got, expected, strict=False)):
                assert_batches_equal(actual, wanted, f"{cut}: epoch {current}, batch {first + i}")
            if len(got) != len(expected):
                raise AssertionError(
                    f"{cut}: epoch {current} resumed with {len(got)} batches from batch "
                    f"{first}, but the uninterrupted run had {len(expected)} from there"
                )
    finally:
        loader.close()
