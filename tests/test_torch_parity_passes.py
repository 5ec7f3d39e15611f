"""Passes against torch 2.13: the same pipeline on both sides, compared. Worker cases run in a
subprocess with a hard time limit."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
import torch  # the test gate installs torch 2.13: a missing torch must fail, not skip
import torch.utils.data as tud
from script_support import run_json

import ladle


def test_zip_and_nested_loops_over_one_loader_match_torch() -> None:
    result = run_json(
        """
        import json, ladle, torch.utils.data as tud
        out = {}
        for name, module in (("ladle", ladle), ("torch", tud)):
            loader = module.DataLoader(list(range(20)), batch_size=4, num_workers=2)
            pairs = [(a.tolist(), b.tolist()) for a, b in zip(loader, loader)]
            nested = [(a.tolist(), b.tolist()) for a in loader for b in loader]
            out[name] = [pairs, nested]
        print(json.dumps(out))
        """,
        timeout=120,
    )
    assert result["ladle"] == result["torch"]
    assert len(result["ladle"][0]) == 5 and len(result["ladle"][1]) == 25


def _warning_texts(module: Any, dataset: Any, **kwargs: Any) -> list[str]:
    loader = module.DataLoader(dataset, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        len(loader)
        for _ in loader:
            pass
    return [str(warning.message) for warning in caught]


def test_the_excessive_workers_warning_is_torchs() -> None:
    workers = len(os.sched_getaffinity(0)) + 1
    ours = _warning_texts(ladle, list(range(4)), num_workers=workers, worker_type="thread")
    assert ours == [], "threads are not processes: torch's warning is about processes"
    ours = _warning_texts(ladle, list(range(4)), num_workers=workers)
    theirs = _warning_texts(tud, list(range(4)), num_workers=workers)
    assert ours[:1] == theirs[:1]
    assert "worker processes in total" in ours[0]


class _Overlong:
    def __len__(self) -> int:
        return 3

    def __iter__(self) -> Any:
        return iter(range(5))


class LadleOverlong(_Overlong, ladle.IterableDataset[int]):
    pass


class TorchOverlong(_Overlong, tud.IterableDataset[int]):
    pass


@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_the_iterable_length_warning_comes_when_torchs_does(batch_size: int | None) -> None:
    ours = _warning_texts(ladle, LadleOverlong(), batch_size=batch_size)
    theirs = _warning_texts(tud, TorchOverlong(), batch_size=batch_size)
    assert len(ours) == len(theirs), "for every batch past the length"
    for mine, torchs in zip(ours, theirs, strict=True):
        assert mine.startswith("Length of IterableDataset <")
        assert (
            mine.split(" object at ")[1].split(">", 1)[1]
            == (torchs.split(" object at ")[1].split(">", 1)[1])
        )


def test_an_error_in_a_batch_consumes_it_as_in_torch() -> None:
    class Failing:
        def __len__(self) -> int:
            return 9

        def __getitem__(self, index: int) -> int:
            if index == 4:
                raise KeyError(index)
            return index

    def run(module: Any) -> list[Any]:
        iterator = iter(module.DataLoader(Failing(), batch_size=3))
        events: list[Any] = []
        while True:
            try:
                events.append(next(iterator).tolist())
            except StopIteration:
                return events
            except KeyError as error:
                events.append(repr(error))

    assert run(ladle) == run(tud)
    assert torch.__version__.startswith("2.13")
