"""ladle.torch's own promises beyond torch's behaviour: the engine underneath, exact resume of
torch's samplers, settings that follow the loader's attributes. Parity with torch itself is
tested in the differential suite (test_torch_ns_*.py)."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.utils.data as td  # noqa: E402

import ladle  # noqa: E402
import ladle.torch as lt  # noqa: E402
from ladle.iterator import LoaderIterator  # noqa: E402

N = 23


class Indexed(td.Dataset):  # type: ignore[misc]
    """Sample i is (i as a float vector, i): the labels say which samples a batch holds."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.full(3, i, dtype=np.float32), i


def labels(batches: Any) -> list[list[int]]:
    return [batch[1].tolist() for batch in batches]


def test_the_loader_is_torchs_and_runs_on_ladles_engine() -> None:
    loader = lt.DataLoader(Indexed(), batch_size=4)
    assert isinstance(loader, td.DataLoader)
    iterator = iter(loader)
    assert isinstance(iterator, LoaderIterator)
    first = next(iterator)
    assert isinstance(first, list) and isinstance(first[0], torch.Tensor)
    assert first[0].dtype == torch.float32 and first[1].dtype == torch.int64


@pytest.mark.parametrize("workers", [0, 2])
def test_unseeded_shuffle_follows_torch_manual_seed(workers: int) -> None:
    def run(cls: Any) -> tuple[list[list[int]], Any]:
        torch.manual_seed(7)
        loader = cls(Indexed(), batch_size=5, shuffle=True, num_workers=workers)
        order = [labels(loader) for _ in range(2)]
        return order, torch.get_rng_state()

    (ours, our_state), (theirs, their_state) = run(lt.DataLoader), run(td.DataLoader)
    assert ours == theirs
    assert ours[0] != ours[1]  # a new order each epoch
    assert torch.equal(our_state, their_state)  # the program's random stream moved alike


@pytest.mark.parametrize(("workers", "resumed_workers"), [(0, 2), (2, 0)])
def test_a_mid_epoch_state_resumes_torchs_shuffle_exactly(
    workers: int, resumed_workers: int
) -> None:
    torch.manual_seed(3)
    loader = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, num_workers=workers)
    iterator = iter(loader)
    seen = labels(next(iterator) for _ in range(2))
    state = json.loads(json.dumps(loader.state_dict()))
    at_save = torch.get_rng_state()
    rest = labels(iterator)
    following = [labels(loader) for _ in range(2)]
    torch.manual_seed(1234)  # another program state: the saved one decides the pass
    again = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, num_workers=resumed_workers)
    again.load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), at_save)  # torch's generator as it was then
    assert labels(again) == rest
    assert torch.equal(torch.get_rng_state(), at_save)  # the replay drew from a copy
    assert len(seen) + len(rest) == 6
    assert [labels(again) for _ in range(2)] == following  # later epochs as uninterrupted


def test_a_loader_generator_resumes_exactly() -> None:
    def make() -> Any:
        return lt.DataLoader(
            Indexed(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5)
        )

    loader = make()
    labels(loader)  # epoch 0
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    rest = labels(iterator)
    next_epoch = labels(loader)
    again = make()
    again.load_state_dict(state)
    assert labels(again) == rest
    assert labels(again) == next_epoch


def test_a_distributed_sampler_resumes_in_its_epoch() -> None:
    def make() -> Any:
        sampler = td.DistributedSampler(Indexed(), num_replicas=2, rank=1, shuffle=True, seed=4)
        return sampler, lt.DataLoader(Indexed(), batch_size=3, sampler=sampler)

    sampler, loader = make()
    sampler.set_epoch(3)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    rest = labels(iterator)
    sampler2, again = make()  # set_epoch not called: the state holds the epoch
    again.load_state_dict(state)
    assert labels(again) == rest
    assert sampler2.epoch == 3


def test_seed_fixes_the_stream_for_any_worker_count() -> None:
    runs = [
        [labels(lt.DataLoader(Indexed(), batch_size=4, shuffle=True, seed=11, num_workers=w))]
        for w in (0, 2)
    ]
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="seed or generator, not both"):
        lt.DataLoader(Indexed(), seed=1, generator=torch.Generator())


