"""MixingSampler: the mixture follows the weights, the exhaustion policies are exact, epochs are
seeded, and the loader resumes it exactly."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from resume_support import taken_and_resumed

import ladle
from ladle.testing import assert_batches_equal, assert_resumes

SIZES = [100, 300, 50]
WEIGHTS = [0.5, 0.3, 0.2]


def sources(sizes: list[int] = SIZES) -> list[np.ndarray]:
    """Source s holds the values s * 1000 + (0 .. size-1)."""
    return [np.arange(size) + 1000 * s for s, size in enumerate(sizes)]


def per_source(sampler: ladle.MixingSampler, order: Any) -> list[list[int]]:
    """The indices of ``order`` within each source, in order."""
    split: list[list[int]] = [[] for _ in sampler.sizes]
    for index in order:
        source, inner = sampler.source_of(index)
        split[source].append(inner)
    return split


# -- the mixture ----------------------------------------------------------------------------------


def test_counts_follow_the_weights_to_one_sample() -> None:
    sampler = ladle.MixingSampler(SIZES, [5, 3, 2], num_samples=1001, seed=0)
    assert sampler.counts == (501, 300, 200)  # 500.5 + 300.3 + 200.2: the largest remainder
    assert sum(sampler.counts) == len(sampler) == len(list(sampler)) == 1001
    for weights in ([1, 1, 1], [0.7, 0.2, 0.1], [1e-3, 1, 2]):
        mixed = ladle.MixingSampler(SIZES, weights, num_samples=997, seed=1)
        p = np.asarray(weights) / np.sum(weights)
        assert np.all(np.abs(np.array(mixed.counts) - 997 * p) < 1)
        assert mixed.fractions == pytest.approx(tuple(np.array(mixed.counts) / 997))


def test_an_epoch_holds_the_counts_and_any_stretch_of_it_the_mixture() -> None:
    sampler = ladle.MixingSampler([10_000] * 3, WEIGHTS, num_samples=20_000, seed=3)
    order = np.fromiter(sampler, dtype=np.int64)
    drawn = np.bincount(order // 10_000, minlength=3)
    assert drawn.tolist() == list(sampler.counts) == [10_000, 6_000, 4_000]
    # the sources are spread over the epoch: each stretch of 2,000 mixes them as the weights
    # say, within 5 standard deviations of the hypergeometric count (a fixed seed: no flakes)
    for start in range(0, 20_000, 2_000):
        stretch = np.bincount(order[start : start + 2_000] // 10_000, minlength=3)
        sd = np.sqrt(2_000 * np.array(WEIGHTS) * (1 - np.array(WEIGHTS)))
        assert np.all(np.abs(stretch - 2_000 * np.array(WEIGHTS)) < 5 * sd)
    assert sampler.epoch_counts(0) == {"drawn": drawn.tolist(), "distinct": drawn.tolist()}


def test_a_zero_weight_source_is_never_drawn() -> None:
    sampler = ladle.MixingSampler(SIZES, [1, 0, 1], seed=0)
    assert sampler.counts == (50, 0, 50)
    assert per_source(sampler, sampler)[1] == []


# -- when a source runs out -----------------------------------------------------------------------


def test_stop_on_first_ends_the_epoch_as_the_first_source_runs_out() -> None:
    sampler = ladle.MixingSampler(SIZES, WEIGHTS, seed=0)  # stop_on="first" by default
    # source 0 runs out first: 100 samples at weight 0.5 last 200 draws
    assert len(sampler) == 200 and sampler.counts == (100, 60, 40) and sampler.stop_on == "first"
    seen = []
    for _ in range(3):
        split = per_source(sampler, sampler)
        assert [len(s) for s in split] == [100, 60, 40]
        assert all(len(set(s)) == len(s) for s in split)  # no repeats within an epoch
        assert sorted(split[0]) == list(range(100))  # the limiting source is given whole
        seen.append(split[1])
    assert seen[0] != seen[1]  # the larger sources give another part of themselves each epoch
    assert sampler.passes == (1.0, 0.2, 0.8)


def test_stop_on_all_cycles_the_sources_until_each_ran_out() -> None:
    sampler = ladle.MixingSampler(SIZES, WEIGHTS, stop_on="all", seed=0)
    # source 1 lasts longest: 300 samples at weight 0.3 last 1000 draws
    assert len(sampler) == 1000 and sampler.counts == (500, 300, 200)
    split = per_source(sampler, sampler)
    for size, inner in zip(SIZES, split, strict=True):
        # every sample given, and each time round the source is a fresh permutation
        rounds = [inner[i : i + size] for i in range(0, len(inner), size)]
        assert all(sorted(r) == list(range(size)) for r in rounds)
    assert split[0][:100] != split[0][100:200]  # re-shuffled, not replayed
    assert sampler.epoch_counts() == {"drawn": [500, 300, 200], "distinct": [100, 300, 50]}


def test_num_samples_cycles_a_source_whenever_it_runs_out() -> None:
    sampler = ladle.MixingSampler([3, 5], [1, 1], num_samples=13, seed=2)
    assert len(sampler) == 13 and sampler.counts == (7, 6)
    small, large = per_source(sampler, sampler)
    assert sorted(small[:3]) == sorted(small[3:6]) == [0, 1, 2] and small[6] in range(3)
    assert sorted(large[:5]) == list(range(5))
    assert sampler.passes == (7 / 3, 6 / 5)


# -- seeds and epochs -----------------------------------------------------------------------------


def test_same_seed_same_epochs_and_epochs_differ() -> None:
    one, two = (ladle.MixingSampler(SIZES, WEIGHTS, seed=4) for _ in range(2))
    first = [list(one) for _ in range(3)]
    assert first == [list(two) for _ in range(3)]
    assert first[0] != first[1] != first[2]
    assert list(ladle.MixingSampler(SIZES, WEIGHTS, seed=5)) != first[0]
    two.set_epoch(1)
    assert list(two) == first[1]
    unseeded = ladle.MixingSampler(SIZES, WEIGHTS)
    assert list(unseeded) != list(ladle.MixingSampler(SIZES, WEIGHTS))


def test_sources_may_be_datasets_and_index_their_concat_dataset() -> None:
    data = sources()
    sampler = ladle.MixingSampler(data, WEIGHTS, seed=0)
    concat = ladle.ConcatDataset(data)
    for index in list(sampler)[:50]:
        source, inner = sampler.source_of(index)
        assert concat[index] == data[source][inner] == 1000 * source + inner
    assert "counts=[100, 60, 40], seed=0" in repr(sampler)


# -- the loader -----------------------------------------------------------------------------------


def loader(seed: int | None = 7, **options: Any) -> ladle.DataLoader:
    data = sources()
    sampler = ladle.MixingSampler(data, WEIGHTS, seed=seed)
    return ladle.DataLoader(ladle.ConcatDataset(data), batch_size=16, sampler=sampler, **options)


def test_batches_mix_the_sources() -> None:
    batches = list(loader())
    values = np.concatenate(batches)
    assert len(batches) == 13 and len(values) == 200
    assert np.bincount(values // 1000).tolist() == [100, 60, 40]


def test_resume_mid_epoch_gives_the_remaining_batches() -> None:
    first = loader()
    epochs = [list(first), list(first), list(first)]
    cut = loader()
    list(cut)
    iterator = iter(cut)
    taken = [next(iterator) for _ in range(5)]
    state = json.loads(json.dumps(cut.state_dict()))
    del iterator
    resumed = loader()  # a new loader, as in a new process
    resumed.load_state_dict(state)
    assert_batches_equal(taken + list(resumed), epochs[1])
    assert_batches_equal(list(resumed), epochs[2])
    unseeded = loader(seed=None)
    iterator = iter(unseeded)
    next(iterator)
    state = unseeded.state_dict()
    again = loader(seed=None)
    again.load_state_dict(state)  # adopts the fresh seed the state carries
    assert_batches_equal(list(again), list(iterator))


def test_resume_with_two_process_workers() -> None:
    expected = list(loader())
    resumed = taken_and_resumed(lambda: loader(num_workers=2, timeout=60), cut=4)
    assert_batches_equal(resumed, expected)


def test_resumes_at_every_cut() -> None:
    def small() -> ladle.DataLoader:
        data = sources([6, 10, 4])
        sampler = ladle.MixingSampler(data, [2, 1, 1], stop_on="all", seed=1)
        return ladle.DataLoader(ladle.ConcatDataset(data), batch_size=4, sampler=sampler)

    assert_resumes(small)


# -- bad arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"sources": []}, TypeError, "sources should be a non-empty list of datasets"),
        ({"sources": "abc"}, TypeError, "pass e.g. MixingSampler([books, web], weights="),
        ({"sources": [3, "x"]}, TypeError, "sources[1] should be a map-style dataset"),
        ({"sources": [3, 0]}, ValueError, "sources[1] is empty (size 0)"),
        ({"weights": [1, 2]}, ValueError, "weights should hold one number per source (3)"),
        ({"weights": [1, -1, 1]}, ValueError, "finite and non-negative with a positive sum"),
        ({"weights": [0, 0, 0]}, ValueError, "they need not sum to 1"),
        ({"weights": "abc"}, ValueError, "weights should hold one number per source"),
        ({"stop_on": "last"}, ValueError, "stop_on should be one of 'first', 'all'"),
        ({"num_samples": 0}, ValueError, "num_samples should be a positive integer value"),
        ({"num_samples": 5, "stop_on": "all"}, ValueError, "drop stop_on='all' or num_samples"),
        ({"seed": -1}, ValueError, "seed should be a non-negative int"),
    ],
)
def test_bad_arguments_are_refused_naming_the_fix(
    arguments: dict[str, Any], error: type, message: str
) -> None:
    given = {"sources": SIZES, "weights": WEIGHTS, **arguments}
    with pytest.raises(error, match=re.escape(message)):
        ladle.MixingSampler(given.pop("sources"), given.pop("weights"), **given)


@pytest.mark.parametrize(
    ("sizes", "weights", "first", "every"),
    [
        ([3, 7], [1, 1], (3, 3), (7, 7)),
        ([10, 1000], [0.01, 0.99], (10, 990), (10, 1001)),
        ([100, 300, 50], [0.1, 0.2, 0.7], (7, 14, 50), (150, 300, 1050)),
        # 3000 / 0.3 and 1000 / 0.1 are 9999.999... in floating point
        ([10_000, 3_000, 1_000], [0.6, 0.3, 0.1], (6000, 3000, 1000), (10_000, 5000, 1667)),
    ],
)
def test_epoch_lengths_follow_the_limiting_source(
    sizes: list[int], weights: list[float], first: tuple[int, ...], every: tuple[int, ...]
) -> None:
    """ "first": floor(min size / p) draws, the first source to run out given whole; "all":
    the fewest draws whose counts cover every source."""
    assert ladle.MixingSampler(sizes, weights, seed=0).counts == first
    assert ladle.MixingSampler(sizes, weights, stop_on="all", seed=0).counts == every
