"""Reading one shard file without trusting it: :class:`ShardFile`.

The reader validates every number before using it, so a damaged or hostile file raises
FormatError and never makes ladle read outside the file. The layout is in
:mod:`ladle.formats.layout`.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import numpy as np

from ladle._runtime.flags import shared_flags
from ladle.errors import FormatError
from ladle.formats.layout import DIM_LIMIT, END, FORMAT_VERSION, MAGIC, PREAMBLE, Slot, slot_dtype
from ladle.formats.schema import Field, Kind, Schema, SchemaError, is_count, is_shape

__all__ = ["ShardFile"]

_CHECK_CHUNK = 65536


class ShardFile:
    """A shard held in ``buffer`` (a read-only mmap, or bytes): validated on construction.

    ``identity`` is the (device, inode) of the file mapped, if it is one: what tells a cached
    copy this map reads from one fetched again since."""

    def __init__(self, buffer: Any, path: str, identity: tuple[int, int] | None = None) -> None:
        self.path = path
        self.identity = identity
        self._buffer = buffer
        self._view = memoryview(buffer)
        size = len(self._view)
        self.size: int = size
        if size < PREAMBLE.size + len(END):
            self._fail(f"it is {size} bytes, too short for a shard: the file is truncated")
        magic, version, header_size, header_crc, _ = PREAMBLE.unpack_from(self._view, 0)
        if magic != MAGIC:
            self._fail(f"it does not start with {MAGIC!r}: this is not a ladle shard")
        if version != FORMAT_VERSION:
            self._fail(
                f"it is shard format version {version}, and this ladle reads version "
                f"{FORMAT_VERSION}: read it with the ladle that wrote it, or re-create it"
            )
        header_end = PREAMBLE.size + header_size
        if header_end > size:
            self._fail(f"its header runs past the end of the file ({size} bytes): truncated")
        header_bytes = self._view[PREAMBLE.size : header_end]
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
            4 <= row_size < DIM_LIMIT
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
            slot_dtype(field, slot.shape)
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
                or not is_shape(shape, field.ndim or 0, DIM_LIMIT)
                or any(n >= DIM_LIMIT for n in shape)
                or math.prod(max(n, 1) for n in shape) * np.dtype(field.dtype).itemsize >= DIM_LIMIT
            ):
                self._fail(f"the slot of field {field.name!r} has an invalid shape {shape!r}")
            shape = tuple(shape)
        slot = Slot(raw["offset"], shape)
        if slot.offset < 4 or slot.offset + slot_dtype(field, shape).itemsize > row_size:
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

    def check_all(self) -> None:
        """``check`` every record, a chunk at a time (a whole download, before it is used)."""
        for start in range(0, self.records, _CHECK_CHUNK):
            self.check_many(np.arange(start, min(start + _CHECK_CHUNK, self.records)))

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
            or math.prod(max(n, 1) for n in shape) >= DIM_LIMIT**2
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