def test_reassigned_settings_take_effect_at_the_next_pass() -> None:
    loader = lt.DataLoader(Indexed(), batch_size=4, num_workers=2)
    assert len(set(iter(loader).worker_pids)) == 2
    loader.num_workers = 0  # torch allows this; prefetch_factor stays 2 on torch's side
    assert iter(loader).worker_pids == [os.getpid()]  # loaded in the main process
    loader.collate_fn = lambda samples: len(samples)
    assert list(loader) == [4, 4, 4, 4, 4, 3]


def test_custom_collate_and_default_convert_keep_torchs_types() -> None:
    batches = list(lt.DataLoader(Indexed(), batch_size=2, collate_fn=lambda s: s))
    assert isinstance(batches[0][0][0], np.ndarray)  # a custom collate_fn's output is kept
    single = next(iter(lt.DataLoader(Indexed(), batch_size=None)))
    assert isinstance(single[0], torch.Tensor) and single[1] == 0


def test_torch_iterable_datasets_shard_with_torchs_worker_info() -> None:
    class Stream(td.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Any:
            info = td.get_worker_info()
            ours = lt.get_worker_info()
            assert (info is None) == (ours is None)
            if info is None:
                yield from range(12)
            else:
                assert info.id == ours.id and info.seed == ours.seed
                yield from range(info.id, 12, info.num_workers)

    loader = lt.DataLoader(Stream(), batch_size=3, num_workers=2, timeout=30)
    values = sorted(v for batch in loader for v in batch.tolist())
    assert values == list(range(12))
    assert sorted(v for batch in ladle.DataLoader(Stream(), batch_size=3) for v in batch) == (
        list(range(12))
    )


def test_hugging_face_iterable_datasets_are_iterable_style() -> None:
    datasets = pytest.importorskip("datasets")
    stream = datasets.Dataset.from_dict({"x": list(range(10))}).to_iterable_dataset()
    batches = list(lt.DataLoader(stream, batch_size=4))
    assert [batch["x"].tolist() for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shards = datasets.Dataset.from_dict({"x": list(range(10))}).to_iterable_dataset(num_shards=2)
    loader = lt.DataLoader(shards, batch_size=3, num_workers=2, timeout=60)
    assert sorted(v for batch in loader for v in batch["x"].tolist()) == list(range(10))


def test_state_dicts_of_another_kind_are_refused() -> None:
    seeded = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, seed=1)
    unseeded = lt.DataLoader(Indexed(), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="drawing from a generator of its own"):
        unseeded.load_state_dict(seeded.state_dict())
    iterator = iter(unseeded)
    next(iterator)
    with pytest.raises(ValueError, match="drawing from torch's default generator"):
        seeded.load_state_dict(unseeded.state_dict())


def test_a_loader_pickles_with_its_position() -> None:
    loader = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, seed=2)
    iterator = iter(loader)
    next(iterator)
    rest = labels(iterator)
    loader2 = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, seed=2)
    iterator = iter(loader2)
    next(iterator)
    copy = pickle.loads(pickle.dumps(loader2))
    assert labels(copy) == rest


def test_pin_memory_without_an_accelerator_warns_in_torchs_words() -> None:
    if torch.accelerator.is_available():
        pytest.skip("an accelerator is present")
    messages = []
    for cls in (lt.DataLoader, td.DataLoader):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            next(iter(cls(Indexed(), batch_size=4, pin_memory=True)))
        messages.append([(w.category, str(w.message)) for w in caught])
    assert messages[0] == messages[1] and messages[0]


def test_assertions_torch_makes_are_value_errors_too() -> None:
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        ladle.TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        ladle.TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(AssertionError, match="datasets should not be an empty iterable"):
        ladle.ConcatDataset([])
    with pytest.raises(AssertionError, match="ConcatDataset does not support IterableDataset"):
        ladle.ConcatDataset([ladle.ChainDataset([])])
    with pytest.raises(TypeError, match="ChainDataset only supports IterableDataset"):
        ladle.ChainDataset([[1, 2]])


