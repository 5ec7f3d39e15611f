"""Samplers: property tests for the invariants every epoch must keep, and positions."""

from collections import Counter
from itertools import islice

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladle import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

sizes = st.integers(1, 500)
seeds = st.integers(0, 2**63 - 1)


@given(sizes, seeds)
def test_random_sampler_epochs_are_permutations(n: int, seed: int) -> None:
    sampler = RandomSampler(range(n), seed=seed)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(n))
    assert all(isinstance(i, int) for i in first)
    if n > 5:
        assert first != second, "each epoch reshuffles"


@given(sizes, seeds, st.integers(0, 20))
def test_epoch_order_is_a_pure_function_of_seed_and_epoch(n: int, seed: int, epoch: int) -> None:
    a, b = RandomSampler(range(n), seed=seed), RandomSampler(range(n), seed=seed)
    a.set_epoch(epoch)
    for _ in range(epoch):  # b reaches the same epoch by iterating
        list(b)
    assert list(a) == list(b)


@given(sizes, st.integers(1, 1200), st.booleans(), seeds)
def test_random_sampler_num_samples(n: int, count: int, replacement: bool, seed: int) -> None:
    drawn = list(RandomSampler(range(n), replacement, num_samples=count, seed=seed))
    assert len(drawn) == count
    assert all(0 <= i < n for i in drawn)
    if not replacement:  # full permutations, then a prefix of one more
        counts = Counter(drawn)
        assert max(counts.values()) - min(counts.values()) <= 1 or len(counts) < n


def test_random_sampler_generators_and_entropy() -> None:
    import torch

    a = list(RandomSampler(range(50), generator=torch.Generator().manual_seed(1)))
    b = list(RandomSampler(range(50), generator=torch.Generator().manual_seed(1)))
    assert a == b
    g = np.random.default_rng(5)
    sampler = RandomSampler(range(50), generator=g)
    assert list(sampler) != list(sampler)
    assert list(RandomSampler(range(50))) != list(RandomSampler(range(50)))
    with pytest.raises(ValueError, match="seed or generator, not both"):
        RandomSampler(range(5), generator=g, seed=1)
    with pytest.raises(TypeError, match="generator should be"):
        RandomSampler(range(5), generator=7)
    with pytest.raises(ValueError, match="num_samples=0"):
        RandomSampler([])


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=200), seeds)
def test_subset_random_sampler_permutes_the_given_indices(indices: list[int], seed: int) -> None:
    assert sorted(SubsetRandomSampler(indices, seed=seed)) == sorted(indices)


@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=50).filter(lambda w: sum(w) > 0), seeds)
def test_weighted_sampler_without_replacement_draws_distinct(weights: list[float], seed: int):
    nonzero = int(np.count_nonzero(np.asarray(weights) / sum(weights)))
    drawn = list(WeightedRandomSampler(weights, nonzero, replacement=False, seed=seed))
    assert len(set(drawn)) == nonzero
    assert all(weights[i] > 0 for i in drawn)


def test_weighted_sampler_follows_the_weights() -> None:
    drawn = list(WeightedRandomSampler([0.0, 1.0, 3.0], 4000, seed=0))
    counts = Counter(drawn)
    assert counts[0] == 0
    assert 2.6 < counts[2] / counts[1] < 3.4
    with pytest.raises(ValueError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="exceeds the 1 non-zero weights"):
        WeightedRandomSampler([0.0, 1.0], 2, replacement=False)


@given(st.integers(0, 300), st.integers(1, 40), st.booleans())
def test_batch_sampler_partitions_in_order(n: int, batch_size: int, drop_last: bool) -> None:
    batches = list(BatchSampler(SequentialSampler(range(n)), batch_size, drop_last))
    flat = [i for b in batches for i in b]
    assert flat == list(range(len(flat)))
    assert all(len(b) == batch_size for b in batches[:-1])
    assert len(batches) == len(BatchSampler(SequentialSampler(range(n)), batch_size, drop_last))
    if drop_last:
        assert len(flat) == n - n % batch_size
    else:
        assert len(flat) == n
    generic = list(BatchSampler(iter(range(n)), batch_size, drop_last))
    assert generic == batches


