"""Conversions between NumPy, torch and JAX outputs keep the batch's structure."""

import importlib.util
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from ladle.interop import converter, require, to_numpy, to_torch
from ladle.padding import PaddedBatch


def test_to_torch_keeps_structure_and_shares_memory() -> None:
    import torch

    array = np.arange(4, dtype=np.float32)
    batch = {
        "x": array,
        "pair": (np.int16(3), "text"),
        "od": OrderedDict(a=[np.ones(2)]),
        "padded": PaddedBatch(np.zeros((1, 2)), np.array([2]), np.array([[True, True]])),
        "words": np.array(["a", "b"]),
    }
    out = to_torch(batch)
    assert isinstance(out["x"], torch.Tensor)
    out["x"][0] = 42
    assert array[0] == 42, "from_numpy shares memory: no copy on the hot path"
    assert isinstance(out["pair"], tuple) and out["pair"][0].dtype == torch.int16
    assert out["pair"][1] == "text"
    assert isinstance(out["od"], OrderedDict) and isinstance(out["od"]["a"][0], torch.Tensor)
    assert isinstance(out["padded"], PaddedBatch) and out["padded"].mask.dtype == torch.bool
    assert isinstance(out["words"], np.ndarray), "strings have no torch dtype: left as they are"


def test_read_only_arrays_are_copied_not_aliased() -> None:
    frozen = np.arange(3)
    frozen.flags.writeable = False
    tensor = to_torch(frozen)
    tensor[0] = 7
    assert frozen[0] == 0


def test_to_numpy_round_trip() -> None:
    import torch

    back = to_numpy([torch.arange(3), {"k": torch.ones(2, dtype=torch.float64)}])
    assert isinstance(back[0], np.ndarray) and back[0].tolist() == [0, 1, 2]
    assert back[1]["k"].dtype == np.float64


def test_converter_names_bad_output_and_missing_packages() -> None:
    assert converter(None) is None
    with pytest.raises(ValueError, match="output should be one of"):
        converter("arrow")
    with pytest.raises(ImportError, match=r"pip install 'ladle\[nonexistent_pkg_x\]'"):
        require("nonexistent_pkg_x", "this feature")


JAX_SCRIPT = """
import json, os, sys, warnings

import numpy as np

import ladle


class Rows(ladle.Dataset):
    # Each sample carries the pid of its worker's parent: the main process under fork, the
    # forkserver under forkserver.
    def __len__(self):
        return 40

    def __getitem__(self, index):
        return np.full(3, index, np.float32), os.getppid()


def run(dataset, **options):
    import jax

    loader = ladle.DataLoader(dataset, batch_size=8, num_workers=2, output="jax", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epochs = []
        for _ in range(2):  # JAX is up after the first batch: the second pass forks after it
            rows, parents = [], set()
            for x, ppid in loader:
                assert isinstance(x, jax.Array), type(x)
                rows.extend(np.asarray(x)[:, 0].tolist())
                parents.update(np.asarray(ppid).tolist())
            epochs.append(rows)
    return {
        "right": all(rows == list(range(40)) for rows in epochs),
        "forked_by_main": parents == {os.getpid()},
        "fork_warnings": sum("os.fork()" in str(w.message) for w in caught),
    }


if __name__ == "__main__":
    import jax.numpy as jnp

    jnp.zeros(2).block_until_ready()  # JAX is up before any loader, as in a training script
    results = {"default": run(Rows())}
    unpicklable = Rows()
    unpicklable.hook = lambda: None  # a lambda does not pickle: the forkserver cannot take it
    results["unpicklable"] = run(unpicklable)
    results["explicit_fork"] = run(Rows(), multiprocessing_context="fork")
    print(json.dumps(results))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_workers_start_from_a_forkserver_without_jaxs_fork_warning(tmp_path: Path) -> None:
    script = tmp_path / "train.py"  # a file with a __main__ guard, which a forkserver needs
    script.write_text(JAX_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "os.fork()" not in done.stderr, "the forkserver itself must not warn"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["default"] == {"right": True, "forked_by_main": False, "fork_warnings": 0}
    # What cannot go through the forkserver, or asks for fork, still loads right, by fork; JAX
    # then warns at each worker's fork (two workers, two passes).
    for case in ("unpicklable", "explicit_fork"):
        assert results[case] == {"right": True, "forked_by_main": True, "fork_warnings": 4}
