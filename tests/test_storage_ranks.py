"""A shard directory on object storage read by the ranks of one node: ``distributed=`` over
``ShardWindowSampler``, every rank through the node's one cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_support import S3, FaultProxy, check_batch, clean_proxy, s3, samples

import ladle
from ladle.formats import ShardDataset, ShardWindowSampler, write_shards

__all__ = ["clean_proxy", "s3"]  # fixtures, used by name

SHARDS, PER_SHARD, GLOBAL = 8, 20, 16
N = SHARDS * PER_SHARD


@pytest.fixture(scope="module")
def url(s3: S3) -> Iterator[str]:
    location = f"s3://{s3.bucket()}/ranked"
    write_shards(samples(N), location, samples_per_shard=PER_SHARD, storage_options=s3.options())
    yield location


def test_ranks_share_a_windowed_epoch_and_the_node_cache(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    def loaders(world: int, cache: Path) -> list[ladle.DataLoader]:
        made = []
        for rank in range(world):
            dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=cache)
            made.append(
                ladle.DataLoader(
                    dataset,
                    global_batch_size=GLOBAL,
                    sampler=ShardWindowSampler(dataset, window=2, seed=3),
                    distributed=ladle.Ranks(rank, world),
                )
            )
        return made

    reference = [sorted(check_batch(b)) for b in loaders(1, tmp_path / "one")[0]]
    clean_proxy.clear()
    ranks = loaders(2, tmp_path / "node")
    announced: list[list[int]] = []
    dataset = ranks[1].dataset
    fetch_ahead = dataset.prefetch

    def prefetch(shards: Iterator[int]) -> None:
        shards = list(shards)
        announced.append(shards)
        fetch_ahead(iter(shards))

    dataset.prefetch = prefetch
    steps = [sorted(check_batch(a) + check_batch(b)) for a, b in zip(*ranks, strict=True)]
    assert steps == reference  # the global batches of one rank, shared between two
    downloads = [clean_proxy.downloads(f"ranked/shard-{s:05d}.ladle") for s in range(SHARDS)]
    assert downloads == [1] * SHARDS  # once per node, whichever rank asked first
    # each rank's share tells the dataset what comes next, a window at a time
    assert len(announced) == SHARDS // 2 and len(announced[0]) == SHARDS


def test_a_window_that_follows_the_cache_is_refused_across_ranks_and_on_resume(
    s3: S3, url: str, tmp_path: Path
) -> None:
    """The default window is half of what this node's cache holds: ranks on nodes with other
    cache limits, or a resume with another limit, would cut the epoch into other windows and
    lose and repeat records without a word. So across ranks it must be given, and a state
    records it."""
    probe = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path / "probe")
    shard = max(probe.shard_bytes)

    def dataset(shards: int) -> ShardDataset:
        return ShardDataset(
            url,
            storage_options=s3.options(),
            cache_dir=tmp_path / f"cache-{shards}",
            cache_limit=shards * shard,
        )

    small = dataset(4)
    with pytest.raises(ValueError, match=r"follows this node's cache_limit.*pass window="):
        ladle.DataLoader(
            small,
            global_batch_size=GLOBAL,
            sampler=ShardWindowSampler(small, seed=3),
            distributed=ladle.Ranks(0, 2),
        )
    loader = ladle.DataLoader(small, batch_size=10, sampler=ShardWindowSampler(small, seed=3))
    next(iter(loader))
    state = loader.state_dict()
    large = dataset(8)
    resumed = ladle.DataLoader(large, batch_size=10, sampler=ShardWindowSampler(large, seed=3))
    with pytest.raises(ValueError, match="window=2, but this one has window=4"):
        resumed.load_state_dict(state)
    given = ladle.DataLoader(
        large, batch_size=10, sampler=ShardWindowSampler(large, window=2, seed=3)
    )
    given.load_state_dict(state)  # the same window, given: the same epoch
    rest = [i for batch in given for i in check_batch(batch)]
    reference = ladle.DataLoader(small, batch_size=10, sampler=ShardWindowSampler(small, seed=3))
    order = [i for batch in reference for i in check_batch(batch)]
    assert rest == order[10:]
