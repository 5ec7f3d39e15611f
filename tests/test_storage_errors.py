"""The errors of reading and writing shards at a URL: each names what failed (the URL, the
argument, the file) and the fix, in one line from the command line, and none loses data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from storage_support import S3, FaultProxy, clean_proxy, s3, samples

from ladle.cli import main
from ladle.formats import ShardDataset, write_shards

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
