"""PadCollate: variable-length samples, padded, with lengths and mask."""

import numpy as np
import pytest

import ladle
from ladle import CollateError, CollateSizeError, PadCollate, PaddedBatch


class Tokens(ladle.Dataset[list[int]]):
    rows = ([1, 2, 3], [4, 5, 6], [7, 8, 9, 10], [11, 12])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[int]:
        return list(self.rows[i])


def test_token_ids_batched_two_at_a_time() -> None:
    batches = list(ladle.DataLoader(Tokens(), batch_size=2, collate_fn=PadCollate()))
    first, second = batches
    assert isinstance(first, PaddedBatch)
    np.testing.assert_array_equal(first.data, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(first.lengths, [3, 3])
    np.testing.assert_array_equal(second.data, [[7, 8, 9, 10], [11, 12, 0, 0]])
    np.testing.assert_array_equal(second.lengths, [4, 2])
    np.testing.assert_array_equal(second.mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    assert second.data.dtype == np.int64 and second.mask.dtype == np.bool_


def test_keys_pick_fields_and_the_rest_collates_as_usual() -> None:
    samples = [
        {"ids": np.array([1, 2], np.int32), "label": 0, "image": np.zeros(3)},
        {"ids": np.array([3], np.int32), "label": 1, "image": np.ones(3)},
    ]
    batch = PadCollate(pad_value=-1, keys={"ids"}, pad_to_multiple_of=4)(samples)
    assert batch["ids"].data.tolist() == [[1, 2, -1, -1], [3, -1, -1, -1]]
    assert batch["ids"].data.dtype == np.int32
    assert batch["label"].tolist() == [0, 1]
    assert batch["image"].shape == (2, 3)


def test_tuple_positions_and_trailing_dimensions() -> None:
    samples = [(np.ones((2, 3)), 5), (np.ones((1, 3)), 6)]
    data, label = PadCollate(keys={0})(samples)
    assert label.tolist() == [5, 6]
    assert data.data.shape == (2, 2, 3)
    assert data.data[1, 1].tolist() == [0, 0, 0]
    with pytest.raises(CollateSizeError, match="only the first axis may differ"):
        PadCollate()([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(CollateError, match="not a sequence"):
        PadCollate(keys={0})([(5,), (6,)])


def test_pads_gathered_batches_and_torch_tensors() -> None:
    import torch

    ds = ladle.TensorDataset(np.arange(6).reshape(3, 2))
    batch = PadCollate()(ds.__getitems__([2, 0]))
    assert batch[0].data.tolist() == [[4, 5], [0, 1]]
    padded = PadCollate(pad_value=9)([torch.tensor([1, 2]), torch.tensor([3])])
    assert isinstance(padded.data, torch.Tensor)
    assert padded.data.tolist() == [[1, 2], [3, 9]]
    assert padded.lengths.tolist() == [2, 1]
    assert padded.mask.tolist() == [[True, True], [True, False]]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="pad_value"):
        PadCollate(pad_value="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        PadCollate(pad_to_multiple_of=0)


def test_pad_value_must_fit_the_field_dtype() -> None:
    ints = [np.array([1, 2], np.int64), np.array([3], np.int64)]
    for pad_value in (float("nan"), 1.5, float("inf")):
        with pytest.raises(ValueError, match=r"pad_value=.* does not fit the dtype int64.*sample"):
            PadCollate(pad_value=pad_value)(ints)
    with pytest.raises(ValueError, match=r"pad_value=-1 does not fit the dtype uint8"):
        PadCollate(pad_value=-1)([np.array([1, 2], np.uint8), np.array([3], np.uint8)])
    floats = PadCollate(pad_value=float("nan"))([np.array([1.0, 2.0]), np.array([3.0])])
    assert np.isnan(floats.data[1, 1])  # NaN padding is fine where the dtype holds it
    assert PadCollate(pad_value=np.int64(-1), pad_to_multiple_of=np.int64(4))(
        ints
    ).data.tolist() == [
        [1, 2, -1, -1],
        [3, -1, -1, -1],
    ]


def test_pad_value_checked_for_torch_fields_too() -> None:
    import torch

    with pytest.raises(ValueError, match=r"pad_value=nan does not fit the dtype int64"):
        PadCollate(pad_value=float("nan"))([torch.tensor([1, 2]), torch.tensor([3])])


def test_keys_must_be_a_collection_of_names() -> None:
    with pytest.raises(TypeError, match=r"keys should be a collection .* keys=5 \(int\)"):
        PadCollate(keys=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"keys='ids' \(str\); pass e\.g\. keys=\{'ids'\}"):
        PadCollate(keys="ids")
    with pytest.raises(TypeError, match=r"hashable"):
        PadCollate(keys=[["ids"]])
    with pytest.raises(ValueError, match=r"keys should name at least one field"):
        PadCollate(keys=[])