def test_subset_takes_slices_and_lists_as_torchs() -> None:
    parent = np.arange(10) * 10
    ours, theirs = ladle.Subset(parent, [1, 3, 5, 7]), td.Subset(parent, [1, 3, 5, 7])
    assert ours[1:3].tolist() == theirs[1:3].tolist() == [30, 50]
    assert ours[[0, 2]].tolist() == theirs[[0, 2]].tolist() == [10, 50]


def test_tensor_dataset_gathers_a_batch_at_once() -> None:
    x, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    dataset = lt.TensorDataset(x, y)
    gathered = dataset.__getitems__([4, 1])
    assert [t.tolist() for t in gathered.columns] == [[[8.0, 9.0], [2.0, 3.0]], [4, 1]]
    ours = list(lt.DataLoader(dataset, batch_size=4, shuffle=True, seed=0))
    assert all(isinstance(t, torch.Tensor) for batch in ours for t in batch)
    theirs = list(td.DataLoader(dataset, batch_size=4))  # torch's loader takes it too
    assert [t.tolist() for t in theirs[0]] == [x[:4].tolist(), y[:4].tolist()]


def test_a_loader_rebuilt_from_its_attributes_starts_the_same_stream() -> None:
    """Frameworks (Lightning, accelerate) rebuild a loader from its attributes."""
    import inspect

    loader = lt.DataLoader(Indexed(), batch_size=4, shuffle=True, seed=9, num_workers=0)
    first = labels(loader)
    names = [p for p in inspect.signature(lt.DataLoader.__init__).parameters if p != "self"]
    skip = ("sampler", "batch_sampler", "shuffle")  # torch keeps no shuffle attribute
    kwargs = {name: getattr(loader, name) for name in names if name not in skip}
    kwargs["shuffle"] = True
    rebuilt = lt.DataLoader(**kwargs)
    assert labels(rebuilt) == first


def test_every_name_of_torch_utils_data_is_here() -> None:
    assert set(lt.__all__) == set(td.__all__)
    for name in td.__all__:
        assert hasattr(lt, name), name


class Draws(td.Dataset):  # type: ignore[misc]
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[float, float, float]:
        import random

        return float(np.random.rand()), random.random(), float(torch.rand(()))


def test_workers_random_streams_are_torchs() -> None:
    """random, NumPy and torch draws in worker processes equal torch's under manual_seed."""
    runs = []
    for cls in (lt.DataLoader, td.DataLoader):
        torch.manual_seed(2)
        loader = cls(Draws(), batch_size=None, num_workers=2, timeout=30)
        runs.append([[float(v) for v in sample] for sample in loader])
    assert runs[0] == runs[1]


def test_an_unseeded_loader_pickles_and_still_draws_from_torchs_generator() -> None:
    """ddp_spawn and deepcopy pickle loaders; torch's default generator must stay the default
    one, not come back as a private copy of its state."""
    import copy

    torch.manual_seed(0)
    loader = lt.DataLoader(Indexed(), batch_size=4, shuffle=True)
    iterator = iter(loader)
    next(iterator)
    rest = labels(iterator)
    torch.manual_seed(0)
    loader = lt.DataLoader(Indexed(), batch_size=4, shuffle=True)
    iterator = iter(loader)
    next(iterator)
    for clone in (pickle.loads(pickle.dumps(loader)), copy.deepcopy(loader)):
        assert labels(clone) == rest
    torch.manual_seed(5)
    expected = labels(td.DataLoader(Indexed(), batch_size=4, shuffle=True))
    torch.manual_seed(5)
    assert labels(pickle.loads(pickle.dumps(lt.DataLoader(Indexed(), 4, shuffle=True)))) == (
        expected
    )


class Unresumable(td.IterableDataset):  # type: ignore[misc]
    def __iter__(self) -> Any:
        return iter(range(10))


