"""``write_shards``: any dataset of dict or tuple samples into checksummed shard files.

Each shard is written under a temporary name and renamed into place when complete; the index
goes last. If the write fails or is interrupted (Ctrl-C included), every file it made is removed,
so a directory never holds a half-written shard or an index that reads as valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ladle.formats.index import INDEX_NAME, Index, ShardEntry, write_index
from ladle.formats.progress import Progress
from ladle.formats.schema import Kind, Schema, SchemaError, encode_value, infer_schema
from ladle.formats.shardfile import encode_shard

__all__ = ["DEFAULT_SHARD_BYTES", "write_shards"]

DEFAULT_SHARD_BYTES = 128 * 2**20
_SLOT_OVERHEAD = 16  # bytes a field costs besides its payload, for sizing shards


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.ladle"


def write_shards(
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    samples_per_shard: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
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
    """
    if type(shard_bytes) is not int or shard_bytes <= 0:
        raise ValueError(f"shard_bytes should be a positive int, but got {shard_bytes!r}")
    if samples_per_shard is not None and (
        type(samples_per_shard) is not int or samples_per_shard <= 0
    ):
        raise ValueError(
            f"samples_per_shard should be a positive int or None, but got {samples_per_shard!r}"
        )
    meta = dict(metadata or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata should be JSON-serialisable (str keys; str, number, bool, None, list and "
            f"dict values), but {error}"
        ) from None
    directory = Path(out_dir)
    _prepare(directory, overwrite)
    total = len(dataset) if _is_map_style(dataset) else None
    written: list[Path] = []
    partial: Path | None = None
    try:
        entries: list[ShardEntry] = []
        schema: Schema | None = None
        with Progress(total, f"writing {directory}", progress) as bar:
            for schema, records in _batches(dataset, shard_bytes, samples_per_shard, bar):
                final = directory / shard_name(len(entries))
                partial = directory / f".{final.name}.partial"
                with open(partial, "wb") as out:
                    header_crc = encode_shard(schema, records, out)
                    size = out.tell()
                os.replace(partial, final)
                written.append(final)
                partial = None
                entries.append(ShardEntry(final.name, len(records), size, header_crc))
        index = Index(sum(e.records for e in entries), tuple(entries), schema, meta)
        write_index(directory, index)
    except BaseException:
        for path in [*written, partial, directory / f".{INDEX_NAME}.partial"]:
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return directory


def _prepare(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"out_dir {directory} is a file; pass a directory to write into")
    directory.mkdir(parents=True, exist_ok=True)
    old = sorted(directory.glob("shard-*.ladle"))
    index = directory / INDEX_NAME
    # left by a writer that was killed (SIGKILL gives it no chance to clean up)
    for leftover in directory.glob(".*.partial"):
        leftover.unlink(missing_ok=True)
    if not (old or index.exists()):
        return
    if not overwrite:
        raise FileExistsError(
            f"out_dir {directory} already holds ladle shards; pass overwrite=True (ladle pack "
            f"--overwrite) to replace them, or choose another directory"
        )
    # the index goes first: from then on the old shards no longer read as a dataset
    index.unlink(missing_ok=True)
    for path in old:
        path.unlink()


def _is_map_style(dataset: Any) -> bool:
    from ladle.dataset import IterableDataset

    return (
        not isinstance(dataset, IterableDataset)
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
        if kind in (Kind.ARRAY, Kind.SCALAR) and (
            encoded.dtype.str != field.dtype or (kind is Kind.ARRAY and encoded.ndim != field.ndim)
        ):
            raise SchemaError(
                f"field {field.name!r} of sample {index} is an array of dtype {encoded.dtype} "
                f"with {encoded.ndim} dimensions, but sample 0's was {field.dtype} with "
                f"{field.ndim}; cast every sample's field to one dtype and ndim"
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
