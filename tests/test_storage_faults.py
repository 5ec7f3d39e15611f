"""Faults between ladle and the object store, injected by the proxy: retried, re-fetched or
reported naming the URL, and never a wrong sample."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from script_support import PRELUDE
from storage_support import S3, FaultProxy, check_batch, check_sample, clean_proxy, s3, samples

import ladle
from ladle.errors import FormatError
from ladle.formats import ShardDataset, write_shards
from ladle.formats.storage import StorageError

__all__ = ["clean_proxy", "s3"]  # fixtures, used by name

N, PER_SHARD = 200, 40
SHARD = "shard-00002.ladle"


@pytest.fixture(scope="module")
def url(s3: S3) -> Iterator[str]:
    location = f"s3://{s3.bucket()}/faults"
    write_shards(samples(N), location, samples_per_shard=PER_SHARD, storage_options=s3.options())
    yield location


def quick(s3: S3, checksums: bool = True, attempts: int = 2) -> dict[str, Any]:
    """Options with ``attempts`` botocore attempts per request (s3fs adds its own 5 around
    them); ``checksums=False`` leaves botocore's response checksums off, so that only ladle's
    own checks stand between a damaged body and a reader."""
    config: dict[str, Any] = {"retries": {"max_attempts": attempts, "mode": "standard"}}
    if not checksums:
        config["response_checksum_validation"] = "when_required"
    return s3.options(config_kwargs=config)


def read_all(dataset: ShardDataset) -> None:
    for i in range(len(dataset)):
        check_sample(dataset[i], i)


@pytest.mark.parametrize("kind", ["503", "429", "drop", "cut", "short", "flip"])
def test_a_passing_fault_is_retried_and_every_sample_is_right(
    kind: str, s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    clean_proxy.add(kind, SHARD)
    dataset = ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path)
    read_all(dataset)
    assert clean_proxy.injected[kind] == 1
    assert clean_proxy.downloads(SHARD) >= 2  # the faulty answer, then a good one


@pytest.mark.parametrize("kind", ["short", "flip"])
def test_a_damaged_body_is_caught_by_the_shard_checksums_and_fetched_again(
    kind: str, s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    clean_proxy.add(kind, SHARD)
    dataset = ShardDataset(url, storage_options=quick(s3, checksums=False), cache_dir=tmp_path)
    read_all(dataset)
    assert clean_proxy.injected[kind] == 1 and clean_proxy.downloads(SHARD) == 2


def test_a_body_damaged_every_time_is_never_served(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    clean_proxy.add("flip", SHARD, times=1000)
    dataset = ShardDataset(url, storage_options=quick(s3, checksums=False), cache_dir=tmp_path)
    check_sample(dataset[0], 0)
    with pytest.raises(FormatError, match=f"{url}/{SHARD}: 3 downloads in a row failed") as error:
        dataset[2 * PER_SHARD]
    assert "checksum mismatch" in str(error.value)
    assert clean_proxy.downloads(SHARD) == 3
    assert not [p for p in tmp_path.rglob(f"*{SHARD}")]  # nothing cached, no partial left
    clean_proxy.clear()  # the store heals: the next read fetches it whole
    check_sample(dataset[2 * PER_SHARD], 2 * PER_SHARD)


@pytest.mark.parametrize("kind", ["503", "429", "drop"])
def test_a_lasting_fault_raises_naming_the_url_within_bounds(
    kind: str, s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    # one botocore attempt: the bound is s3fs's 5 tries (about 2 s of backoff in all)
    dataset = ShardDataset(url, storage_options=quick(s3, attempts=1), cache_dir=tmp_path)
    clean_proxy.add(kind, SHARD, times=1000)
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"{url}/{SHARD}: downloading failed"):
        dataset[2 * PER_SHARD]
    assert time.monotonic() - started < 20
    # bounded: s3fs's 5 tries, each of which botocore and aiohttp may repeat a few times on a
    # dropped connection (they count a connection error apart from the attempts)
    assert 1 <= clean_proxy.injected[kind] <= 25
    assert not [p for p in tmp_path.rglob(f"*{SHARD}")]


def test_a_lasting_fault_on_the_index_names_it(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    clean_proxy.add("503", "faults/index.json", times=1000)
    with pytest.raises(StorageError, match=f"{url}/index.json: reading failed"):
        ShardDataset(url, storage_options=quick(s3, attempts=1), cache_dir=tmp_path)


def test_a_store_that_stops_answering_raises_within_store_timeout(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    # the connection is taken and the request read, but no answer ever comes: each read would
    # wait out botocore's read timeout, and the clients' retries nest to over 20 minutes
    dataset = ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path, store_timeout=2)
    check_sample(dataset[0], 0)
    clean_proxy.add("stall", SHARD, times=1000)
    started = time.monotonic()
    with pytest.raises(
        StorageError,
        match=rf"{url}/{SHARD}: downloading got no complete answer within 2\.0 s "
        rf"\(store_timeout=2, plus 1 s per MiB\), retries included",
    ):
        dataset[2 * PER_SHARD]
    assert time.monotonic() - started < 15
    assert not [p for p in tmp_path.rglob(f"*{SHARD}")]  # no partial download left
    clean_proxy.clear()  # the store answers again: the next read fetches the shard whole
    check_sample(dataset[2 * PER_SHARD], 2 * PER_SHARD)


WORKERS_CHILD = """
import json
import ladle
from ladle.formats import ShardDataset
from ladle.formats.storage import StorageError
from storage_support import check_batch, options
dataset = ShardDataset({url!r}, storage_options=options({endpoint!r}), cache_dir={cache!r},
                       store_timeout=3)
