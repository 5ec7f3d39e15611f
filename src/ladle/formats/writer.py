"""``write_shards``: any dataset of dict or tuple samples into checksummed shard files.

Shards are written into a staging directory inside ``out_dir`` and moved into place only when
all of them are complete; the index goes last. If the write fails or is interrupted (Ctrl-C
included), the staging directory is removed and whatever the directory held before is left as
it was; a writer killed outright leaves its staging directory, which the next write removes.
A directory never holds a half-written shard, or an index that reads as valid over wrong data.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ladle.formats.index import (
    INDEX_NAME,
    Index,
    ShardEntry,
    check_metadata,
    check_replaceable,
    shard_name,
    write_index,
)
from ladle.formats.progress import Progress
from ladle.formats.records import (
    check_shard_sizes,
    grid_rule,
    is_map_style,
    samples,
    shard_batches,
    stream_rule,
)
from ladle.formats.schema import Schema
from ladle.formats.shardfile import encode_shard
from ladle.formats.storage import Store, is_url, local_path
from ladle.formats.upload import upload_shards
from ladle.validation import check_bool, check_int, check_path

__all__ = ["DEFAULT_SHARD_BYTES", "shard_name", "write_shards"]

DEFAULT_SHARD_BYTES = 128 * 2**20
_STAGING = ".writing-"


def write_shards(
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    samples_per_shard: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    storage_options: Mapping[str, Any] | None = None,
) -> Path | str:
    """Write every sample of ``dataset`` into shards under ``out_dir``; returns the directory.

    ``dataset`` is a map-style dataset (``len`` and ``[i]``, read in index order) or any
    iterable. Samples are dicts with str keys, tuples, lists or single values; their fields
    are NumPy arrays (bool, integer, float or complex, any shape), NumPy scalars, int, float,
    bool, bytes or str (torch tensors are stored as arrays). Every sample must have the fields,
    kinds, dtypes and array ndims of the first; array shapes may vary. A shard closes once it
    holds ``shard_bytes`` of data, or ``samples_per_shard`` samples. ``metadata`` is any
    JSON-serialisable dict, kept in the index (``ShardDataset.metadata``). ``progress=True``
    shows a progress bar (tqdm when installed). ``out_dir`` must not hold shards already,
    unless ``overwrite=True``.

    A map-style dataset's shards hold equal numbers of samples (the last fewer): as many as
    fill ``shard_bytes`` at the mean size of a few samples spread over the dataset, at most
    ``samples_per_shard``; a shard closes early at twice ``shard_bytes`` should those samples
    misjudge the rest. ``jobs=N`` writes it with N processes (see ``ladle.formats.parallel``),
    each a contiguous range of samples, giving the same files as ``jobs=1``; they fork where
    fork exists, so the dataset need not pickle there (elsewhere it must).

    ``out_dir`` may be a URL (``s3://bucket/prefix``; returned as given), written through
    fsspec with ``storage_options``: shards are uploaded as they are made, and the index last
    (see :mod:`ladle.formats.upload`).
    """
    if not (is_map_style(dataset) or isinstance(dataset, Iterable)) or isinstance(
        dataset, str | bytes | Mapping
    ):
        raise TypeError(
            f"write_shards takes a dataset (len and [i]) or an iterable of samples, but got "
            f"dataset={dataset!r:.60} ({type(dataset).__name__}); pass e.g. a list of dicts"
        )
    location = check_path(out_dir, "out_dir", fix="name the directory to write, e.g. ./shards")
    local = local_path(location) if is_url(location) else Path(location)
    shard_bytes, samples_per_shard = check_shard_sizes(shard_bytes, samples_per_shard)
    progress = check_bool(progress, "progress")
    overwrite = check_bool(overwrite, "overwrite")
    meta = check_metadata(metadata)
    jobs = check_int(jobs, "jobs", minimum=1, fix="pass the number of processes, e.g. jobs=2")
    total = len(dataset) if is_map_style(dataset) else None
    if local is None:
        if jobs > 1:
            raise ValueError(
                f"jobs={jobs} writes parts into a local directory, but out_dir={location!r} is "
                f"a URL; pack locally with jobs= and upload the directory, or pass jobs=1"
            )
        rule = (
            grid_rule(dataset, shard_bytes, samples_per_shard)
            if total is not None
            else stream_rule(shard_bytes, samples_per_shard)
        )
        store = Store(location, storage_options)
        with Progress(total, f"writing {store.url}", progress) as bar:
            upload_shards(store, shard_batches(samples(dataset), rule, bar), meta, overwrite)
        return location
    if storage_options is not None:
        raise ValueError(
            f"storage_options are for object stores, but out_dir {location!r} is local; drop "
            f"storage_options, or pass a URL such as s3://bucket/prefix"
        )
    directory = local
    if jobs > 1:
        from ladle.formats.parallel import write_parallel

        return write_parallel(
            dataset,
            directory,
            jobs=jobs,
            shard_bytes=shard_bytes,
            samples_per_shard=samples_per_shard,
            metadata=meta,
            progress=progress,
            overwrite=overwrite,
        )
    old = _existing(directory, overwrite)
    rule = (
        grid_rule(dataset, shard_bytes, samples_per_shard)
        if total is not None
        else stream_rule(shard_bytes, samples_per_shard)
    )
    # shards are written aside, and replace what the directory held only once all are complete
    staging = directory / f"{_STAGING}{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        entries: list[ShardEntry] = []
        schema: Schema | None = None
        with Progress(total, f"writing {directory}", progress) as bar:
            for schema, records in shard_batches(samples(dataset), rule, bar):
                name = shard_name(len(entries))
                with open(staging / name, "wb") as out:
                    header_crc = encode_shard(schema, records, out)
                    size = out.tell()
                entries.append(ShardEntry(name, len(records), size, header_crc))
        index = Index(sum(e.records for e in entries), tuple(entries), schema, meta)
        # the old index goes first: from then on the old shards no longer read as a dataset
        (directory / INDEX_NAME).unlink(missing_ok=True)
        for path in old:
            path.unlink(missing_ok=True)
        for entry in entries:
            os.replace(staging / entry.file, directory / entry.file)
        write_index(directory, index)
    except BaseException:
        (directory / f".{INDEX_NAME}.partial").unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _existing(directory: Path, overwrite: bool) -> list[Path]:
    """The shard files ``directory`` holds now, to be replaced; refuses them unless overwrite."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"out_dir {directory} is a file; pass a directory to write into")
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(f"{_STAGING}*"):
        if not _alive(leftover.name[len(_STAGING) :].split("-")[0]):
            shutil.rmtree(leftover, ignore_errors=True)  # a writer that was killed
    old = sorted(directory.glob("shard-*.ladle"))
    check_replaceable(
        directory, bool(old), (directory / INDEX_NAME).exists(), overwrite, "directory"
    )
    return old


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
