"""BucketBatchSampler: batches of similar length, every index once, bounded padding, seeded
epochs, exact len(), and exact resume through DataLoader.state_dict()."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np
import pytest
from resume_support import taken_and_resumed

import ladle
from ladle.testing import assert_batches_equal, assert_resumes


def skewed_lengths(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Text-like lengths: log-normal, most short, a long tail (1 to 1000 tokens)."""
    rng = np.random.default_rng(seed)
    return np.minimum(rng.lognormal(3.0, 1.0, n).astype(np.int64) + 1, 1000)


class Texts(ladle.Dataset[dict[str, Any]]):
    """Sample i: its index and ``lengths[i]`` token ids."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        length = int(self.lengths[index])
        return {"index": index, "ids": np.arange(1, length + 1, dtype=np.int32)}


def as_lists(batches: Any) -> list[list[int]]:
    return [list(map(int, batch)) for batch in batches]


# -- the batches of an epoch ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 31, 32, 100, 1000])
@pytest.mark.parametrize("pool", [1, 3, 100])
def test_every_index_exactly_once_in_full_batches_but_the_last(n: int, pool: int) -> None:
    sampler = ladle.BucketBatchSampler(skewed_lengths(n), 32, pool=pool, seed=1)
    for _ in range(2):  # two epochs
        batches = as_lists(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(n))
        assert [len(b) for b in batches[:-1]] == [32] * (len(batches) - 1)
        assert len(batches[-1]) == (n % 32 or 32)
        assert len(batches) == len(sampler) == -(-n // 32)


@pytest.mark.parametrize("n", [31, 32, 100, 1000])
def test_drop_last_drops_only_the_short_batch(n: int) -> None:
    sampler = ladle.BucketBatchSampler(skewed_lengths(n), 32, seed=1, drop_last=True)
    batches = as_lists(sampler)
    indices = [i for batch in batches for i in batch]
    assert all(len(b) == 32 for b in batches)
    assert len(batches) == len(sampler) == n // 32
    assert len(set(indices)) == len(indices) == n // 32 * 32


def test_drop_last_drops_random_samples_not_the_longest() -> None:
    lengths = np.arange(1000)  # the index is the length
    dropped = []
    sampler = ladle.BucketBatchSampler(lengths, 64, pool=4, seed=0, drop_last=True)
    for _ in range(20):
        kept = {i for batch in sampler for i in batch}
        dropped += sorted(set(range(1000)) - kept)
    assert len(dropped) == 20 * (1000 % 64)
    assert 350 < np.mean(dropped) < 650  # a longest-first drop would average above 900


def test_batches_are_arrays_of_ints_as_batch_sampler_lists() -> None:
    sampler = ladle.BucketBatchSampler([3, 1, 2, 5, 4], 2, seed=0)
    batches = list(sampler)
    assert all(isinstance(b, list) and all(type(i) is int for i in b) for b in batches)
    assert isinstance(sampler, ladle.BatchSampler)


def test_one_pool_sorts_the_whole_epoch_into_contiguous_length_ranges() -> None:
    """With a pool as large as the epoch, the batches tile the sorted lengths: the least padding
    any batching into full batches can have."""
    lengths = skewed_lengths(640)
    sampler = ladle.BucketBatchSampler(lengths, 32, pool=20, seed=3)
    ranges = sorted((lengths[b].min(), lengths[b].max()) for b in sampler.epoch_batches())
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high <= low
    tiled = np.sort(lengths).reshape(-1, 32)
    best = ladle.padding_stats(np.sort(lengths), np.arange(640).reshape(-1, 32))
    assert sampler.padding_stats().padded == best.padded == int(tiled.max(1).sum() * 32)


# -- padding --------------------------------------------------------------------------------------


def test_padding_is_far_below_random_batching_on_skewed_lengths() -> None:
    lengths = skewed_lengths(2000)
    sampler = ladle.BucketBatchSampler(lengths, 32, pool=100, seed=0)
    bucketed, random = sampler.padding_stats(), sampler.random_padding_stats()
    print(f"\nbucketed: {bucketed}\nrandom:   {random}")
    # measured: 8.8% padding bucketed, 80.3% with random batches of 32
    assert bucketed.tokens == random.tokens == int(lengths.sum())
    assert bucketed.waste < 0.12
    assert random.waste > 0.7
    assert bucketed.padded < random.padded / 4
    # the report is what the batches hold
    assert sampler.padding_stats() == ladle.padding_stats(lengths, sampler)


def test_random_padding_is_that_of_unsorted_batches() -> None:
    lengths = skewed_lengths(500)
    sampler = ladle.BucketBatchSampler(lengths, 16, pool=1, seed=4)
    assert sampler.padding_stats() == sampler.random_padding_stats()
    plain = ladle.BatchSampler(ladle.RandomSampler(lengths, seed=9), 16, False)
    assert abs(ladle.padding_stats(lengths, plain).waste - sampler.padding_stats().waste) < 0.05


def test_larger_pools_pad_less() -> None:
    lengths = skewed_lengths(4096)
    waste = [
        ladle.BucketBatchSampler(lengths, 32, pool=pool, seed=0).padding_stats().waste
        for pool in (1, 4, 32, 128)
    ]
    assert waste == sorted(waste, reverse=True)
    assert waste[0] > 4 * waste[-1]


def test_padding_stats_counts_by_hand() -> None:
    stats = ladle.padding_stats([1, 4, 2, 2], [[0, 1], [2, 3]])
    assert (stats.batches, stats.samples, stats.tokens, stats.padded) == (2, 4, 9, 12)
    assert stats.padding == 3 and stats.waste == 0.25
    assert str(stats) == "2 batches, 4 samples: 9 tokens padded to 12 (25.0% padding)"
    floats = ladle.padding_stats(np.array([0.5, 1.5]), [np.array([0, 1])])
    assert floats.padded == 3.0 and floats.waste == pytest.approx(1 / 3)
    assert ladle.padding_stats([0, 0], [[0, 1]]).waste == 0.0


# -- seeds and epochs -----------------------------------------------------------------------------


def test_same_seed_same_epochs_and_epochs_differ() -> None:
    lengths = skewed_lengths(300)
    one = ladle.BucketBatchSampler(lengths, 8, pool=5, seed=7)
    two = ladle.BucketBatchSampler(lengths, 8, pool=5, seed=7)
    first = [as_lists(one) for _ in range(3)]
    assert first == [as_lists(two) for _ in range(3)]
    assert first[0] != first[1] != first[2]
    assert as_lists(ladle.BucketBatchSampler(lengths, 8, pool=5, seed=8)) != first[0]
    two.set_epoch(1)
    assert as_lists(two) == first[1]
    assert as_lists(two.epoch_batches(2)) == first[2] and two.epoch == 2  # epoch 1 advanced it


def test_unseeded_samplers_pick_a_fresh_seed() -> None:
    lengths = skewed_lengths(300)
    one, two = ladle.BucketBatchSampler(lengths, 8), ladle.BucketBatchSampler(lengths, 8)
    assert one.seed != two.seed and as_lists(one) != as_lists(two)


def test_from_dataset_reads_the_lengths() -> None:
    lengths = skewed_lengths(50)
    sampler = ladle.BucketBatchSampler.from_dataset(
        Texts(lengths), 4, length_fn=lambda sample: len(sample["ids"]), seed=2, pool=3
    )
    assert np.array_equal(sampler.lengths, lengths)
    assert as_lists(sampler) == as_lists(ladle.BucketBatchSampler(lengths, 4, seed=2, pool=3))
    assert "pool=3, seed=2" in repr(sampler)


# -- the loader -----------------------------------------------------------------------------------


def loader(lengths: np.ndarray, seed: int | None = 5, **options: Any) -> ladle.DataLoader:
    sampler = ladle.BucketBatchSampler(lengths, 8, pool=4, seed=seed)
    return ladle.DataLoader(
        Texts(lengths), batch_sampler=sampler, collate_fn=ladle.PadCollate(keys={"ids"}), **options
    )


def test_pad_collate_end_to_end_pads_each_batch_to_its_longest() -> None:
    lengths = skewed_lengths(200)
    run = loader(lengths)
    sampler = run.batch_sampler
    expected = sampler.padding_stats()
    padded = tokens = 0
    for batch in run:
        ids = batch["ids"]
        assert isinstance(ids, ladle.PaddedBatch) and isinstance(ids.data, np.ndarray)
        assert np.array_equal(ids.lengths, lengths[batch["index"]])
        assert ids.data.shape == (len(batch["index"]), ids.lengths.max())
        assert np.array_equal(ids.mask.sum(1), ids.lengths)
        padded += ids.data.size
        tokens += int(ids.mask.sum())
    assert (tokens, padded) == (expected.tokens, expected.padded)


def test_resume_mid_epoch_gives_the_remaining_batches() -> None:
    lengths = skewed_lengths(200)
    first = loader(lengths, seed=5)
    epochs = [list(first), list(first), list(first)]
    assert not all(np.array_equal(a["index"], b["index"]) for a, b in zip(*epochs[:2], strict=True))
    cut = loader(lengths, seed=5)
    list(cut)  # epoch 0
    iterator = iter(cut)
    taken = [next(iterator) for _ in range(7)]
    state = json.loads(json.dumps(cut.state_dict()))  # as if saved to disk
    del iterator
    resumed = loader(lengths, seed=5)  # a new loader, as in a new process
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(taken) + len(rest) == len(epochs[1]) == len(resumed) == 25
    assert_batches_equal(taken + rest, epochs[1])
    assert_batches_equal(list(resumed), epochs[2])  # and the next epoch follows


def test_resume_adopts_a_fresh_seed_from_the_state() -> None:
    lengths = skewed_lengths(100)
    unseeded = loader(lengths, seed=None)
    iterator = iter(unseeded)
    next(iterator)
    state = unseeded.state_dict()
    rest = list(iterator)
    resumed = loader(lengths, seed=None)
    resumed.load_state_dict(state)
    assert_batches_equal(list(resumed), rest)
    other = loader(lengths, seed=6)
    with pytest.raises(
        ValueError, match=re.escape(f"resume with seed={unseeded.batch_sampler.seed}")
    ):
        other.load_state_dict(state)


def test_resume_with_two_process_workers() -> None:
    lengths = skewed_lengths(120)
    expected = list(loader(lengths))
    resumed = taken_and_resumed(lambda: loader(lengths, num_workers=2, timeout=60), cut=4)
    assert_batches_equal(resumed, expected)


def test_resumes_at_every_cut() -> None:
    lengths = skewed_lengths(30)
    assert_resumes(lambda: loader(lengths), epochs=2)
    assert_resumes(
        lambda: loader(lengths),
        resume_with=lambda: loader(lengths, num_workers=2, worker_type="thread"),
    )


# -- bad arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "error", "message"),
    [
        ([[1, 2], [3, 4]], TypeError, "lengths should be a 1-d sequence of numbers"),
        (["a", "b"], TypeError, "BucketBatchSampler.from_dataset(dataset, batch_size"),
        ([True, False], TypeError, "lengths of dtype bool"),
        ([], ValueError, "cannot batch an empty dataset"),
        ([3, -1, 2], ValueError, "lengths[1]=-1"),
        ([3, float("nan")], ValueError, "finite and non-negative"),
    ],
)
def test_bad_lengths_are_refused_naming_the_fix(lengths: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        ladle.BucketBatchSampler(lengths, 2)


def test_bad_options_are_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=re.escape("pool should be an int >= 1, but got pool=0")):
        ladle.BucketBatchSampler([1, 2], 2, pool=0)
    with pytest.raises(TypeError, match=re.escape("pool=2.5 (float); pass the number of batches")):
        ladle.BucketBatchSampler([1, 2], 2, pool=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        ladle.BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="drop_last should be True or False"):
        ladle.BucketBatchSampler([1, 2], 2, drop_last="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("seed should be a non-negative int")):
        ladle.BucketBatchSampler([1, 2], 2, seed="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("pass e.g. length_fn=lambda s: len(s['ids'])")):
        ladle.BucketBatchSampler.from_dataset(Texts(np.ones(3, int)), 2, length_fn=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("epoch should be an int >= 0")):
        ladle.BucketBatchSampler([1, 2], 2).padding_stats(-1)


def test_a_state_of_another_bucketing_is_refused() -> None:
    lengths = skewed_lengths(100)
    state = loader(lengths).state_dict()
    other = ladle.DataLoader(
        Texts(lengths[:99]), batch_sampler=ladle.BucketBatchSampler(lengths[:99], 8, seed=5)
    )
    with pytest.raises(ValueError, match="resume over the same dataset"):
        other.load_state_dict(state)
