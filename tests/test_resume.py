"""Exact resume: loader.state_dict() / load_state_dict() across worker counts, types and
processes, every sampler, iterable datasets, and the mismatch errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ladle
from ladle.passplan import PassStart
from ladle.resume import Progress
from ladle.testing import assert_batches_equal, assert_resumes

Factory = Callable[[], ladle.DataLoader]


class Draws(ladle.Dataset[dict[str, Any]]):
    """Each sample: its index and two draws from its sample_rng."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"index": index, "draw": ladle.sample_rng().random(2)}


class Counted(ladle.Dataset[int]):
    """Records which indices were read (thread workers share the list)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read: list[int] = []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        self.read.append(index)
        return index


class Stream(ladle.IterableDataset[np.ndarray]):
    """A stream split across workers (worker 0 gets a shorter share), with the resume
    protocol."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_from(0)

    def iter_from(self, position: int) -> Iterator[np.ndarray]:
        info = ladle.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = list(range(worker, self.size, workers))
        if worker == 0 and workers > 1:
            mine = mine[: len(mine) // 2]
        for index in mine[position:]:
            yield np.array([index, ladle.sample_rng().integers(1000)])


class PlainStream(ladle.IterableDataset[int]):
    def __iter__(self) -> Iterator[int]:
        return iter(range(10))


def loader_of(dataset: Any, **kwargs: Any) -> Factory:
    return lambda: ladle.DataLoader(dataset, **kwargs)


# -- every sampler, every kind of randomness ---------------------------------------------------


def _weighted(**_: Any) -> dict[str, Any]:
    return {"sampler": ladle.WeightedRandomSampler([1.0, 3.0] * 6, 9, seed=2), "batch_size": 2}


CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "shuffle": lambda: {"batch_size": 3, "shuffle": True, "seed": 1},
    "shuffle, no seed": lambda: {"batch_size": 3, "shuffle": True},
    "sequential, drop_last": lambda: {"batch_size": 5, "drop_last": True, "seed": 1},
    "batch_size=None": lambda: {"batch_size": None, "shuffle": True, "seed": 3},
    "replacement": lambda: {
        "sampler": ladle.RandomSampler(range(12), True, 17, seed=4),
        "batch_size": 4,
    },
    "subset": lambda: {
        "sampler": ladle.SubsetRandomSampler([1, 4, 5, 9, 11], seed=4),
        "batch_size": 2,
    },
    "weighted": _weighted,
    "distributed": lambda: {
        "sampler": ladle.DistributedSampler(range(12), 3, 2, seed=5),
        "batch_size": 3,
    },
    "batch_sampler": lambda: {
        "batch_sampler": ladle.BatchSampler(ladle.RandomSampler(range(12), seed=2), 5, False)
    },
    "list batch_sampler": lambda: {"batch_sampler": [[0, 1], [7, 3, 2], [11], [4, 4]]},
    "list sampler": lambda: {"sampler": [3, 1, 4, 1, 5, 9, 2, 6], "batch_size": 3},
    "numpy generator": lambda: {
        "batch_size": 5,
        "shuffle": True,
        "generator": np.random.default_rng(3),
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_sampler_resumes_exactly(name: str) -> None:
    def make(**extra: Any) -> Factory:
        return lambda: ladle.DataLoader(Draws(12), **CONFIGS[name](), **extra)

    assert_resumes(make())
    assert_resumes(make(), resume_with=make(num_workers=2, worker_type="thread"))


def test_torch_generator_resumes_exactly() -> None:
    torch = pytest.importorskip("torch")

    def make() -> ladle.DataLoader:
        generator = torch.Generator().manual_seed(5)
        return ladle.DataLoader(Draws(10), batch_size=3, shuffle=True, generator=generator)

    assert_resumes(make)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((2, "process"), (0, "process")),
        ((0, "process"), (3, "process")),
        ((2, "thread"), (1, "process")),
    ],
)
def test_resume_across_worker_counts_and_types(
    before: tuple[int, str], after: tuple[int, str]
) -> None:
    def make(workers: int, kind: str) -> Factory:
        return lambda: ladle.DataLoader(
            Draws(14), batch_size=4, shuffle=True, seed=9, num_workers=workers, worker_type=kind
        )

    assert_resumes(make(*before), resume_with=make(*after))


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "batching", [{"batch_size": 3}, {"batch_size": 2, "drop_last": True}, {"batch_size": None}]
)
def test_iterable_dataset_resumes_through_iter_from(workers: int, batching: dict[str, Any]) -> None:
    kind = "thread" if workers == 3 else "process"
    same_streams = 1 - workers if workers < 2 else workers  # 0 and 1 workers: one stream
    assert_resumes(
        loader_of(Stream(13), num_workers=workers, worker_type=kind, seed=4, **batching),
        resume_with=loader_of(Stream(13), num_workers=same_streams, seed=4, **batching),
    )