@given(st.integers(0, 300), st.integers(1, 9), st.booleans(), st.booleans(), seeds)
def test_distributed_partitions(n: int, replicas: int, shuffle: bool, drop: bool, seed: int):
    ranks = [
        DistributedSampler(range(n), replicas, r, shuffle=shuffle, seed=seed, drop_last=drop)
        for r in range(replicas)
    ]
    parts = [list(s) for s in ranks]
    assert len({len(p) for p in parts}) <= 1
    assert all(len(p) == len(s) for p, s in zip(parts, ranks, strict=True))
    flat = [i for p in parts for i in p]
    if drop:
        # the tail that does not divide evenly is dropped; the rest is covered once
        assert len(flat) == n - n % replicas and len(set(flat)) == len(flat)
    else:
        # torch's padding rule: every index once, then repeats of the start to even it out
        total = -(-n // replicas) * replicas
        assert len(flat) == total
        assert set(flat) == set(range(n))
        counts = Counter(flat)
        assert sum(counts.values()) - n == total - n
    if not drop:
        return
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])


@given(st.integers(20, 300), st.integers(1, 4), seeds)
def test_distributed_set_epoch_reshuffles(n: int, replicas: int, seed: int) -> None:
    sampler = DistributedSampler(range(n), replicas, 0, seed=seed)
    first, again = list(sampler), list(sampler)
    assert first == again, "no set_epoch: the same order, as in torch"
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_distributed_needs_world_size_without_process_group() -> None:
    with pytest.raises(ValueError, match="pass num_replicas= and rank="):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match=r"interval \[0, 1\]"):
        DistributedSampler(range(4), 2, 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SequentialSampler(range(23)),
        lambda: RandomSampler(range(23), seed=4),
        lambda: RandomSampler(range(23), True, 30, seed=4),
        lambda: SubsetRandomSampler(list(range(0, 46, 2)), seed=4),
        lambda: WeightedRandomSampler([1.0] * 23, 23, replacement=False, seed=4),
        lambda: DistributedSampler(range(23), 3, 1, seed=4),
    ],
)
@pytest.mark.parametrize("cut", [0, 1, 7, 22])
def test_state_dict_resumes_mid_epoch(make, cut: int) -> None:  # type: ignore[no-untyped-def]
    reference = make()
    list(reference)  # resume must also work past the first epoch
    whole = list(reference)
    interrupted = make()
    list(interrupted)
    head = list(islice(iter(interrupted), cut))
    state = interrupted.state_dict()
    assert {"epoch", "offset"} <= set(state) <= {"epoch", "offset", "seed"}
    resumed = make()
    resumed.load_state_dict(state)
    if cut < len(whole):
        assert head + list(resumed) == whole
    else:  # the cut fell at the epoch's end: the resumed sampler goes on as the reference would
        assert head == whole
        assert list(resumed) == list(reference)


def test_state_after_an_epoch_points_at_the_next() -> None:
    sampler = RandomSampler(range(5), seed=0)
    list(sampler)
    assert sampler.state_dict() == {"epoch": 1, "offset": 0, "seed": 0}
    it = iter(sampler)
    next(it)
    assert sampler.state_dict() == {"epoch": 1, "offset": 1, "seed": 0}
    list(it)
    assert sampler.state_dict() == {"epoch": 2, "offset": 0, "seed": 0}


def test_a_new_iteration_after_break_starts_a_new_epoch() -> None:
    sampler = RandomSampler(range(50), seed=0)
    next(iter(sampler))  # epoch 0, abandoned after one index
    epoch_one = RandomSampler(range(50), seed=0)
    epoch_one.set_epoch(1)
    assert list(sampler) == list(epoch_one)


def test_batch_sampler_state_goes_through_to_the_sampler() -> None:
    batches = BatchSampler(RandomSampler(range(10), seed=2), 3, False)
    it = iter(batches)
    head = [next(it), next(it)]
    state = batches.state_dict()
    fresh = BatchSampler(RandomSampler(range(10), seed=2), 3, False)
    fresh.load_state_dict(state)
    assert head + list(fresh) == list(BatchSampler(RandomSampler(range(10), seed=2), 3, False))
    assert BatchSampler([0, 1, 2], 2, False).state_dict() == {}  # a fixed sequence
    with pytest.raises(TypeError, match="cannot report its position"):
        BatchSampler(iter([0, 1, 2]), 2, False).state_dict()
