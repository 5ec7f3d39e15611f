"""DataLoader with num_workers=0: batching, order, seeds, outputs and lifecycle."""

import importlib.util
import warnings
from typing import Any

import numpy as np
import pytest
from script_support import run_script

import ladle
from ladle import DataLoader, IteratorState, RandomSampler, TensorDataset


class Pairs(ladle.Dataset[tuple[np.ndarray, int]]):
    def __init__(self, n: int) -> None:
        self.x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], i


class Recording(ladle.Dataset[int]):
    """Records what the loader passes to __getitems__."""

    def __init__(self, n: int, accepts_array: bool) -> None:
        self.n = n
        self.calls: list[Any] = []
        self.accepts_index_array = accepts_array

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        raise AssertionError("the loader must use __getitems__")

    def __getitems__(self, indices: Any) -> list[int]:
        self.calls.append(indices)
        return [int(i) for i in indices]


class Stream(ladle.IterableDataset[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


def labels(loader: DataLoader) -> list[list[int]]:
    return [batch[1].tolist() for batch in loader]


def test_canonical_loop_batches_and_len() -> None:
    loader = DataLoader(Pairs(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    x, y = batches[-1]
    assert x.shape == (2, 3) and x.dtype == np.float32
    assert y.tolist() == [8, 9] and y.dtype == np.int64
    assert labels(DataLoader(Pairs(10), batch_size=4, drop_last=True)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]
    assert len(DataLoader(Pairs(10), batch_size=4, drop_last=True)) == 2


def test_getitems_is_used_with_lists_or_index_arrays() -> None:
    as_lists = Recording(5, accepts_array=False)
    assert [b.tolist() for b in DataLoader(as_lists, batch_size=2)] == [[0, 1], [2, 3], [4]]
    assert all(type(call) is list for call in as_lists.calls)
    as_arrays = Recording(5, accepts_array=True)
    list(DataLoader(as_arrays, batch_size=2, shuffle=True, seed=0))
    assert all(isinstance(call, np.ndarray) for call in as_arrays.calls)
    assert sorted(np.concatenate(as_arrays.calls).tolist()) == [0, 1, 2, 3, 4]


def test_tensor_dataset_batches_are_one_gather() -> None:
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    y = np.arange(100)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=3)
    seen = []
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, x[yb])
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(100))


def test_each_epoch_reshuffles_and_seed_fixes_every_epoch() -> None:
    def epochs(loader: DataLoader, count: int) -> list[list[list[int]]]:
        return [labels(loader) for _ in range(count)]

    a = epochs(DataLoader(Pairs(40), batch_size=8, shuffle=True, seed=11), 3)
    b = epochs(DataLoader(Pairs(40), batch_size=8, shuffle=True, seed=11), 3)
    assert a == b
    assert a[0] != a[1] != a[2]
    # epoch e's order is the pure function RandomSampler(seed) gives for epoch e
    for epoch in range(3):
        sampler = RandomSampler(range(40), seed=11)
        sampler.set_epoch(epoch)
        assert [i for batch in a[epoch] for i in batch] == list(sampler)
    unseeded = epochs(DataLoader(Pairs(40), batch_size=8, shuffle=True), 1)
    assert unseeded != a[:1]


def test_batch_size_none_custom_sampler_batch_sampler_and_collate() -> None:
    single = list(DataLoader(Pairs(3), batch_size=None))
    assert isinstance(single[0], list) and single[0][1] == 0
    assert labels(DataLoader(Pairs(6), batch_size=2, sampler=[5, 4, 3, 2, 1, 0])) == [
        [5, 4],
        [3, 2],
        [1, 0],
    ]
    assert labels(DataLoader(Pairs(6), batch_sampler=[[0, 5], [2]])) == [[0, 5], [2]]
    raw = list(DataLoader(Pairs(4), batch_size=2, collate_fn=lambda samples: samples))
    assert [i for _, i in raw[1]] == [2, 3]
    gathered = list(DataLoader(TensorDataset(np.arange(4)), batch_size=3, collate_fn=list))
    assert [len(batch) for batch in gathered] == [3, 1]


def test_iterable_dataset_batches_and_len() -> None:
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    assert [int(v) for v in DataLoader(Stream(3), batch_size=None)] == [0, 1, 2]


def test_output_torch_and_numpy() -> None:
    import torch

    x, y = next(iter(DataLoader(Pairs(4), batch_size=2, output="torch")))
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    tensors = TensorDataset(torch.arange(6).reshape(3, 2))
    (xb,) = next(iter(DataLoader(tensors, batch_size=3, output="numpy")))
    assert isinstance(xb, np.ndarray) and xb.tolist() == [[0, 1], [2, 3], [4, 5]]
    (kept,) = next(iter(DataLoader(tensors, batch_size=3)))
    assert isinstance(kept, torch.Tensor)


def test_output_jax_needs_jax_or_converts() -> None:
    if importlib.util.find_spec("jax") is None:
        with pytest.raises(ImportError, match=r"pip install 'ladle\[jax\]'"):
            DataLoader(Pairs(2), output="jax")
        return
    # In a process of its own: JAX, once up, warns at every later fork of the test process.
    run_script(
        """
        import numpy as np, jax.numpy as jnp, ladle
        loader = ladle.DataLoader(ladle.TensorDataset(np.arange(4.0)), batch_size=2, output="jax")
        (x,) = next(iter(loader))
        assert isinstance(x, jnp.ndarray), type(x)
        """,
        timeout=120,
    )


def test_pin_memory_without_accelerator_warns_once_and_does_nothing() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has an accelerator: pinning is real here")
    loader = DataLoader(Pairs(4), batch_size=2, pin_memory=True)
    with pytest.warns(UserWarning, match="no accelerator") as record:
        first = [labels(loader) for _ in range(2)]
    assert len(record) == 1
    assert first[0] == [[0, 1], [2, 3]]


def test_worker_arguments_are_accepted_and_loading_stays_correct() -> None:
    loader = DataLoader(
        Pairs(10),
        batch_size=4,
        num_workers=2,
        prefetch_factor=3,
        persistent_workers=True,
        multiprocessing_context="spawn",
        timeout=60,
        in_order=False,
    )
    assert loader.prefetch_factor == 3
    try:
        got = sorted(labels(loader))
    finally:
        loader.close()
    assert got == sorted(labels(DataLoader(Pairs(10), batch_size=4)))
    assert DataLoader(Pairs(2), num_workers=1).prefetch_factor == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"seed": 1, "generator": np.random.default_rng(0)}, ValueError, "seed or generator"),
        ({"seed": -1}, ValueError, "seed"),
        ({"generator": 3}, TypeError, "generator"),
        ({"output": "tensorflow"}, ValueError, "output"),
        ({"pin_memory": True, "output": "numpy"}, ValueError, "pin_memory"),
        ({"worker_type": "fiber"}, ValueError, "worker_type"),
        ({"timeout": 1}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"num_workers": -1}, ValueError, "num_workers"),
        ({"num_workers": 1.5}, TypeError, "num_workers"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        (
            {"num_workers": 1, "worker_type": "thread", "multiprocessing_context": "spawn"},
            ValueError,
            "multiprocessing_context",
        ),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, Any], error: type, names: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(error, match=names):
            DataLoader(Pairs(4), **kwargs)


def test_configuration_is_frozen_after_construction() -> None:
    loader = DataLoader(Pairs(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 3
    loader.collate_fn = lambda b: b  # torch allows changing the other attributes


def test_iterator_lifecycle() -> None:
    it = iter(DataLoader(Pairs(4), batch_size=2))
    assert it.state is IteratorState.RUNNING and len(it) == 2
    next(it)
    it.close()
    it.close()
    assert it.state is IteratorState.CLOSED
    with pytest.raises(StopIteration):
        next(it)
    done = iter(DataLoader(Pairs(2), batch_size=2))
    list(done)
    assert done.state is IteratorState.EXHAUSTED
    done.close()
    assert done.state is IteratorState.EXHAUSTED


def test_a_failing_sample_propagates_and_the_pass_goes_on() -> None:
    class Flaky(Pairs):
        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            if i == 2:
                raise KeyError("sample 2 is broken")
            return super().__getitem__(i)

    it = iter(DataLoader(Flaky(6), batch_size=2))
    assert next(it)[1].tolist() == [0, 1]
    with pytest.raises(KeyError, match="sample 2"):
        next(it)
    assert next(it)[1].tolist() == [4, 5]
