"""Collation rules, errors that point into the sample, and the type registry."""

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import pytest

from ladle import CollateError, CollateSizeError, default_collate, default_convert
from ladle.collate import register_collate


class Point(NamedTuple):
    x: float
    label: int


def test_numpy_in_numpy_out_with_torch_structure() -> None:
    batch = default_collate(
        [
            {"image": np.ones((2, 2), np.uint8), "meta": (1, 2.5, "a", b"x", True)},
            {"image": np.zeros((2, 2), np.uint8), "meta": (3, 4.0, "b", b"y", False)},
        ]
    )
    assert set(batch) == {"image", "meta"}
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (2, 2, 2)
    ints, floats, strs, raw, flags = batch["meta"]
    assert isinstance(batch["meta"], list), "tuples come back as lists, as in torch"
    assert ints.dtype == np.int64 and ints.tolist() == [1, 3]
    assert floats.dtype == np.float64 and floats.tolist() == [2.5, 4.0]
    assert strs == ("a", "b") and raw == (b"x", b"y"), "zip-transposed, as torch returns them"
    assert flags.dtype == np.bool_ and flags.tolist() == [True, False]


def test_namedtuple_ordereddict_and_numpy_scalars() -> None:
    points = default_collate([Point(1.0, 1), Point(2.0, 0)])
    assert isinstance(points, Point) and points.label.tolist() == [1, 0]
    od = default_collate([OrderedDict(a=np.float32(1)), OrderedDict(a=np.float32(2))])
    assert isinstance(od, OrderedDict) and od["a"].dtype == np.float32


def test_mixed_python_numbers_promote_to_float() -> None:
    assert default_collate([2.5, 1]).dtype == np.float64
    # torch.tensor([1, 2.5]) infers torch's default float32 when an int comes first
    assert default_collate([1, 2.5]).dtype == np.float32
    assert default_collate([True, 2]).dtype == np.int64
    assert default_collate([np.float32(1), 2.0]).dtype == np.float64


def test_type_clash_names_the_place_and_types() -> None:
    with pytest.raises(CollateError) as caught:
        default_collate([{"x": (np.zeros(2), 1)}, {"x": (np.zeros(2), "one")}])
    message = str(caught.value)
    assert "sample['x'][1]" in message
    assert "sample 0 holds int but sample 1 holds str" in message
    assert isinstance(caught.value, TypeError)
    with pytest.raises(CollateError, match=r"sample\[0\]: sample 0 holds ndarray but sample 1"):
        default_collate([(np.zeros(2),), ([0.0, 0.0],)])


def test_unequal_sizes_raise_runtime_error_with_shapes() -> None:
    with pytest.raises(CollateSizeError, match="shape \\(3,\\) but sample 1 has shape \\(4,\\)"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [1, 2, 3]])
    with pytest.raises(CollateError, match="keys"):
        default_collate([{"a": 1}, {"b": 1}])


def test_unsupported_values_say_how_to_register() -> None:
    with pytest.raises(CollateError, match="register_collate"):
        default_collate([object(), object()])
    with pytest.raises(CollateError, match="dtype object"):
        default_collate([np.array([None]), np.array([None])])
    with pytest.raises(IndexError, match="empty batch"):
        default_collate([])


class Box:
    def __init__(self, value: int) -> None:
        self.value = value


def test_registered_types_take_precedence() -> None:
    previous = register_collate(Box, lambda boxes: sum(b.value for b in boxes))
    try:
        assert previous is None
        assert default_collate([(Box(1), 0), (Box(2), 1)])[0] == 3
        register_collate(int, lambda ints: "ints")
        assert default_collate([1, 2]) == "ints"
    finally:
        register_collate(Box, None)
        register_collate(int, None)
    assert default_collate([1, 2]).tolist() == [1, 2]
    with pytest.raises(TypeError, match="needs a type"):
        register_collate("Box", None)  # type: ignore[arg-type]


def test_default_convert_keeps_arrays_and_converts_scalars() -> None:
    converted = default_convert({"a": np.float32(1.5), "b": (np.arange(2), "s")})
    assert isinstance(converted["a"], np.ndarray) and converted["a"].shape == ()
    assert isinstance(converted["b"], list) and converted["b"][1] == "s"
    assert default_convert(Point(1.0, 2)) == Point(1.0, 2)
