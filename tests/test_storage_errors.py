"""The errors of reading and writing shards at a URL: each names what failed (the URL, the
argument, the file) and the fix, in one line from the command line, and none loses data."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from storage_support import S3, FaultProxy, check_sample, clean_proxy, s3, samples

import ladle
from ladle.cli import main
from ladle.errors import FormatError
from ladle.formats import ShardDataset, write_shards
from ladle.formats.remote import read_remote_index
from ladle.formats.storage import StorageError, Store

__all__ = ["clean_proxy", "s3"]  # fixtures, used by name


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture
def env(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command line's configuration: credentials and endpoint from the environment."""
    from s3fs import S3FileSystem

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.proxy.endpoint)
    monkeypatch.setenv("LADLE_CACHE", str(tmp_path / "cache"))
    # fsspec keeps one filesystem per set of options: without options, an earlier module's
    # would still talk to that module's server (read from the environment when it was made)
    S3FileSystem.clear_instance_cache()
    yield
    S3FileSystem.clear_instance_cache()


# -- a bucket that does not exist -------------------------------------------------------------


def test_writing_to_a_missing_bucket_says_so_before_encoding_anything(
    s3: S3, clean_proxy: FaultProxy
) -> None:
    url = "s3://missing-bucket/x"
    with pytest.raises(FileNotFoundError) as error:
        write_shards(samples(20), url, samples_per_shard=5, storage_options=s3.options())
    assert str(error.value) == (
        f"{url}: the bucket 'missing-bucket' does not exist; create it, or check the URL "
        f"(and storage_options' endpoint_url: the bucket may be at another endpoint)"
    )
    assert not [path for method, path in clean_proxy.requests if method == "PUT"]


