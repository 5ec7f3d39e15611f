"""``write_shards``: any dataset of dict or tuple samples into checksummed shard files.

Shards are written into a staging directory inside ``out_dir`` and moved into place only when
all of them are complete; the index goes last. If the write fails or is interrupted (Ctrl-C
included), the staging directory is removed and whatever the directory held before is left as
it was; a writer killed outright leaves its staging directory, which the next write removes.
A directory never holds a half-written shard, or an index that reads as valid over wrong data.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ladle.formats.index import INDEX_NAME, Index, ShardEntry, shard_name, write_index
from ladle.formats.progress import Progress
from ladle.formats.schema import Kind, Schema, SchemaError, encode_value, infer_schema
from ladle.formats.shardfile import encode_shard
from ladle.formats.storage import Store, is_url, local_path
from ladle.formats.upload import upload_shards
from ladle.validation import check_bool, check_int, check_path

__all__ = ["DEFAULT_SHARD_BYTES", "write_shards"]

DEFAULT_SHARD_BYTES = 128 * 2**20
_STAGING = ".writing-"
_SLOT_OVERHEAD = 16  # bytes a field costs besides its payload, for sizing shards


def write_shards(
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    samples_per_shard: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    overwrite: bool = False,
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
    unless ``overwrite=True``. ``out_dir`` may be a URL (``s3://bucket/prefix``; returned as
    given), written through fsspec with ``storage_options``: shards are uploaded as they are
    made, and the index last (see :mod:`ladle.formats.upload`).
    """
    if not (_is_map_style(dataset) or isinstance(dataset, Iterable)) or isinstance(
        dataset, str | bytes | Mapping
    ):
        raise TypeError(
            f"write_shards takes a dataset (len and [i]) or an iterable of samples, but got "
            f"dataset={dataset!r:.60} ({type(dataset).__name__}); pass e.g. a list of dicts"
        )
    location = check_path(out_dir, "out_dir", fix="name the directory to write, e.g. ./shards")
    local = local_path(location) if is_url(location) else Path(location)
    shard_bytes = check_int(
        shard_bytes, "shard_bytes", minimum=1, fix="pass a positive number of bytes, e.g. 2**27"
    )
    if samples_per_shard is not None:
        samples_per_shard = check_int(
            samples_per_shard,
            "samples_per_shard",
            minimum=1,
            fix="pass a positive int, or None to size shards by shard_bytes alone",
        )
    progress = check_bool(progress, "progress")
    overwrite = check_bool(overwrite, "overwrite")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata should be a dict (JSON-serialisable) or None, but got "
            f"metadata={metadata!r:.60} ({type(metadata).__name__}); pass e.g. "
            f"metadata={{'source': 'mnist'}}"
        )
    meta = dict(metadata or {})
    try:
        same = json.loads(json.dumps(meta)) == meta
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata should be JSON-serialisable (str keys; str, number, bool, None, list and "
            f"dict values), but {error}"
        ) from None
    if not same:
        raise ValueError(
            f"metadata should come back from JSON unchanged (str keys, lists rather than "
            f"tuples), but {meta!r} does not; convert it first"
        )
    total = len(dataset) if _is_map_style(dataset) else None
    if local is None:
        store = Store(location, storage_options)
        with Progress(total, f"writing {store.url}", progress) as bar:
            upload_shards(
                store, _batches(dataset, shard_bytes, samples_per_shard, bar), meta, overwrite
            )
        return location
    if storage_options is not None:
        raise ValueError(
            f"storage_options are for object stores, but out_dir {location!r} is local; drop "
            f"storage_options, or pass a URL such as s3://bucket/prefix"
        )
    directory = local
    old = _existing(directory, overwrite)
    # shards are written aside, and replace what the directory held only once all are complete
    staging = directory / f"{_STAGING}{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        entries: list[ShardEntry] = []
        schema: Schema | None = None
        with Progress(total, f"writing {directory}", progress) as bar:
            for schema, records in _batches(dataset, shard_bytes, samples_per_shard, bar):
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
    if (old or (directory / INDEX_NAME).exists()) and not overwrite:
        raise FileExistsError(
            f"out_dir {directory} already holds ladle shards; pass overwrite=True (ladle pack "
            f"--overwrite) to replace them, or choose another directory"
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


def _is_map_style(dataset: Any) -> bool:
    from ladle.dataset import is_iterable_dataset

    return (
        not is_iterable_dataset(dataset)
        and hasattr(dataset, "__len__")
        and hasattr(dataset, "__getitem__")
    )


def _samples(dataset: Any) -> Iterator[Any]:
    if _is_map_style(dataset):
        for i in range(len(dataset)):
            yield dataset[i]
    else:
        yield from dataset


def _batches(
    dataset: Any, shard_bytes: int, samples_per_shard: int | None, bar: Progress
) -> Iterator[tuple[Schema, list[list[Any]]]]:
    """The dataset's samples encoded and grouped into shards."""
    schema: Schema | None = None
    records: list[list[Any]] = []
    size = 0
    for index, sample in enumerate(_samples(dataset)):
        if schema is None:
            schema = infer_schema(sample)
        record = _encode(schema, sample, index)
        records.append(record)
        size += _size(record)
        bar.update()
        if size >= shard_bytes or len(records) == samples_per_shard:
            yield schema, records
            records, size = [], 0
    if records and schema is not None:
        yield schema, records


def _encode(schema: Schema, sample: Any, index: int) -> list[Any]:
    values = schema.split(sample, index)
    record = []
    for field, value in zip(schema.fields, values, strict=True):
        kind, encoded = encode_value(value, field.name, index)
        if kind is not field.kind:
            raise SchemaError(
                f"field {field.name!r} of sample {index} is {kind.value}, but it was "
                f"{field.kind.value} in sample 0; every sample's fields must have the same kinds"
            )
        if kind is Kind.SCALAR and encoded.dtype.str != field.dtype:
            raise SchemaError(
                f"field {field.name!r} of sample {index} is a NumPy {encoded.dtype} scalar, but "
                f"sample 0's was {np.dtype(field.dtype)}; cast every sample's field to one dtype"
            )
        if kind is Kind.ARRAY and (encoded.dtype.str != field.dtype or encoded.ndim != field.ndim):
            raise SchemaError(
                f"field {field.name!r} of sample {index} is an array of dtype {encoded.dtype} "
                f"with {encoded.ndim} dimensions, but sample 0's was {np.dtype(field.dtype)} "
                f"with {field.ndim}; cast every sample's field to one dtype and ndim"
            )
        record.append(encoded)
    return record


def _size(record: list[Any]) -> int:
    total = 0
    for value in record:
        if hasattr(value, "nbytes"):
            total += value.nbytes
        elif isinstance(value, bytes | str):
            total += len(value)
        total += _SLOT_OVERHEAD
    return total
