"""One shard file: its byte layout, how to write it, and how to read it without trusting it.

Layout (all integers little-endian)::

    0   magic b"LADLSHRD"            8 bytes
    8   format version               u32
    12  header length L              u32
    16  crc32 of the header          u32
    20  reserved, zero               u32
    24  header: UTF-8 JSON           L bytes   (records, row size, offsets, schema, slots,
                                               crc32 of the records' crcs)
    T   table: one row per record    records x row_size bytes, 64-byte aligned
    H   heap: variable-size payloads heap_size bytes, 64-byte aligned, payloads 16-aligned
    end magic b"LADLEND!"            8 bytes

A row holds the record's crc32 (u32 at offset 0), then one slot per field: fixed-shape arrays
and scalars in place, so a record's array is a zero-copy view of the map and a batch is one
fancy-index gather per field; bytes, str and arrays whose shape varies within the shard as
(heap offset, byte length, dims...). A record's checksum covers its row after the crc, then its
heap payloads in field order. Whether an array field is fixed is decided per shard.

The reader validates every number before using it, so a damaged or hostile file raises
FormatError and never makes ladle read outside the file.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ladle._runtime.flags import shared_flags
from ladle.errors import FormatError
from ladle.formats.schema import (
    Field,
    Kind,
    Schema,
    SchemaError,
    is_count,
    is_shape,
)

__all__ = ["FORMAT_VERSION", "ShardFile", "encode_shard"]

MAGIC = b"LADLSHRD"
END = b"LADLEND!"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIIII")
_ALIGN = 64
_PAYLOAD_ALIGN = 16
# NumPy builds a row dtype only below 2 GiB: bigger arrays go to the heap, and a reader refuses
# rows or fixed slots beyond these before asking NumPy for them
MAX_FIXED_BYTES = 2**28
MAX_ROW_BYTES = 2**30
_DIM_LIMIT = 2**31


@dataclass(frozen=True)
class Slot:
    """Where a field lives in a row: ``shape`` is the fixed array shape (None: a heap reference)."""

    offset: int
    shape: tuple[int, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "shape": None if self.shape is None else list(self.shape)}


def _slot_dtype(field: Field, shape: tuple[int, ...] | None) -> np.dtype[Any]:
    kind = field.kind
    if kind is Kind.INT:
        return np.dtype("<i8")
    if kind is Kind.FLOAT:
        return np.dtype("<f8")
    if kind is Kind.BOOL:
        return np.dtype("u1")
    if kind is Kind.SCALAR:
        return np.dtype(field.dtype)
    if kind is Kind.ARRAY and shape is not None:
        return np.dtype((np.dtype(field.dtype), shape))
    refs = 2 + (field.ndim or 0) if kind is Kind.ARRAY else 2
    return np.dtype(("<u8", (refs,)))


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


# -- writing ------------------------------------------------------------------------------------


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
        dtype = _slot_dtype(field, shapes[position])
        align = min(max(dtype.base.alignment, 1), _PAYLOAD_ALIGN)
        offset = _round_up(end, align)
        names.append(f"f{position}")
        formats.append(dtype)
        offsets.append(offset)
        slots.append(Slot(offset, shapes[position]))
        end, row_align = offset + dtype.itemsize, max(row_align, align)
    row_size = _round_up(end, row_align)
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
            heap.extend(bytes(_round_up(len(heap), _PAYLOAD_ALIGN) - len(heap)))
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
        heap_offset = _round_up(table_offset + count * row_size, _ALIGN)
        header_data: dict[str, Any] = {
            **header_without_offsets,
            "table_offset": table_offset,
            "heap_offset": heap_offset,
        }
        header = json.dumps(header_data, separators=(",", ":")).encode()
        needed = _round_up(_PREAMBLE.size + len(header), _ALIGN)
        if needed == table_offset:
            break
        table_offset = needed
    header_crc = zlib.crc32(header)
    out.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), header_crc, 0))
    out.write(header)
    out.write(bytes(table_offset - _PREAMBLE.size - len(header)))
    out.write(table.view(np.uint8).data)
    out.write(bytes(heap_offset - table_offset - count * row_size))
    out.write(heap)
    out.write(END)
    return header_crc


# -- reading ------------------------------------------------------------------------------------


class ShardFile:
    """A shard held in ``buffer`` (a read-only mmap, or bytes): validated on construction."""

    def __init__(self, buffer: Any, path: str) -> None:
        self.path = path
        self._buffer = buffer
        self._view = memoryview(buffer)
        size = len(self._view)
        if size < _PREAMBLE.size + len(END):
            self._fail(f"it is {size} bytes, too short for a shard: the file is truncated")
        magic, version, header_size, header_crc, _ = _PREAMBLE.unpack_from(self._view, 0)
        if magic != MAGIC:
            self._fail(f"it does not start with {MAGIC!r}: this is not a ladle shard")
        if version != FORMAT_VERSION:
            self._fail(
                f"it is shard format version {version}, and this ladle reads version "
                f"{FORMAT_VERSION}: read it with the ladle that wrote it, or re-create it"
            )
        header_end = _PREAMBLE.size + header_size
        if header_end > size:
            self._fail(f"its header runs past the end of the file ({size} bytes): truncated")
        header_bytes = self._view[_PREAMBLE.size : header_end]
        if zlib.crc32(header_bytes) != header_crc:
            self._fail("its header fails its checksum: the file is corrupted")
        self.header_crc: int = header_crc
        try:
            header = json.loads(bytes(header_bytes))
        except (ValueError, RecursionError) as error:
            self._fail(f"its header is not valid JSON ({error})")
        self._parse(header, header_end, size)

    def _fail(self, message: str, record: int | None = None) -> Any:
        where = f"{self.path}" if record is None else f"{self.path}, record {record}"
        raise FormatError(f"{where}: {message}", self.path, record)

    def _parse(self, header: Any, header_end: int, size: int) -> None:
        if not isinstance(header, dict):
            self._fail("its header is not a JSON object")
        try:
            self.schema = Schema.from_json(header.get("schema"))
        except SchemaError as error:
            self._fail(f"its schema is invalid: {error}")
        records, row_size = header.get("records"), header.get("row_size")
        table_offset, heap_offset = header.get("table_offset"), header.get("heap_offset")
        heap_size, raw_slots = header.get("heap_size"), header.get("slots")
        if not all(map(is_count, (records, row_size, table_offset, heap_offset, heap_size))):
            self._fail("its header has a missing or invalid record count, size or offset")
        if not isinstance(raw_slots, list) or len(raw_slots) != len(self.schema.fields):
            self._fail("its header does not give one slot per field")
        if not (
            4 <= row_size < _DIM_LIMIT
            and table_offset >= header_end
            and table_offset + records * row_size <= heap_offset
            and heap_offset + heap_size + len(END) == size
        ):
            self._fail(
                f"its layout does not match its size of {size} bytes "
                f"(records={records}, row_size={row_size}, heap={heap_offset}+{heap_size}): "
                f"the file is truncated or corrupted"
            )
        if self._view[size - len(END) :] != END:
            self._fail(f"it does not end with {END!r}: the file is truncated or corrupted")
        self.records: int = records
        self.row_size: int = row_size
        self._table_offset, self._heap_offset, self._heap_size = (
            table_offset,
            heap_offset,
            heap_size,
        )
        self.slots = [
            self._slot(field, raw, row_size)
            for field, raw in zip(self.schema.fields, raw_slots, strict=True)
        ]
        names = ["crc"] + [f"f{i}" for i in range(len(self.slots))]
        formats = [np.dtype("<u4")] + [
            _slot_dtype(field, slot.shape)
            for field, slot in zip(self.schema.fields, self.slots, strict=True)
        ]
        offsets = [0] + [slot.offset for slot in self.slots]
        try:
            row_dtype = np.dtype(
                {"names": names, "formats": formats, "offsets": offsets, "itemsize": row_size}
            )
            table = np.frombuffer(self._buffer, row_dtype, count=records, offset=table_offset)
        except (ValueError, TypeError, OverflowError) as error:
            self._fail(f"its record layout is invalid ({error})")
        self.columns = [table[name] for name in names[1:]]
        self._crcs = table["crc"]
        self._refs = [
            slot.shape is None and field.kind in (Kind.ARRAY, Kind.BYTES, Kind.STR)
            for field, slot in zip(self.schema.fields, self.slots, strict=True)
        ]
        self._ref_positions = [i for i, ref in enumerate(self._refs) if ref]
        # records whose checksum passed: a file is immutable, so one check a record suffices
        self._verified = shared_flags(records)

    def _slot(self, field: Field, raw: Any, row_size: int) -> Slot:
        if not isinstance(raw, dict) or not is_count(raw.get("offset")):
            self._fail(f"the slot of field {field.name!r} is invalid")
        shape = raw.get("shape")
        if shape is not None:
            if (
                field.kind is not Kind.ARRAY
                or not is_shape(shape, field.ndim or 0, _DIM_LIMIT)
                or any(n >= _DIM_LIMIT for n in shape)
                or math.prod(max(n, 1) for n in shape) * np.dtype(field.dtype).itemsize
                >= _DIM_LIMIT
            ):
                self._fail(f"the slot of field {field.name!r} has an invalid shape {shape!r}")
            shape = tuple(shape)
        slot = Slot(raw["offset"], shape)
        if slot.offset < 4 or slot.offset + _slot_dtype(field, shape).itemsize > row_size:
            self._fail(f"the slot of field {field.name!r} lies outside the {row_size}-byte row")
        return slot

    # -- records --------------------------------------------------------------------------------

    def _payload(self, position: int, record: int) -> tuple[int, int, np.ndarray]:
        """(start, length, refs) of a heap payload, bounds-checked."""
        refs = self.columns[position][record]
        start, length = int(refs[0]), int(refs[1])
        if start + length > self._heap_size:
            self._fail(
                f"field {self.schema.fields[position].name!r} points past the end of the heap",
                record,
            )
        return self._heap_offset + start, length, refs

    def check(self, record: int) -> None:
        """Raise FormatError unless ``record``'s checksum matches."""
        if not 0 <= record < self.records:
            raise IndexError(f"record {record} is out of range for a shard of {self.records}")
        if self._verified[record]:
            return
        row = self._table_offset + record * self.row_size
        crc = zlib.crc32(self._view[row + 4 : row + self.row_size])
        for position in self._ref_positions:
            start, length, _ = self._payload(position, record)
            crc = zlib.crc32(self._view[start : start + length], crc)
        stored = int(self._crcs[record])
        if crc != stored:
            self._fail(
                f"checksum mismatch (stored {stored:#010x}, computed {crc:#010x}): the record is "
                f"corrupted; re-create the shards with write_shards or `ladle pack`",
                record,
            )
        self._verified[record] = 1

    def check_many(self, records: np.ndarray) -> None:
        """``check`` for each of ``records``; records without heap payloads in one pass."""
        records = records[self._verified[records] == 0]
        if self._ref_positions:
            for record in records.tolist():
                self.check(record)
            return
        view, size = self._view, self.row_size
        starts = (self._table_offset + 4 + records * size).tolist()
        computed = [zlib.crc32(view[start : start + size - 4]) for start in starts]
        bad = np.flatnonzero(np.asarray(computed, dtype=np.uint32) != self._crcs[records])
        if bad.size:
            self.check(int(records[bad[0]]))  # raises, naming the record
        self._verified[records] = 1

    def value(self, position: int, record: int) -> Any:
        """Field ``position`` of ``record``: arrays are read-only views of the file."""
        field = self.schema.fields[position]
        kind = field.kind
        if not self._refs[position]:
            value = self.columns[position][record]
            if kind is Kind.INT:
                return int(value)
            if kind is Kind.FLOAT:
                return float(value)
            if kind is Kind.BOOL:
                return bool(value)
            if kind is Kind.ARRAY and not self.slots[position].shape:
                # indexing gave a NumPy scalar: the field is a 0-d array, so view it as one
                return self.columns[position][record : record + 1].reshape(())
            return value
        start, length, refs = self._payload(position, record)
        if kind is Kind.BYTES:
            return bytes(self._view[start : start + length])
        if kind is Kind.STR:
            try:
                return str(self._view[start : start + length], "utf-8")
            except UnicodeDecodeError:
                self._fail(f"field {field.name!r} is not valid UTF-8", record)
        dtype = np.dtype(field.dtype)
        shape = tuple(int(n) for n in refs[2:])
        if (
            math.prod(shape) * dtype.itemsize != length
            or math.prod(max(n, 1) for n in shape) >= _DIM_LIMIT**2
        ):
            self._fail(
                f"field {field.name!r} has shape {shape} but {length} bytes of {dtype}", record
            )
        try:
            return np.frombuffer(self._buffer, dtype, math.prod(shape), start).reshape(shape)
        except ValueError as error:  # a shape NumPy cannot represent, such as (0, 2**62)
            self._fail(f"field {field.name!r} has the invalid shape {shape} ({error})", record)

    def record(self, record: int, verify: bool) -> list[Any]:
        if verify:
            self.check(record)
        return [self.value(position, record) for position in range(len(self.slots))]

    def gather(self, records: np.ndarray, verify: bool) -> list[Any]:
        """One column per field for ``records``: stacked arrays where the slot is fixed, lists of
        per-record values where it is a heap reference."""
        if verify:
            self.check_many(records)
        columns: list[Any] = []
        for position, column in enumerate(self.columns):
            if self._refs[position]:
                columns.append([self.value(position, r) for r in records.tolist()])
                continue
            kind = self.schema.fields[position].kind
            if kind is Kind.BOOL:
                columns.append(column[records] != 0)
            else:
                columns.append(column[records])
        return columns
