"""Samples to encoded records, grouped into shards: what the one-process writer and the parts of
a parallel write share.

Where a shard closes is a :class:`ShardRule`. A map-style dataset is cut on a grid of equal
record counts that depends only on the dataset and the sizes asked for, never on how many
processes write it, so ``write_shards(jobs=N)`` gives the same shards for every N.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle.formats.progress import Progress
from ladle.formats.schema import Kind, Schema, SchemaError, encode_value, infer_schema
from ladle.validation import check_int

__all__ = [
    "check_shard_sizes",
    "ESTIMATE_SAMPLES",
    "ShardRule",
    "encode_record",
    "grid_rule",
    "is_map_style",
    "record_size",
    "samples",
    "shard_batches",
    "stream_rule",
]

SLOT_OVERHEAD = 16  # bytes a field costs besides its payload, for sizing shards
ESTIMATE_SAMPLES = 8  # samples read, spread over a dataset, to size its grid


@dataclass(frozen=True)
class ShardRule:
    """A shard closes once it holds ``limit_bytes`` of data or ``limit_records`` records, and
    after every record whose global index + 1 is a multiple of ``step`` (None: no grid)."""

    limit_bytes: int
    limit_records: int | None = None
    step: int | None = None


def check_shard_sizes(shard_bytes: Any, samples_per_shard: Any) -> tuple[int, int | None]:
    """The shard-size arguments of every writer (write_shards, write_part), checked."""
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
    return shard_bytes, samples_per_shard


def stream_rule(shard_bytes: int, samples_per_shard: int | None) -> ShardRule:
    """The rule of a stream: a shard closes at ``shard_bytes`` or ``samples_per_shard``."""
    return ShardRule(shard_bytes, samples_per_shard)


def grid_rule(dataset: Any, shard_bytes: int, samples_per_shard: int | None) -> ShardRule:
    """The rule of a map-style dataset: shards of ``step`` records each (the last fewer).

    ``step`` is the number of records that fill ``shard_bytes`` at the mean size of
    ESTIMATE_SAMPLES samples spread evenly over the dataset (for samples of one size, exactly
    where a stream's shards close), at most ``samples_per_shard``. A shard closes early at
    twice ``shard_bytes``, should the samples read misjudge the rest.
    """
    n = len(dataset)
    if n == 0:
        return stream_rule(shard_bytes, samples_per_shard)
    picks = sorted({i * n // ESTIMATE_SAMPLES for i in range(ESTIMATE_SAMPLES)})
    first = dataset[0]
    schema = infer_schema(first)
    sizes = [record_size(encode_record(schema, dataset[i] if i else first, i)) for i in picks]
    step = max(1, -(-shard_bytes * len(sizes) // max(sum(sizes), 1)))  # ceil, in integers
    if samples_per_shard is not None:
        step = min(step, samples_per_shard)
    return ShardRule(2 * shard_bytes, None, step)


def is_map_style(dataset: Any) -> bool:
    from ladle.dataset import is_iterable_dataset

    return (
        not is_iterable_dataset(dataset)
        and hasattr(dataset, "__len__")
        and hasattr(dataset, "__getitem__")
    )


def samples(dataset: Any, start: int = 0, stop: int | None = None) -> Iterator[Any]:
    """A map-style dataset's samples ``start..stop`` in index order, or an iterable's all."""
    if is_map_style(dataset):
        for i in range(start, len(dataset) if stop is None else stop):
            yield dataset[i]
    else:
        yield from dataset


def shard_batches(
    items: Iterable[Any], rule: ShardRule, bar: Progress, start: int = 0
) -> Iterator[tuple[Schema, list[list[Any]]]]:
    """The samples encoded and grouped into shards; ``start`` is the first one's global index
    (for the grid and for error messages)."""
    schema: Schema | None = None
    records: list[list[Any]] = []
    size = 0
    step = rule.step
    for index, sample in enumerate(items, start):
        if schema is None:
            schema = infer_schema(sample)
        record = encode_record(schema, sample, index)
        records.append(record)
        size += record_size(record)
        bar.update()
        if (
            size >= rule.limit_bytes
            or len(records) == rule.limit_records
            or (step is not None and (index + 1) % step == 0)
        ):
            yield schema, records
            records, size = [], 0
    if records and schema is not None:
        yield schema, records


def encode_record(schema: Schema, sample: Any, index: int) -> list[Any]:
    """Sample ``index``'s field values, encoded, checked against ``schema``."""
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


def record_size(record: list[Any]) -> int:
    total = 0
    for value in record:
        if hasattr(value, "nbytes"):
            total += value.nbytes
        elif isinstance(value, bytes | str):
            total += len(value)
        total += SLOT_OVERHEAD
    return total