def test_iterable_without_the_protocol_saves_only_between_epochs() -> None:
    loader = ladle.DataLoader(PlainStream(), batch_size=4)
    assert loader.state_dict()["streams"] == [0]
    iterator = iter(loader)
    next(iterator)
    with pytest.raises(TypeError, match=r"PlainStream is an IterableDataset without the resume"):
        loader.state_dict()
    list(iterator)
    state = loader.state_dict()
    assert state["epoch"] == 1
    resumed = ladle.DataLoader(PlainStream(), batch_size=4)
    resumed.load_state_dict(state)
    assert [batch.tolist() for batch in resumed] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_iterable_stream_count_must_match() -> None:
    saved = ladle.DataLoader(Stream(8), batch_size=2, num_workers=2, worker_type="thread")
    state = saved.state_dict()
    with pytest.raises(ValueError, match=r"streams=2, but this loader has streams=3"):
        ladle.DataLoader(Stream(8), batch_size=2, num_workers=3).load_state_dict(state)


# -- the property: head + resumed tail == uninterrupted ---------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size=st.integers(1, 30),
    batch_size=st.integers(1, 7),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
    before=st.sampled_from([(0, "thread"), (1, "thread"), (2, "thread"), (2, "process")]),
    after=st.sampled_from([(0, "thread"), (1, "process"), (3, "thread")]),
    cut=st.integers(0, 20),
)
def test_head_plus_resumed_tail_equals_uninterrupted(
    size: int,
    batch_size: int,
    drop_last: bool,
    shuffle: bool,
    before: tuple[int, str],
    after: tuple[int, str],
    cut: int,
) -> None:
    def make(workers: int, kind: str) -> ladle.DataLoader:
        return ladle.DataLoader(
            Draws(size),
            batch_size=batch_size,
            drop_last=drop_last,
            shuffle=shuffle,
            seed=11,
            num_workers=workers,
            worker_type=kind,
        )

    reference = make(0, "thread")
    whole = [batch for _ in range(2) for batch in reference]
    cut = min(cut, len(whole))
    interrupted = make(*before)
    head: list[Any] = []
    while len(head) < cut:  # a pass that runs out moves on to the next epoch
        head.extend(islice(iter(interrupted), cut - len(head)))
    state = json.loads(json.dumps(interrupted.state_dict()))
    interrupted.close()
    resumed = make(*after)
    resumed.load_state_dict(state)
    tail: list[Any] = []
    for _ in range(2 - state["epoch"]):
        tail.extend(resumed)
    resumed.close()
    assert len(head) + len(tail) == len(whole)
    for i, (got, expected) in enumerate(zip(head + tail, whole, strict=True)):
        assert_batches_equal(got, expected, f"batch {i}")