loader = ladle.DataLoader(dataset, batch_size=10, num_workers=2)
seen = []
try:
    for batch in loader:
        seen.extend(check_batch(batch))
    print(json.dumps({{"seen": seen, "error": None}}))
except StorageError as error:
    print(json.dumps({{"seen": seen, "error": str(error)}}))
"""


def test_worker_processes_fail_loudly_when_the_store_stops_answering(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    # the loader runs in a child process (with the server here): a hang fails this test on its
    # timeout instead of hanging the suite; the loader itself has no timeout
    clean_proxy.add("stall", SHARD, times=1000)
    code = WORKERS_CHILD.format(url=url, endpoint=s3.proxy.endpoint, cache=str(tmp_path))
    try:
        done = subprocess.run(
            [sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the loader's workers stalled on a store that stopped answering")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None
    assert result["error"].startswith(f"{url}/{SHARD}: downloading got no complete answer")
    # what came before the stalled shard came, whole and in order
    assert result["seen"] == list(range(len(result["seen"])))
    assert len(result["seen"]) <= 2 * PER_SHARD


def cached_copy(cache: Path) -> Path:
    (found,) = [p for p in cache.rglob(f"*{SHARD}") if not p.name.startswith(".")]
    return found


def test_a_cached_copy_truncated_on_disk_is_fetched_again(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    read_all(ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path))
    copy = cached_copy(tmp_path)
    with open(copy, "r+b") as file:
        file.truncate(copy.stat().st_size // 2)
    clean_proxy.clear()
    later = ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path)  # a later job
    with pytest.warns(RuntimeWarning, match="the cached copy failed its checks"):
        read_all(later)
    assert clean_proxy.downloads(SHARD) == 1 and clean_proxy.downloads("shard-") == 1


def test_a_record_damaged_in_the_cache_is_fetched_again_never_served(
    s3: S3, url: str, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    read_all(ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path))
    copy = cached_copy(tmp_path)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # in a record's payload: the header still checks
    copy.write_bytes(bytes(data))
    clean_proxy.clear()
    later = ShardDataset(url, storage_options=quick(s3), cache_dir=tmp_path)
    seen = []
    with pytest.warns(RuntimeWarning, match="failed a record's checksum; fetching it again"):
        for batch in ladle.DataLoader(later, batch_size=10):  # the batch (gather) path
            seen.extend(check_batch(batch))
    assert seen == list(range(N))
    assert clean_proxy.downloads(SHARD) == 1 and clean_proxy.downloads("shard-") == 1
    assert cached_copy(tmp_path).read_bytes() != bytes(data)  # the damaged copy is gone
