"""Writing one shard file (``encode_shard``); reading one is :class:`ShardFile` (``shardread``).

The byte layout is described in :mod:`ladle.formats.layout`. ``ShardFile`` and
``FORMAT_VERSION`` are re-exported here, where they have always been imported from.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from ladle.formats.layout import (
    ALIGN,
    END,
    FORMAT_VERSION,
    MAGIC,
    MAX_FIXED_BYTES,
    MAX_ROW_BYTES,
    PAYLOAD_ALIGN,
    PREAMBLE,
    Slot,
    round_up,
    slot_dtype,
)
from ladle.formats.schema import Kind, Schema
from ladle.formats.shardread import ShardFile

__all__ = ["FORMAT_VERSION", "ShardFile", "encode_shard"]


def encode_shard(schema: Schema, records: Sequence[list[Any]], out: BinaryIO) -> int:
    """Write ``records`` (field values in schema order, already encoded) as one shard to ``out``.

    Returns the crc32 of the header, which the dataset index records.
    """
    count = len(records)
    shapes: list[tuple[int, ...] | None] = []
    fixed_bytes = 0
    for position, field in enumerate(schema.fields):
        shape: tuple[int, ...] | None = None
        if field.kind is Kind.ARRAY:
            first = records[0][position] if count else None
            size = 0 if first is None else first.nbytes
            if (
                first is not None
                and size < MAX_FIXED_BYTES
                and fixed_bytes + size < MAX_ROW_BYTES
                and all(record[position].shape == first.shape for record in records)
            ):
                shape, fixed_bytes = first.shape, fixed_bytes + size
        shapes.append(shape)
    names, formats, offsets, slots = ["crc"], [np.dtype("<u4")], [0], []
    end, row_align = 4, 4
    for position, field in enumerate(schema.fields):
        dtype = slot_dtype(field, shapes[position])
        align = min(max(dtype.base.alignment, 1), PAYLOAD_ALIGN)
        offset = round_up(end, align)
        names.append(f"f{position}")
        formats.append(dtype)
        offsets.append(offset)
        slots.append(Slot(offset, shapes[position]))
        end, row_align = offset + dtype.itemsize, max(row_align, align)
    row_size = round_up(end, row_align)
    row_dtype = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": row_size}
    )
    table = np.zeros(count, dtype=row_dtype)
    heap = bytearray()
    pieces: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    for position, field in enumerate(schema.fields):
        column = table[f"f{position}"]
        if slots[position].shape is not None or field.kind not in (
            Kind.ARRAY,
            Kind.BYTES,
            Kind.STR,
        ):
            for i, record in enumerate(records):
                column[i] = record[position]
            continue
        for i, record in enumerate(records):
            value = record[position]
            if field.kind is Kind.ARRAY:
                payload = value.tobytes()
                refs = [0, len(payload), *value.shape]
            else:
                payload = value.encode("utf-8") if field.kind is Kind.STR else value
                refs = [0, len(payload)]
            heap.extend(bytes(round_up(len(heap), PAYLOAD_ALIGN) - len(heap)))
            refs[0] = len(heap)
            heap.extend(payload)
            column[i] = refs
            pieces[i].append((refs[0], len(payload)))
    rows = table.view(np.uint8).data
    heap_view = memoryview(heap)
    crcs = table["crc"]
    for i in range(count):
        crc = zlib.crc32(rows[i * row_size + 4 : (i + 1) * row_size])
        for start, length in pieces[i]:
            crc = zlib.crc32(heap_view[start : start + length], crc)
        crcs[i] = crc
    del heap_view

    header_without_offsets = {
        "records": count,
        "row_size": row_size,
        "schema": schema.to_json(),
        "slots": [slot.to_json() for slot in slots],
        "heap_size": len(heap),
        # makes the header, and so the index's record of it, differ between shards of other data
        "records_crc": zlib.crc32(crcs.copy().view(np.uint8).data),
    }
    # the offsets depend on the header's own length, which grows with them: iterate to the
    # fixed point (the offsets only grow, so it comes within a few rounds)
    table_offset = 0
    while True:
        heap_offset = round_up(table_offset + count * row_size, ALIGN)
        header_data: dict[str, Any] = {
            **header_without_offsets,
            "table_offset": table_offset,
            "heap_offset": heap_offset,
        }
        header = json.dumps(header_data, separators=(",", ":")).encode()
        needed = round_up(PREAMBLE.size + len(header), ALIGN)
        if needed == table_offset:
            break
        table_offset = needed
    header_crc = zlib.crc32(header)
    out.write(PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), header_crc, 0))
    out.write(header)
    out.write(bytes(table_offset - PREAMBLE.size - len(header)))
    out.write(table.view(np.uint8).data)
    out.write(bytes(heap_offset - table_offset - count * row_size))
    out.write(heap)
    out.write(END)
    return header_crc