# -- across processes ---------------------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import ladle

    class Draws(ladle.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, index):
            return np.array([index, ladle.sample_rng().integers(10**9)])

    workers, cut = int(sys.argv[1]), int(sys.argv[2])
    state = json.loads(sys.stdin.read() or "null")
    loader = ladle.DataLoader(Draws(), batch_size=3, shuffle=True, seed=21, num_workers=workers)
    if state is not None:
        loader.load_state_dict(state)
    iterator = iter(loader)
    batches = [next(iterator).tolist() for _ in range(cut)]
    rest = [] if cut else [batch.tolist() for batch in iterator]
    if not cut:
        rest += [batch.tolist() for batch in loader]
    print(json.dumps({"batches": batches + rest, "state": loader.state_dict()}))
    """
)


def _run(workers: int, cut: int, state: Any = None) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(workers), str(cut)],
        input=json.dumps(state),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_state_saved_in_one_process_resumes_in_another() -> None:
    whole = _run(0, 0)["batches"]  # two epochs, uninterrupted
    head = _run(2, 4)  # four batches with two workers, then the state
    tail = _run(1, 0, head["state"])["batches"]  # a new process, one worker
    assert head["batches"] + tail == whole


# -- what a state is -------------------------------------------------------------------------------


def test_state_is_small_and_json() -> None:
    big = ladle.DataLoader(range(10**7), batch_size=64, shuffle=True, seed=0)
    small = ladle.DataLoader(range(10), batch_size=64, shuffle=True, seed=0)
    for loader in (big, small):
        iterator = iter(loader)
        next(iterator)
        state = loader.state_dict()
        assert json.loads(json.dumps(state)) == state
        assert len(json.dumps(state)) < 600
        assert state["epoch"] == 0
        assert state["batches"] == 1


def test_resume_does_not_read_skipped_samples() -> None:
    loader = ladle.DataLoader(Counted(100), batch_size=10, shuffle=True, seed=1)
    iterator = iter(loader)
    for _ in range(7):
        next(iterator)
    state = loader.state_dict()
    dataset = Counted(100)
    resumed = ladle.DataLoader(dataset, batch_size=10, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 3
    assert len(dataset.read) == 30


def test_state_between_epochs_and_before_any() -> None:
    loader = ladle.DataLoader(Draws(6), batch_size=4, shuffle=True, seed=0)
    assert loader.state_dict()["epoch"] == 0
    list(loader)
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 0)
    resumed = ladle.DataLoader(Draws(6), batch_size=4, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # pending, before iterating
    assert_batches_equal(list(resumed), list(loader))


def test_an_error_in_a_batch_counts_as_consumed() -> None:
    class Failing(ladle.Dataset[int]):
        def __len__(self) -> int:
            return 9

        def __getitem__(self, index: int) -> int:
            if index == 4:
                raise KeyError(index)
            return index

    loader = ladle.DataLoader(Failing(), batch_size=3)
    iterator = iter(loader)
    next(iterator)
    with pytest.raises(KeyError):
        next(iterator)
    state = loader.state_dict()
    assert state["batches"] == 2
    resumed = ladle.DataLoader(Failing(), batch_size=3)
    resumed.load_state_dict(state)
    assert [batch.tolist() for batch in resumed] == [[6, 7, 8]]


def test_set_epoch_of_the_resumed_epoch_keeps_the_position() -> None:
    def make() -> ladle.DataLoader:
        sampler = ladle.DistributedSampler(range(20), 2, 0, seed=3)
        return ladle.DataLoader(Draws(20), batch_size=2, sampler=sampler, seed=8)

    reference = make()
    reference.sampler.set_epoch(4)  # type: ignore[union-attr]
    whole = list(reference)
    loader = make()
    loader.sampler.set_epoch(4)  # type: ignore[union-attr]
    iterator = iter(loader)
    head = [next(iterator) for _ in range(2)]
    resumed = make()
    resumed.load_state_dict(loader.state_dict())
    resumed.sampler.set_epoch(4)  # type: ignore[union-attr]  # what a training loop does
    assert_batches_equal(head + list(resumed), whole)
    resumed.sampler.set_epoch(5)  # type: ignore[union-attr]
    assert len(list(resumed)) == 5


def test_out_of_order_consumption_is_recorded_exactly() -> None:
    progress = Progress(PassStart(0, 0, 0, None, None, None), None, iterable=False)
    for number in (1, 0, 3, 4):
        progress.consume(number)
    assert (progress.consumed, progress.beyond) == (2, {3, 4})
    progress.consume(2)
    assert (progress.consumed, progress.beyond) == (5, set())


def test_resume_after_out_of_order_batches_loses_and_repeats_nothing() -> None:
    state = {
        **ladle.DataLoader(range(30), batch_size=3).state_dict(),
        "batches": 2,
        "beyond": [3, 5],
    }
    loader = ladle.DataLoader(range(30), batch_size=3)
    loader.load_state_dict(state)
    iterator = iter(loader)
    firsts = [int(next(iterator)[0]) for _ in range(3)]
    assert firsts == [6, 12, 18]  # batches 2, 4 and 6: 3 and 5 were consumed before the cut
    assert loader.state_dict()["batches"] == 7
    assert loader.state_dict()["beyond"] == []


def test_in_order_false_with_workers_covers_every_batch_once() -> None:
    def make() -> ladle.DataLoader:
        return ladle.DataLoader(
            range(40), batch_size=4, num_workers=2, in_order=False, worker_type="thread"
        )

    loader = make()
    iterator = iter(loader)
    head = [tuple(next(iterator).tolist()) for _ in range(5)]
    state = loader.state_dict()
    loader.close()
    resumed = make()
    resumed.load_state_dict(state)
    tail = [tuple(batch.tolist()) for batch in resumed]
    assert sorted(head + tail) == [tuple(range(i, i + 4)) for i in range(0, 40, 4)]


# -- mismatches ---------------------------------------------------------------------------------


def _saved(**kwargs: Any) -> dict[str, Any]:
    loader = ladle.DataLoader(Draws(10), **{"batch_size": 2, "shuffle": True, "seed": 1, **kwargs})
    iterator = iter(loader)
    next(iterator)
    return loader.state_dict()


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"dataset": Draws(11)}, r"dataset_length=10, but this loader has dataset_length=11"),
        ({"batch_size": 3}, r"batch_size=2, but this loader has batch_size=3"),
        ({"seed": 2}, r"made with seed=1, but this DataLoader has seed=2"),
        ({"shuffle": False}, r"sampler='BatchSampler\(RandomSampler\)', but this loader has "),
        ({"drop_last": True}, r"drop_last=False, but this loader has drop_last=True"),
        (
            {"seed": None, "generator": np.random.default_rng(0)},
            r"DataLoader drawing from no generator, and this one differs",
        ),
    ],
)
def test_a_state_from_another_stream_is_refused(other: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"batch_size": 2, "shuffle": True, "seed": 1}
    kwargs.update(other)
    dataset = kwargs.pop("dataset", Draws(10))
    loader = ladle.DataLoader(dataset, **kwargs)
    with pytest.raises(ValueError, match=message):
        loader.load_state_dict(_saved())


def test_sampler_kind_mismatch_is_refused() -> None:
    state = _saved()
    loader = ladle.DataLoader(Draws(10), batch_size=2, sampler=ladle.SequentialSampler(range(10)))
    with pytest.raises(ValueError, match=r"sampler=.*RandomSampler.*SequentialSampler"):
        loader.load_state_dict(state)


def test_an_unseeded_loader_adopts_the_saved_seed() -> None:
    state = _saved()
    loader = ladle.DataLoader(Draws(10), batch_size=2, shuffle=True)
    loader.load_state_dict(state)
    reference = ladle.DataLoader(Draws(10), batch_size=2, shuffle=True, seed=1)
    assert_batches_equal(list(loader), list(reference)[1:])


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"epoch": 0}, r"format='ladle.DataLoader/1', but got None"),
        ([1, 2], r"but got 'list'"),
        ({"format": "ladle.DataLoader/1", "epoch": 0}, r"lacks \['batches'"),
    ],
)
def test_malformed_states_are_refused(state: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ladle.DataLoader(range(4)).load_state_dict(state)


def test_a_custom_sampler_without_state_cannot_save() -> None:
    class Mine(ladle.Sampler[int]):
        def __iter__(self) -> Iterator[int]:
            return iter([2, 0, 1])

        def __len__(self) -> int:
            return 3

    loader = ladle.DataLoader(range(3), sampler=Mine())
    list(loader)
    with pytest.raises(TypeError, match=r"Mine cannot report its position"):
        loader.state_dict()


def test_a_sampler_seeded_otherwise_is_refused_at_load() -> None:
    def make(seed: int) -> ladle.DataLoader:
        return ladle.DataLoader(
            Draws(10), batch_size=2, sampler=ladle.RandomSampler(range(10), seed=seed)
        )

    saved = make(1)
    next(iter(saved))
    with pytest.raises(ValueError, match=r"RandomSampler with seed=1, but this one has seed=2"):
        make(2).load_state_dict(saved.state_dict())


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"batches": 10**9}, "batches=1000000000"),
        ({"batches": 11}, "batches=11"),
        ({"batches": -1}, "state['batches']"),
        ({"beyond": [0]}, "beyond=[0]"),
        ({"beyond": [40]}, "beyond=[40]"),
        ({"sampler": {"epoch": 0, "offset": 10**6, "seed": 4}}, "offset lies past the end"),
        ({"sampler": {"epoch": 0, "offset": 38, "seed": 4}, "batches": 2}, "past the end"),
        ({"sampler": {"epoch": -1, "offset": 0, "seed": 4}}, "state['sampler']['epoch']"),
        ({"sampler": {"offset": 0, "seed": 4}}, "lacks 'epoch'"),
        ({"epoch": -2}, "state['epoch']"),
    ],
)
def test_a_state_out_of_range_is_refused_naming_the_field(
    change: dict[str, Any], needle: str
) -> None:
    def make() -> ladle.DataLoader:
        return ladle.DataLoader(range(40), batch_size=4, shuffle=True, seed=4)

    state = {**make().state_dict(), **change}
    loader = make()
    with pytest.raises(ValueError, match=re.escape(needle)):
        loader.load_state_dict(state)
    assert len(list(loader)) == 10, "a refused state leaves the loader as it was"


def test_a_state_at_the_very_end_of_an_epoch_resumes_with_the_next() -> None:
    def make() -> ladle.DataLoader:
        return ladle.DataLoader(range(40), batch_size=4, shuffle=True, seed=4)

    loader = make()
    iterator = iter(loader)
    for _ in range(10):
        next(iterator)
    state = loader.state_dict()  # every batch consumed, StopIteration not seen yet
    assert state["batches"] == 10
    resumed = make()
    resumed.load_state_dict(state)
    assert list(resumed) == []
    reference = make()
    assert_batches_equal(list(resumed), [batch for _ in range(2) for batch in reference][10:])


def test_set_epoch_after_loading_another_epoch_starts_that_epoch() -> None:
    """A loop that calls ``sampler.set_epoch(e)`` at the top of each epoch, resumed from a
    state of epoch e - 1: set_epoch asks for epoch e from its start (as EpochSampler says), so
    that epoch is not lost to the loaded one; skipping unfinished batches is said aloud."""

    def make() -> ladle.DataLoader:
        return ladle.DataLoader(range(11), batch_size=6, shuffle=True, seed=4)

    reference = make()
    epochs = []
    for epoch in range(3):
        reference.sampler.set_epoch(epoch)
        epochs.append([batch.tolist() for batch in reference])
    finished = make()
    for _ in finished:
        state = json.loads(json.dumps(finished.state_dict()))  # after the last batch
    resumed = make()
    resumed.load_state_dict(state)
    for epoch in (1, 2):
        resumed.sampler.set_epoch(epoch)
        assert [batch.tolist() for batch in resumed] == epochs[epoch]

    cut = make()
    next(iter(cut))
    state = cut.state_dict()  # one batch of epoch 0 to go
    resumed = make()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(0)  # the same epoch: the resume stands
    assert [batch.tolist() for batch in resumed] == epochs[0][1:]
    resumed = make()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    with pytest.warns(UserWarning, match=r"resumes epoch 0 with 1 batches to go.*skipped"):
        assert [batch.tolist() for batch in resumed] == epochs[1]
    resumed.sampler.set_epoch(2)
    assert [batch.tolist() for batch in resumed] == epochs[2]


def test_a_state_loaded_into_a_loader_that_already_ran_continues_that_stream() -> None:
    """The passes after the resumed one are numbered from the state, not from the passes the
    loader ran before it: their sample_rng() draws are the uninterrupted run's."""

    class Draws(ladle.Dataset[np.ndarray]):
        def __len__(self) -> int:
            return 12

        def __getitem__(self, index: int) -> np.ndarray:
            return np.array([index, ladle.sample_rng().integers(1 << 30)])

    def make() -> ladle.DataLoader:
        return ladle.DataLoader(Draws(), batch_size=4, shuffle=True, seed=9)

    reference = make()
    epochs = [[b.tolist() for b in reference] for _ in range(2)]
    cut = make()
    next(iter(cut))
    state = cut.state_dict()
    used = make()
    for _ in range(3):
        list(used)  # three passes before the state is loaded
    used.load_state_dict(state)
    assert [b.tolist() for b in used] == epochs[0][1:]
    assert [b.tolist() for b in used] == epochs[1]
