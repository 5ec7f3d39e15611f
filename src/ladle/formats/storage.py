"""Shard directories at URLs: ``s3://bucket/prefix``, ``gs://...``, ``az://...``, ``file://...``.

A :class:`Store` names one directory in an object store and reads or writes whole objects in it
through fsspec (s3fs, gcsfs, adlfs), configured the way fsspec is: credentials and endpoint from
the environment and profiles, or ``storage_options`` (e.g. ``{"endpoint_url": ...}``).
Retrying is fsspec's and botocore's: ladle only sets bounded defaults (see
:data:`S3_DEFAULTS`), and turns what still fails into an error naming the URL. fsspec is
imported only here, and only when a URL is used, so the core keeps depending on NumPy alone.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ladle.validation import check_number

__all__ = [
    "INSTALL_HINT",
    "S3_DEFAULTS",
    "STORE_TIMEOUT",
    "DamagedDownload",
    "MissingBucket",
    "Store",
    "StorageError",
    "is_url",
    "local_path",
]

INSTALL_HINT = "pip install 'ladle[storage]'"

# botocore retries 5xx, 429/SlowDown and dropped connections itself ("standard" mode: jittered
# exponential backoff, capped at 20 s); s3fs adds its own bounded retries (5, about 2 s of
# backoff in all) around each call for timeouts and broken reads. This bound keeps a dead
# endpoint from stalling a job for long; storage_options' config_kwargs override it.
S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {"retries": {"max_attempts": 4, "mode": "standard"}},
}

# The deadline of one call to the store, all its retries included: STORE_TIMEOUT seconds, plus
# one second per MiB it moves (a floor of 1 MiB/s). The clients' own bounds nest: s3fs retries
# each request 5 times, botocore each of those up to 4, each read may wait 15 s, and s3fs
# reopens a broken body 5 times more; a store that accepts connections and then never answers
# (a dead node behind a load balancer) stalled a worker for over 20 minutes without a word.
STORE_TIMEOUT = 60.0
_SECONDS_PER_MIB = 1.0

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# Filesystems a forked process inherited, kept so that they are never closed there: closing
# one (s3fs does when it is collected) unregisters its sockets from the event loop's epoll set,
# which the child shares with its parent, and the parent's next response on that connection
# is then never read (it waits out the read timeout, seen as a 15 s stall).
_INHERITED: list[Any] = []


class StorageError(OSError):
    """An object store kept failing after its retries: the message names the URL."""


class DamagedDownload(StorageError):
    """A download arrived damaged (the client's own checksum or length check failed): fetching
    it again may succeed, as for a download that fails ladle's checksums."""


class MissingBucket(FileNotFoundError):
    """The bucket a URL names does not exist (at the endpoint the store was reached at)."""


# botocore's names for a body that arrived damaged (its checksum, or a short read)
_DAMAGED = {"FlexibleChecksumError", "IncompleteReadError", "ResponseStreamingError"}

# the packages fsspec needs for the protocols ladle names; the storage extra brings s3fs only
_PACKAGES = {
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "adl": "adlfs",
}


def _is_missing_bucket(error: BaseException) -> bool:
    """s3fs turns S3's NoSuchBucket into a plain FileNotFoundError, the botocore error (which
    holds the code) its cause: for a write, every missing object looks alike otherwise."""
    seen: BaseException | None = error
    for _ in range(4):  # the chain is short; a bound keeps a cyclic one from looping
        if seen is None:
            return False
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_url(path: object) -> bool:
    """``path`` is a str of the form ``scheme://...``."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def local_path(url: str) -> Path | None:
    """The local path a ``file://`` URL names (read by memory map, with no cache), else None."""
    if url.startswith("file://"):
        return Path(url[len("file://") :] or "/")
    return None


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise ImportError(
            f"reading or writing shards at a URL needs fsspec (and s3fs for s3://, gcsfs for "
            f"gs://, adlfs for az://); install them with {INSTALL_HINT}"
        ) from None
    return fsspec


class Store:
    """The object-store directory ``url``; a filesystem is made per process, on first use.

    Pickling sends the URL and options: fsspec filesystems hold an event loop and sockets that
    belong to the process that made them (a forked worker makes its own).
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        timeout: float = STORE_TIMEOUT,
    ) -> None:
        match = _SCHEME.match(url)
        if match is None:
            raise ValueError(f"{url!r} is not a URL; pass e.g. 's3://bucket/prefix'")
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise TypeError(
                f"storage_options should be a dict of fsspec options or None, but got "
                f"storage_options={storage_options!r:.60} ({type(storage_options).__name__}); "
                f"pass e.g. {{'endpoint_url': 'http://127.0.0.1:9000'}}"
            )
        self.url = url.rstrip("/")
        self.protocol = match.group(1).lower()
        self.storage_options = dict(storage_options or {})
        self.timeout = check_number(
            timeout, "store_timeout", minimum=0, fix="pass seconds, e.g. store_timeout=60"
        )
        if self.timeout == 0:
            raise ValueError(
                "store_timeout=0 would fail every request to the store; pass seconds, e.g. "
                "store_timeout=60"
            )
        self._fs: tuple[int, Any, str] | None = None  # (pid, filesystem, root path)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _options(self) -> dict[str, Any]:
        if self.protocol not in ("s3", "s3a"):
            return dict(self.storage_options)
        options = {**S3_DEFAULTS, **self.storage_options}
        if "config_kwargs" in self.storage_options:  # the user's config wins key by key
            options["config_kwargs"] = {
                **S3_DEFAULTS["config_kwargs"],
                **self.storage_options["config_kwargs"],
            }
        return options

    def filesystem(self) -> tuple[Any, str]:
        """(fsspec filesystem, root path inside it) for this process."""
        if self._fs is None or self._fs[0] != os.getpid():
            if self._fs is not None:
                _INHERITED.append(self._fs[1])
            fsspec = _fsspec()
            if self.protocol not in fsspec.available_protocols():
                raise ValueError(
                    f"{self.url}: fsspec knows no protocol {self.protocol!r}; check the URL "
                    f"(e.g. s3://bucket/prefix), or install the fsspec filesystem package for it"
                )
            try:
                # fsspec's instance cache is per process (it clears itself after a fork), so
                # datasets of one store share one client, and a worker makes its own
                fs, root = fsspec.core.url_to_fs(self.url, **self._options())
            except ImportError as error:
                package = _PACKAGES.get(self.protocol)
                if package is not None:
                    raise ImportError(
                        f"{self.url}: {self.protocol}:// URLs need {package}, which is not "
                        f"installed; install it with pip install {package} (ladle[storage] "
                        f"brings s3fs, not {package})"
                    ) from None
                raise ImportError(
                    f"{self.url}: fsspec needs another package for {self.protocol}:// "
                    f"({error}); install it, e.g. {INSTALL_HINT}"
                ) from None
            self._fs = (os.getpid(), fs, root.rstrip("/"))
        return self._fs[1], self._fs[2]

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _path(self, name: str) -> tuple[Any, str]:
        fs, root = self.filesystem()
        return fs, f"{root}/{name}" if name else root

    def _call(
        self, name: str, action: str, call: Callable[..., Any], size: int = 0, bounded: bool = True
    ) -> Any:
        """``call(fs, path of name, **deadline)``, within this store's deadline for a call
        moving ``size`` bytes; what fails is raised as an error naming the URL."""
        fs, path = self._path(name)
        deadline = self.timeout + size / 2**20 * _SECONDS_PER_MIB
        # fsspec's sync wrappers of an async filesystem (s3fs, gcsfs, adlfs) take ``timeout``
        # and cancel the call when it passes; a synchronous one would take it as an option
        limit = {"timeout": deadline} if bounded and getattr(fs, "async_impl", False) else {}
        try:
            return call(fs, path, **limit)
        except Exception as error:
            if isinstance(error, _fsspec().exceptions.FSTimeoutError):
                raise StorageError(
                    f"{self.url_of(name)}: {action} got no complete answer within {deadline:.1f} "
                    f"s (store_timeout={self.timeout:g}, plus 1 s per MiB), retries included; "
                    f"the store stopped answering, or kept failing (dropped connections, 5xx) "
                    f"through every retry: check it and the network, or pass a larger "
                    f"store_timeout"
                ) from None
            raise self._failed(name, action, error) from error

    def _failed(self, name: str, action: str, error: Exception) -> Exception:
        url = self.url_of(name) if name else self.url
        if isinstance(error, FileNotFoundError) and _is_missing_bucket(error):
            bucket = self.url.split("://", 1)[1].split("/", 1)[0]
            return MissingBucket(
                f"{url}: the bucket {bucket!r} does not exist; create it, or check the URL (and "
                f"storage_options' endpoint_url: the bucket may be at another endpoint)"
            )
        if isinstance(error, FileNotFoundError):
            return FileNotFoundError(
                f"{url}: no such object; check the URL (and storage_options' endpoint_url)"
            )
        if isinstance(error, PermissionError):
            return PermissionError(
                f"{url}: access denied ({error}); check the credentials (environment, profile, "
                f"or storage_options' key and secret)"
            )
        kind = type(error).__name__
        damaged = kind in _DAMAGED or type(error.__cause__).__name__ in _DAMAGED
        failure = DamagedDownload if damaged else StorageError
        return failure(f"{url}: {action} failed: {kind}: {error}")

    def read_bytes(self, name: str) -> bytes:
        """The whole object ``name``."""
        data: bytes = self._call(name, "reading", lambda fs, path, **t: fs.cat_file(path, **t))
        return data

    def download(self, name: str, destination: Path, size: int = 0) -> None:
        """Copy the object ``name`` (``size`` bytes, if known) to the local file
        ``destination``."""
        local = os.fspath(destination)
        self._call(name, "downloading", lambda fs, path, **t: fs.get_file(path, local, **t), size)

    def upload(self, source: Path, name: str) -> None:
        """Copy the local file ``source`` to the object ``name`` (replacing it)."""
        local = os.fspath(source)
        size = os.path.getsize(local)
        # no deadline: cancelling s3fs's multipart upload from outside skips its abort, which
        # leaves the parts uploaded so far in the bucket (billed) until a lifecycle rule; the
        # clients' own bounded retries end a failing upload with its cleanup done
        self._call(
            name,
            "uploading",
            lambda fs, path, **t: fs.put_file(local, path, **t),
            size,
            bounded=False,
        )

    def write_bytes(self, name: str, data: bytes) -> None:
        self._call(name, "writing", lambda fs, path, **t: fs.pipe_file(path, data, **t), len(data))

    def remove(self, name: str) -> None:
        """Delete the object ``name``; one that is already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self._call(name, "deleting", lambda fs, path, **t: fs.rm_file(path, **t))

    def names(self) -> list[str]:
        """The object names directly under the directory (none if it does not exist; a
        writer lists first, so a missing bucket is named before anything is encoded)."""
        fs, root = self.filesystem()
        fs.invalidate_cache(root)
        try:
            listed = self._call("", "listing", lambda fs, path, **t: fs.ls(path, detail=False, **t))
        except MissingBucket:
            raise
        except FileNotFoundError:
            return []
        return sorted(str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in listed)
