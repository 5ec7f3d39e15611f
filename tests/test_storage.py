"""Shard directories in an object store: write_shards, ShardDataset, ShardStream, open_dataset and
the command line against a real S3 API server on 127.0.0.1 (moto), through a counting proxy."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from storage_support import S3, FaultProxy, check_batch, check_sample, clean_proxy, s3, samples

import ladle
from ladle.cli import main
from ladle.errors import FormatError
from ladle.formats import ShardDataset, ShardStream, open_dataset, write_shards
from ladle.formats.storage import StorageError, Store

__all__ = ["clean_proxy", "s3"]  # fixtures, used by name


def test_write_then_read_every_sample(s3: S3, clean_proxy: FaultProxy, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/data/set"
    written = write_shards(samples(300), url, samples_per_shard=64, storage_options=s3.options())
    assert written == url
    puts = [path for path in clean_proxy.requests if path[0] == "PUT"]
    assert [p for _, p in puts][-1].endswith("/data/set/index.json")  # committed last
    dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    assert len(dataset) == 300 and dataset.shard_sizes == [64, 64, 64, 64, 44]
    assert dataset.shard_files[0] == f"{url}/shard-00000.ladle"
    assert repr(dataset) == f"ShardDataset({url!r}, records=300)"
    for i in range(300):
        check_sample(dataset[i], i)
    batch = dataset.__getitems__([299, 0, 130])
    for position, i in enumerate([299, 0, 130]):
        check_sample(batch[position], i)
    assert clean_proxy.downloads("/data/set/shard-") == 5  # once each, then mapped


def test_a_stream_and_open_dataset_read_a_url(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/stream"
    write_shards(samples(90), url, samples_per_shard=20, storage_options=s3.options())
    stream = ShardStream(url, storage_options=s3.options(), cache_dir=tmp_path)
    for i, sample in enumerate(stream):
        check_sample(sample, i)
    assert i == 89
    tail = list(stream.iter_from(85))
    assert [s["i"] for s in tail] == [85, 86, 87, 88, 89]
    opened = open_dataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    assert isinstance(opened, ShardDataset) and len(opened) == 90
    loader = ladle.DataLoader(opened, batch_size=16, shuffle=True, seed=3)
    assert sorted(np.concatenate([b["i"] for b in loader]).tolist()) == list(range(90))


def test_file_urls_read_the_local_directory(tmp_path: Path) -> None:
    write_shards(samples(10), tmp_path / "d", samples_per_shard=4)
    dataset = ShardDataset(f"file://{tmp_path / 'd'}")
    assert dataset.cache is None and dataset.path == tmp_path / "d"
    check_sample(dataset[9], 9)
    with pytest.raises(ValueError, match="storage_options are for object stores"):
        ShardDataset(tmp_path / "d", storage_options={"anon": True})


def test_credentials_and_endpoint_from_the_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3.bucket()}/env"
    write_shards(samples(5), url, storage_options=s3.options())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    dataset = ShardDataset(url, cache_dir=tmp_path)  # no storage_options: botocore's config
    check_sample(dataset[4], 4)


def test_overwrite_and_what_it_replaces(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/over"
    write_shards(samples(50), url, samples_per_shard=10, storage_options=s3.options())
    with pytest.raises(FileExistsError, match=f"out_dir {url} already holds ladle shards"):
        write_shards(samples(5), url, storage_options=s3.options())
    options = s3.options()
    write_shards(samples(12), url, samples_per_shard=6, overwrite=True, storage_options=options)
    store = Store(url, s3.options())
    assert store.names() == ["index.json", "shard-00000.ladle", "shard-00001.ladle"]
    dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    assert len(dataset) == 12
    check_sample(dataset[11], 11)


def test_a_failed_upload_leaves_no_index(s3: S3, clean_proxy: FaultProxy) -> None:
    url = f"s3://{s3.bucket()}/failed"
    clean_proxy.add("503", "failed/shard-00002", times=100, method="PUT")
    quick = s3.options(config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}})
    with pytest.raises(StorageError, match=f"{url}/shard-00002.ladle: uploading failed"):
        write_shards(samples(50), url, samples_per_shard=10, storage_options=quick)
    assert Store(url, s3.options()).names() == []  # the shards it did upload are gone too


def test_missing_objects_are_named(s3: S3, tmp_path: Path) -> None:
    bucket = s3.bucket()
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nothing/index.json: no such"):
        ShardDataset(f"s3://{bucket}/nothing", storage_options=s3.options(), cache_dir=tmp_path)
    url = f"s3://{bucket}/holed"
    write_shards(samples(30), url, samples_per_shard=10, storage_options=s3.options())
    Store(url, s3.options()).remove("shard-00001.ladle")
    dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    check_sample(dataset[0], 0)
    with pytest.raises(FormatError, match=f"{url}/shard-00001.ladle: the index lists this shard"):
        dataset[15]
    assert not any(p.name.endswith("shard-00001.ladle") for p in tmp_path.rglob("*"))


def test_the_cache_limit_must_hold_a_shard(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/big"
    write_shards(samples(30), url, samples_per_shard=10, storage_options=s3.options())
    with pytest.raises(ValueError, match="cache_limit=1000 is smaller than the biggest shard"):
        ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path, cache_limit=1000)


def test_without_fsspec_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match=r"pip install 'ladle\[storage\]'"):
        ShardDataset("s3://bucket/prefix")


def test_pack_and_inspect_at_a_url(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.arange(600, dtype=np.float32).reshape(200, 3))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    monkeypatch.setenv("LADLE_CACHE", str(tmp_path / "cache"))
    url = f"s3://{s3.bucket()}/packed"
    assert main(["pack", str(tmp_path / "x.npy"), url, "--shard-mb", "0.001", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{url}: ladle shards") and "records   200 in" in out
    assert not (tmp_path / "cache").exists()  # the report read the index alone
    assert main(["inspect", url, "--quiet"]) == 0
    assert "checksums 200 records OK" in capsys.readouterr().out
    dataset = open_dataset(url)
    np.testing.assert_array_equal(dataset[7], np.arange(21, 24, dtype=np.float32))
    assert main(["inspect", f"{url}-missing", "--quiet"]) == 2
    assert f"{url}-missing/index.json: no such object" in capsys.readouterr().err


def test_a_url_dataset_pickles_as_its_url_and_options(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/pickled"
    write_shards(samples(20), url, samples_per_shard=10, storage_options=s3.options())
    dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    check_sample(dataset[3], 3)
    index_url = ShardDataset(f"{url}/index.json", storage_options=s3.options(), cache_dir=tmp_path)
    assert len(index_url) == 20 and index_url.path == url
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawned worker receives
    check_sample(copy[13], 13)
    assert copy.cache is not None and copy.cache.directory == tmp_path


def test_thread_workers_share_one_url_dataset(s3: S3, tmp_path: Path) -> None:
    url = f"s3://{s3.bucket()}/threads"
    write_shards(samples(120), url, samples_per_shard=15, storage_options=s3.options())
    dataset = ShardDataset(
        url, storage_options=s3.options(), cache_dir=tmp_path, cache_limit=51_000
    )
    assert dataset.cache_capacity < len(dataset.shard_sizes)  # maps dropped as they go
    with pytest.warns(UserWarning, match="each shard is downloaded many times an epoch"):
        loader = ladle.DataLoader(
            dataset,
            batch_size=8,
            shuffle=True,
            seed=1,
            num_workers=2,
            worker_type="thread",
            timeout=30,
        )
    seen = [i for batch in loader for i in check_batch(batch)]
    assert sorted(seen) == list(range(120))
