"""Shared by the shard tests: hypothesis strategies for datasets, and exact equality."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = ["bool", "int8", "uint16", "int32", "int64", "uint64", "float16", "float32", "float64"]
DTYPES += ["complex64"]
KINDS = ["fixed", "varying", "scalar", "int", "float", "bool", "bytes", "str"]


@st.composite
def field_values(draw: Any, kind: str, count: int) -> list[Any]:
    """``count`` values of one field of ``kind``."""
    if kind in ("fixed", "varying", "scalar"):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        if kind == "scalar":
            return [
                v[()] for v in draw(st.lists(hnp.arrays(dtype, ()), min_size=count, max_size=count))
            ]
        ndim = draw(st.integers(0 if kind == "fixed" else 1, 3))
        shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4))
        shapes = (
            [shape] * count
            if kind == "fixed"
            else [
                draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4))
                for _ in range(count)
            ]
        )
        return [draw(hnp.arrays(dtype, s)) for s in shapes]
    values = {
        "int": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=True, allow_infinity=True),
        "bool": st.booleans(),
        "bytes": st.binary(max_size=40),
        "str": st.text(max_size=20),
    }[kind]
    return draw(st.lists(values, min_size=count, max_size=count))


@st.composite
def datasets(draw: Any, max_samples: int = 25) -> list[Any]:
    """A list of samples sharing one schema: dicts, tuples, lists or single values."""
    count = draw(st.integers(0, max_samples))
    structure = draw(st.sampled_from(["dict", "tuple", "list", "value"]))
    width = 1 if structure == "value" else draw(st.integers(1, 4))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(width)]
    columns = [draw(field_values(kind, count)) for kind in kinds]
    names = draw(
        st.lists(st.text(min_size=1, max_size=8), min_size=width, max_size=width, unique=True)
    )
    samples: list[Any] = []
    for i in range(count):
        row = [column[i] for column in columns]
        if structure == "dict":
            samples.append(dict(zip(names, row, strict=True)))
        elif structure == "tuple":
            samples.append(tuple(row))
        elif structure == "list":
            samples.append(row)
        else:
            samples.append(row[0])
    return samples


def assert_same(got: Any, want: Any, loose_arrays: bool = False) -> None:
    """Equal in structure, type and bits (NaN equals NaN, -0.0 differs from 0.0).

    ``loose_arrays``: a 0-d array may come back as a NumPy scalar of its dtype (the rows of a
    stacked column are scalars).
    """
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for key in want:
            assert_same(got[key], want[key], loose_arrays)
        return
    if isinstance(want, tuple | list):
        assert type(got) is type(want), (type(got), type(want))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, loose_arrays)
        return
    if isinstance(want, np.ndarray):
        if loose_arrays and want.ndim == 0 and isinstance(got, np.generic):
            got = np.asarray(got)
        assert isinstance(got, np.ndarray), type(got)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        return
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want)
    elif isinstance(want, np.generic):
        assert got.tobytes() == want.tobytes()
    else:
        assert got == want
