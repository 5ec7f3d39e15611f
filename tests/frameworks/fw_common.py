"""Shared by the child scripts of the framework tests (they run with this folder on the path).

A sample is ``(index, features)``: every training step can say which samples it saw. A child
prints its result as one line ``RESULT <json>`` (see fw_support).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.data as tud

MARK = "RESULT "
_noted = 0  # the pid this process last noted: a forked worker inherits the parent's


def note_pid() -> None:
    """Writes this process's pid into FW_PID_DIR once (the parent checks /dev/shm for it)."""
    global _noted
    pid = os.getpid()
    if _noted != pid and (folder := os.environ.get("FW_PID_DIR")):
        _noted = pid
        with open(os.path.join(folder, str(pid)), "w"):
            pass


def loader_class(name: str) -> type[tud.DataLoader[Any]]:
    """The DataLoader class a scenario runs with: torch's, or ladle's torch namespace."""
    if name == "torch":
        return tud.DataLoader
    if name == "ladle":
        from ladle.torch import DataLoader

        assert issubclass(DataLoader, tud.DataLoader), "ladle.torch.DataLoader is no torch one"
        return DataLoader
    raise ValueError(f"unknown loader {name!r}: 'torch' or 'ladle'")


class Indexed(tud.Dataset[tuple[int, torch.Tensor]]):
    """``n`` samples ``(i, features_i)``, features a float32 vector of ``dim`` made from i."""

    def __init__(self, n: int, dim: int = 3) -> None:
        self.n = n
        self.features = torch.arange(n * dim, dtype=torch.float32).reshape(n, dim) / (n * dim)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        note_pid()
        return i, self.features[i]


def describe(batch: Any) -> str:
    """The structure and leaf types of a batch, e.g. ``list[Tensor(int64), Tensor(float32)]``."""
    if isinstance(batch, torch.Tensor):
        return f"Tensor({str(batch.dtype).removeprefix('torch.')})"
    if isinstance(batch, list | tuple):
        return f"{type(batch).__name__}[{', '.join(describe(b) for b in batch)}]"
    if isinstance(batch, dict):
        inner = ", ".join(f"{k}: {describe(v)}" for k, v in batch.items())
        return f"dict[{inner}]"
    return type(batch).__name__


def qualname(obj: Any) -> str:
    cls = type(obj) if not isinstance(obj, type) else obj
    return f"{cls.__module__}.{cls.__qualname__}"


def attempt(results: dict[str, Any], name: str, scenario: Callable[[], Any]) -> None:
    """Runs one scenario; its value, or the error it raised, goes into ``results[name]``."""
    start = time.monotonic()
    try:
        results[name] = {"ok": scenario()}
    except BaseException as exc:  # a failing scenario must not hide the others' results
        if isinstance(exc, KeyboardInterrupt):
            raise
        results[name] = {"error": "".join(traceback.format_exception(exc))[-6000:]}
        print(results[name]["error"], file=sys.stderr, flush=True)
    results[name]["seconds"] = round(time.monotonic() - start, 2)


def keep_ladle_engine() -> None:
    """The recipe: accelerate builds the loader it hands back (``DataLoaderAdapter``, also in
    ``skip_first_batches``) by calling the name ``DataLoader`` of its module; pointing that
    name at ladle's class makes the rebuilt loader a ladle one."""
    import accelerate.data_loader

    import ladle.torch

    accelerate.data_loader.DataLoader = ladle.torch.DataLoader  # type: ignore[misc]


def engine(prepared: Any, probe: bool = True) -> dict[str, str]:
    """The class of an accelerate-prepared loader, of the loader it wraps and, with ``probe``,
    of the iterator that one makes (an iterator of torch's draws from torch's generator: probe
    only once the batches that matter are drawn)."""
    base = prepared.base_dataloader
    out = {"prepared": qualname(prepared), "base": qualname(base)}
    if probe:
        it = iter(base)
        out["iter"] = qualname(it)
        del it
    return out


def emit(result: Any) -> None:
    print(MARK + json.dumps(result), flush=True)
