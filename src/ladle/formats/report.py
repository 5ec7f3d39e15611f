"""What ``ladle inspect`` reports about a shard directory, and the full checksum pass."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ladle.errors import FormatError
from ladle.formats.reader import ShardDataset
from ladle.formats.schema import Kind
from ladle.formats.shardfile import FORMAT_VERSION

__all__ = ["FieldReport", "describe", "format_report", "verify_all"]


@dataclass(frozen=True)
class FieldReport:
    name: str
    kind: str
    dtype: str  # "" for Python scalars, bytes and str
    shape: str  # the fixed shape, "varies" (with ndim), or ""
    bytes: int  # payload bytes over all records


def describe(dataset: ShardDataset) -> list[FieldReport]:
    """One report per field: its kind, dtype, shape across shards and total size."""
    schema = dataset.schema
    if schema is None:
        return []
    shards = dataset._open()
    reports = []
    for position, field in enumerate(schema.fields):
        shapes = {shard.slots[position].shape for shard in shards}
        total = 0
        for shard in shards:
            slot_shape = shard.slots[position].shape
            column = shard.columns[position]
            if field.kind in (Kind.BYTES, Kind.STR) or (
                field.kind is Kind.ARRAY and slot_shape is None
            ):
                total += int(np.asarray(column[:, 1], dtype=np.uint64).sum())
            else:
                total += shard.records * column.itemsize * math.prod(column.shape[1:])
        shape = ""
        if field.kind is Kind.ARRAY:
            fixed = next(iter(shapes)) if len(shapes) == 1 else None
            shape = str(fixed) if fixed is not None else f"varies, {field.ndim}-d"
        reports.append(
            FieldReport(
                field.name,
                field.kind.value,
                "" if field.dtype is None else str(np.dtype(field.dtype)),
                shape,
                total,
            )
        )
    return reports


def verify_all(
    dataset: ShardDataset, on_records: Callable[[int], None] | None = None, limit: int = 20
) -> tuple[int, int, list[FormatError]]:
    """Check every record's checksum: (records checked, records damaged, the first ``limit``
    failures). Records are checked a chunk at a time; a chunk that fails is checked record by
    record to find every damaged one."""
    errors: list[FormatError] = []
    checked = damaged = 0
    for shard, size in zip(dataset._open(), dataset.shard_sizes, strict=True):
        for start in range(0, size, _CHUNK):
            records = np.arange(start, min(start + _CHUNK, size))
            try:
                shard.check_many(records)
            except FormatError:
                for record in records.tolist():
                    try:
                        shard.check(record)
                    except FormatError as error:
                        damaged += 1
                        if len(errors) < limit:
                            errors.append(error)
            checked += len(records)
            if on_records is not None:
                on_records(len(records))
    return checked, damaged, errors


_CHUNK = 4096


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover


def format_report(dataset: ShardDataset, fields: bool = True) -> str:
    """The header of ``ladle inspect``: counts, sizes, metadata and (unless ``fields=False``,
    which reads only the index: no shard is fetched from a URL) fields."""
    files = dataset.shard_files
    on_disk = sum(dataset.shard_bytes)
    records = len(dataset)
    lines = [
        f"{dataset.path}: ladle shards, format version {FORMAT_VERSION}",
        f"records   {records:,} in {len(files)} shard{'s' if len(files) != 1 else ''}, "
        f"{_size(on_disk)} on disk"
        + (f" ({_size(on_disk / records)} a record)" if records else ""),
    ]
    if dataset.metadata:
        text = json.dumps(dataset.metadata)
        lines.append(f"metadata  {text if len(text) <= 200 else text[:197] + '...'}")
    reports = describe(dataset) if fields else []
    if reports:
        structure = dataset.schema.structure.value if dataset.schema else ""
        lines.append(f"samples   {structure} of {len(reports)} field{'s' * (len(reports) != 1)}")
        rows = [("field", "kind", "dtype", "shape", "size")]
        rows += [(r.name, r.kind, r.dtype, r.shape, _size(r.bytes)) for r in reports]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)
