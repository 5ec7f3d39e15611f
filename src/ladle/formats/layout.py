"""The byte layout of one shard file, shared by its writer (shardfile) and reader (shardread).

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

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ladle.formats.schema import Field, Kind

__all__ = [
    "ALIGN",
    "DIM_LIMIT",
    "END",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_FIXED_BYTES",
    "MAX_ROW_BYTES",
    "PAYLOAD_ALIGN",
    "PREAMBLE",
    "Slot",
    "round_up",
    "slot_dtype",
]

MAGIC = b"LADLSHRD"
END = b"LADLEND!"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sIIII")
ALIGN = 64
PAYLOAD_ALIGN = 16
# NumPy builds a row dtype only below 2 GiB: bigger arrays go to the heap, and a reader refuses
# rows or fixed slots beyond these before asking NumPy for them
MAX_FIXED_BYTES = 2**28
MAX_ROW_BYTES = 2**30
DIM_LIMIT = 2**31


@dataclass(frozen=True)
class Slot:
    """Where a field lives in a row: ``shape`` is the fixed array shape (None: a heap reference)."""

    offset: int
    shape: tuple[int, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "shape": None if self.shape is None else list(self.shape)}


def slot_dtype(field: Field, shape: tuple[int, ...] | None) -> np.dtype[Any]:
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


def round_up(n: int, align: int) -> int:
    return -(-n // align) * align