def test_a_stream_without_iter_from_saves_a_restart_of_its_epoch_with_a_warning() -> None:
    """Frameworks save a loader's state at every checkpoint: that must not crash (torch's
    loader has no state to save), and must not pretend to resume mid-stream either."""
    loader = lt.DataLoader(Unresumable(), batch_size=3)
    iterator = iter(loader)
    next(iterator)
    with pytest.warns(UserWarning, match="begins this epoch again from its start"):
        state = loader.state_dict()
    again = lt.DataLoader(Unresumable(), batch_size=3)
    again.load_state_dict(state)
    assert [batch.tolist() for batch in again] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


class LazyGenerator(td.Sampler):  # type: ignore[misc]
    """Makes its generator on its first pass, as accelerate's SeedableRandomSampler does."""

    def __init__(self) -> None:
        self.generator: Any = None

    def __len__(self) -> int:
        return N

    def __iter__(self) -> Any:
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(0)
        return iter(torch.randperm(N, generator=self.generator).tolist())


def test_a_sampler_that_makes_its_generator_late_resumes() -> None:
    sampler = LazyGenerator()
    loader = lt.DataLoader(Indexed(), batch_size=4, sampler=sampler)
    labels(loader)  # the generator exists from now on
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    rest = labels(iterator)
    again = lt.DataLoader(Indexed(), batch_size=4, sampler=LazyGenerator())
    again.load_state_dict(state)
    assert labels(again) == rest


def test_the_start_method_is_multiprocessings_default_as_in_torch() -> None:
    from script_support import run_json

    result = run_json(
        """
        import json, multiprocessing, os
        import ladle.torch as lt
        from workers_support import ParentPids

        if __name__ == "__main__":
            multiprocessing.set_start_method("forkserver")
            loader = lt.DataLoader(ParentPids(), batch_size=None, num_workers=1, timeout=60)
            print(json.dumps({"main": os.getpid(), "parents": sorted({int(p) for p in loader})}))
        """,
        timeout=120,
    )
    assert result["parents"] and result["main"] not in result["parents"]  # the forkserver's


@pytest.mark.parametrize("n", [12, 13])
@pytest.mark.parametrize("batch_size", [4, 5])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("own_generator", [False, True])
def test_torchs_stock_samplers_read_whole_orders_with_torchs_draws(
    n: int, batch_size: int, drop_last: bool, own_generator: bool
) -> None:
    """The fast path over BatchSampler(RandomSampler) draws what torch's does, when it does:
    the same batches, and the generators left in the same state, epoch after epoch."""
    data = list(range(n))

    def run(cls: Any) -> tuple[list[list[int]], Any, Any]:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1) if own_generator else None
        loader = cls(data, batch_size, shuffle=True, drop_last=drop_last, generator=generator)
        epochs = [[batch.tolist() for batch in loader] for _ in range(3)]
        return epochs, torch.get_rng_state(), generator.get_state() if generator else None

    ours, theirs = run(lt.DataLoader), run(td.DataLoader)
    assert ours[0] == theirs[0]
    assert torch.equal(ours[1], theirs[1])
    assert own_generator is False or torch.equal(ours[2], theirs[2])
    sampler = td.RandomSampler(data, num_samples=2 * n + 3)  # several rounds and a tail
    torch.manual_seed(4)
    mine = [b.tolist() for b in lt.DataLoader(data, batch_size, sampler=sampler)]
    torch.manual_seed(4)
    assert mine == [b.tolist() for b in td.DataLoader(data, batch_size, sampler=sampler)]


@pytest.mark.parametrize("n", [70_000, 300_001])
def test_a_large_shuffle_is_torchs_permutation_whatever_its_thread_count(n: int) -> None:
    """ladle draws torch's permutation on one intra-op thread (a busy machine's pool is slow to
    start); torch's own, on its pool, is the same, and the thread count is left as it was."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(3)
        ours = np.concatenate(list(lt.DataLoader(range(n), batch_size=50_000, shuffle=True)))
        assert torch.get_num_threads() == 2
        torch.manual_seed(3)
        theirs = np.concatenate(list(td.DataLoader(range(n), batch_size=50_000, shuffle=True)))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(ours, theirs)
