"""Conversions between NumPy, torch and JAX outputs keep the batch's structure."""

from collections import OrderedDict

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