def test_reading_a_missing_bucket_says_so(s3: S3, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bucket 'missing-bucket' does not exist"):
        ShardDataset("s3://missing-bucket/x", storage_options=s3.options(), cache_dir=tmp_path)


def test_pack_to_a_missing_bucket_is_one_line(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 3), np.float32))
    assert main(["pack", str(tmp_path / "x.npy"), "s3://missing-bucket/x", "--quiet"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert "s3://missing-bucket/x: the bucket 'missing-bucket' does not exist" in err


# -- a cache_dir that cannot be written -------------------------------------------------------


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A small dataset in fsspec's in-process memory filesystem (removed afterwards)."""
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://ladle-{secrets.token_hex(4)}/set"
    write_shards(samples(30), url, samples_per_shard=10)
    yield url
    fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_a_cache_dir_under_a_file_is_refused_when_the_dataset_is_made(
    memory_url: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    cache_dir = tmp_path / "file" / "sub"
    with pytest.raises(NotADirectoryError) as error:
        ShardDataset(memory_url, cache_dir=cache_dir)
    assert str(error.value) == (
        f"cache_dir {cache_dir} cannot hold the shard cache: {tmp_path / 'file'} is a file, not "
        f"a directory; pass cache_dir= a writable local directory (or set $LADLE_CACHE)"
    )


def test_an_unwritable_cache_dir_is_refused_when_the_dataset_is_made(
    memory_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    # the tests run as root, whom mode bits do not stop: the check asks os.access
    monkeypatch.setattr("ladle.formats.cache.os.access", lambda path, mode: False)
    with pytest.raises(PermissionError) as error:
        ShardDataset(memory_url, cache_dir=tmp_path / "ro" / "cache")
    assert str(error.value) == (
        f"cache_dir {tmp_path / 'ro' / 'cache'} cannot hold the shard cache: {tmp_path / 'ro'} "
        f"is not writable by this process; pass cache_dir= a writable local directory (or set "
        f"$LADLE_CACHE)"
    )


def test_the_default_cache_directory_names_ladle_cache(
    memory_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LADLE_CACHE", str(tmp_path / "file" / "sub"))
    with pytest.raises(NotADirectoryError, match=r"the cache directory .*/file/sub \(cache_dir="):
        ShardDataset(memory_url)


def test_a_cache_dir_that_breaks_later_is_named_too(memory_url: str, tmp_path: Path) -> None:
    dataset = ShardDataset(memory_url, cache_dir=tmp_path / "cache")
    (tmp_path / "cache").write_text("")  # replaced by a file after the dataset was made
    with pytest.raises(NotADirectoryError, match=f"cache_dir {tmp_path / 'cache'} cannot hold"):
        dataset[0]


def test_inspect_with_an_unwritable_cache_is_one_line(
    memory_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LADLE_CACHE", str(tmp_path / "file" / "sub"))
    assert main(["inspect", memory_url, "--quiet"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert "is a file, not a directory; pass cache_dir=" in err


# -- ladle inspect on damaged shards ----------------------------------------------------------


def test_inspect_a_damaged_object_is_one_line(
    s3: S3, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3.bucket()}/damaged"
    write_shards(samples(30), url, samples_per_shard=10, storage_options=s3.options())
    store = Store(url, s3.options())
    whole = store.read_bytes("shard-00001.ladle")
    store.write_bytes("shard-00001.ladle", whole[: len(whole) // 2])  # truncated in the store
    assert main(["inspect", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert f"ladle inspect: error: {url}/shard-00001.ladle: 3 downloads in a row failed" in err


def test_inspect_a_damaged_cached_file_fetches_it_again(
    s3: S3, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3.bucket()}/cached"
    write_shards(samples(30), url, samples_per_shard=10, storage_options=s3.options())
    assert main(["inspect", url, "--quiet"]) == 0
    capsys.readouterr()
    (cached,) = (tmp_path / "cache").rglob("*-shard-00001.ladle")
    cached.write_bytes(cached.read_bytes()[:-100])  # truncated on the node's disk
    with pytest.warns(RuntimeWarning, match="the cached copy failed its checks"):
        code = main(["inspect", url, "--quiet"])
    out = capsys.readouterr().out
    assert code == 0  # the cache fetched the damaged file again
    assert "checksums 30 records OK" in out


def test_inspect_a_truncated_local_shard_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ladle.write_shards(samples(30), tmp_path / "d", samples_per_shard=10)
    shard = tmp_path / "d" / "shard-00001.ladle"
    shard.write_bytes(shard.read_bytes()[:-100])
    for path in (tmp_path / "d", shard):
        assert main(["inspect", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
        one_line(err)
        assert f"ladle inspect: error: {shard}: " in err and "truncated" in err


def test_pack_that_cannot_read_back_what_it_wrote_says_it_wrote_it(
    s3: S3,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 3), np.float32))
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LADLE_CACHE", str(tmp_path / "file" / "sub"))  # no cache for the report
    url = f"s3://{s3.bucket()}/packed"
    assert main(["pack", str(tmp_path / "x.npy"), url, "--quiet"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert err.startswith(f"ladle pack: wrote {url}, but reading it back failed: the cache ")
    assert read_remote_index(Store(url, s3.options())).records == 10  # written all the same


# -- shards left by an interrupted overwrite --------------------------------------------------


def test_shards_without_an_index_are_refused_saying_why(s3: S3, clean_proxy: FaultProxy) -> None:
    url = f"s3://{s3.bucket()}/interrupted"
    write_shards(samples(50), url, samples_per_shard=10, storage_options=s3.options())
    clean_proxy.add("503", "interrupted/shard-00002", times=100, method="PUT")
    quick = s3.options(config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}})
    with pytest.raises(StorageError, match=r"shard-00002\.ladle: uploading failed"):
        write_shards(samples(50), url, samples_per_shard=10, overwrite=True, storage_options=quick)
    clean_proxy.clear()
    left = Store(url, s3.options()).names()
    assert "index.json" not in left and "shard-00004.ladle" in left  # old shards, no index
    with pytest.raises(FileExistsError) as error:
        write_shards(samples(5), url, storage_options=s3.options())
    assert str(error.value) == (
        f"out_dir {url} holds ladle shards but no index.json: an earlier write or overwrite was "
        f"interrupted; pass overwrite=True (ladle pack --overwrite) to replace them, or choose "
        f"another prefix"
    )
    assert Store(url, s3.options()).names() == left  # refused: nothing was touched
    write_shards(samples(5), url, overwrite=True, storage_options=s3.options())
    assert read_remote_index(Store(url, s3.options())).records == 5


def test_local_shards_without_an_index_are_refused_saying_why(tmp_path: Path) -> None:
    write_shards(samples(20), tmp_path, samples_per_shard=10)
    (tmp_path / "index.json").unlink()
    with pytest.raises(FileExistsError) as error:
        write_shards(samples(5), tmp_path)
    assert str(error.value) == (
        f"out_dir {tmp_path} holds ladle shards but no index.json: an earlier write or "
        f"overwrite was interrupted; pass overwrite=True (ladle pack --overwrite) to replace "
        f"them, or choose another directory"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.ladle", "shard-00001.ladle"]


# -- an object that is whole but not the shard the index lists --------------------------------


def test_an_object_written_again_under_the_index_fails_after_one_download(
    s3: S3, clean_proxy: FaultProxy, tmp_path: Path
) -> None:
    url = f"s3://{s3.bucket()}/rewritten"
    write_shards(samples(30), url, samples_per_shard=10, storage_options=s3.options())
    dataset = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    # written again while ``dataset`` reads it: the same names, other shards
    write_shards(
        samples(30), url, samples_per_shard=12, overwrite=True, storage_options=s3.options()
    )
    clean_proxy.clear()
    with pytest.raises(FormatError) as error:
        dataset[0]
    message = str(error.value)
    assert message.startswith(
        f"{url}/shard-00000.ladle: the object does not match index.json: its records 12 "
        f"(expected 10), bytes "
    )
    assert message.endswith(
        " differ; the dataset was probably written again while being read: read it again (a "
        "new ShardDataset reads the new index.json)"
    )
    assert clean_proxy.downloads("rewritten/shard-00000") == 1
    assert not list(tmp_path.rglob("*shard-00000.ladle"))  # nothing cached
    fresh = ShardDataset(url, storage_options=s3.options(), cache_dir=tmp_path)
    check_sample(fresh[29], 29)


# -- other protocols --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "package"),
    [("gs://bucket/x", "gcsfs"), ("gcs://bucket/x", "gcsfs"), ("az://box/x", "adlfs")],
)
def test_a_protocol_without_its_package_says_what_to_install(
    url: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fsspec")
    monkeypatch.setitem(sys.modules, package, None)  # absent, even where it is installed
    message = (
        f"{url}: {url.split(':')[0]}:// URLs need {package}, which is not installed; install "
        f"it with pip install {package} (ladle[storage] brings s3fs, not {package})"
    )
    with pytest.raises(ImportError) as error:
        ShardDataset(url)
    assert str(error.value) == message
    with pytest.raises(ImportError) as error:
        write_shards(samples(3), url)
    assert str(error.value) == message


def test_an_unknown_protocol_names_the_url() -> None:
    pytest.importorskip("fsspec")
    with pytest.raises(ValueError) as error:
        ShardDataset("nosuch://bucket/x")
    assert str(error.value) == (
        "nosuch://bucket/x: fsspec knows no protocol 'nosuch'; check the URL (e.g. "
        "s3://bucket/prefix), or install the fsspec filesystem package for it"
    )


def test_memory_urls_write_and_read_through_the_cache(memory_url: str, tmp_path: Path) -> None:
    dataset = ShardDataset(memory_url, cache_dir=tmp_path)
    assert dataset.shard_files[2] == f"{memory_url}/shard-00002.ladle"
    for i in range(30):
        check_sample(dataset[i], i)
    assert len(list(tmp_path.rglob("*-shard-0000?.ladle"))) == 3  # each fetched into the cache
    with pytest.raises(FileExistsError, match=f"out_dir {memory_url} already holds"):
        write_shards(samples(3), memory_url)
    write_shards(samples(12), memory_url, samples_per_shard=6, overwrite=True)
    assert Store(memory_url).names() == ["index.json", "shard-00000.ladle", "shard-00001.ladle"]
    check_sample(ShardDataset(memory_url, cache_dir=tmp_path)[11], 11)
