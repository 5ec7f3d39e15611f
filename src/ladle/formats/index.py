"""The index of a shard directory: which shard files, how many records each, and the schema.

``index.json`` is written last, atomically, after every shard is in place: a directory without
it is an interrupted or foreign write and never reads as a dataset. Its JSON carries its own
crc32, so a damaged index raises FormatError instead of describing other data.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladle.errors import FormatError
from ladle.formats.schema import Schema, SchemaError, is_count

__all__ = [
    "INDEX_NAME",
    "INDEX_VERSION",
    "Index",
    "ShardEntry",
    "check_metadata",
    "check_replaceable",
    "index_text",
    "parse_index",
    "read_index",
    "shard_name",
    "write_index",
]

INDEX_NAME = "index.json"
INDEX_FORMAT = "ladle.shards"
INDEX_VERSION = 1


def shard_name(number: int) -> str:
    """The file name of shard ``number`` in a directory write_shards writes."""
    return f"shard-{number:05d}.ladle"


def check_replaceable(
    out_dir: object, shards: bool, indexed: bool, overwrite: bool, place: str
) -> None:
    """Refuse to write into ``out_dir``, which holds shard files (``shards``) and an index
    (``indexed``), unless ``overwrite``; ``place`` is what another one would be ("directory",
    "prefix"). Shards with no index are refused too, since they may be all that is left of a
    dataset (an overwrite deletes the old index first), but the message says how they came."""
    if overwrite or not (shards or indexed):
        return
    if not indexed:
        raise FileExistsError(
            f"out_dir {out_dir} holds ladle shards but no {INDEX_NAME}: an earlier write or "
            f"overwrite was interrupted; pass overwrite=True (ladle pack --overwrite) to "
            f"replace them, or choose another {place}"
        )
    raise FileExistsError(
        f"out_dir {out_dir} already holds ladle shards; pass overwrite=True (ladle pack "
        f"--overwrite) to replace them, or choose another {place}"
    )


@dataclass(frozen=True)
class ShardEntry:
    file: str  # a plain file name inside the directory
    records: int
    bytes: int
    header_crc: int


@dataclass(frozen=True)
class Index:
    records: int
    shards: tuple[ShardEntry, ...]
    schema: Schema | None  # None for an empty dataset
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "records": self.records,
            "schema": None if self.schema is None else self.schema.to_json(),
            "shards": [
                {"file": s.file, "records": s.records, "bytes": s.bytes, "header_crc": s.header_crc}
                for s in self.shards
            ],
            "metadata": self.metadata,
        }


def check_metadata(metadata: Any) -> dict[str, Any]:
    """``metadata`` for an index: a dict that comes back from JSON unchanged (or None: {})."""
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
    return meta


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def index_text(index: Index) -> str:
    """The text of ``index.json`` for ``index``, with its checksum."""
    body = index.to_json()
    return json.dumps({"crc32": zlib.crc32(_canonical(body)), "index": body}, indent=1) + "\n"


def write_index(directory: Path, index: Index) -> None:
    """Write ``index.json`` atomically: a reader sees the old index, none, or this one."""
    partial = directory / f".{INDEX_NAME}.partial"
    partial.write_text(index_text(index), encoding="utf-8")
    os.replace(partial, directory / INDEX_NAME)


def read_index(path: Path) -> Index:
    """Parse and validate ``path``; anything unexpected raises FormatError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(
            f"{path}: there is no {INDEX_NAME}: the directory is not a ladle shard directory, or "
            f"writing it was interrupted; write it again with write_shards or `ladle pack`",
            str(path),
        ) from None
    return parse_index(raw, str(path))


def parse_index(data: bytes, name: str) -> Index:
    """Parse and validate the index ``data`` read from ``name`` (a path or URL, for errors)."""

    def fail(message: str) -> Any:
        raise FormatError(f"{name}: {message}", name)

    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        fail(f"it is not valid JSON ({error})")
    if not isinstance(document, dict) or not isinstance(document.get("index"), dict):
        fail("it is not a ladle shard index")
    body = document["index"]
    if document.get("crc32") != zlib.crc32(_canonical(body)):
        fail("it fails its checksum: the index is corrupted")
    if body.get("format") != INDEX_FORMAT:
        fail(f"it is not a ladle shard index (format {body.get('format')!r})")
    if body.get("version") != INDEX_VERSION:
        fail(
            f"it is shard index version {body.get('version')!r}, and this ladle reads version "
            f"{INDEX_VERSION}: read it with the ladle that wrote it, or re-create it"
        )
    try:
        schema = None if body.get("schema") is None else Schema.from_json(body["schema"])
    except SchemaError as error:
        fail(f"its schema is invalid: {error}")
    metadata = body.get("metadata")
    raw_shards = body.get("shards")
    if not isinstance(metadata, dict) or not isinstance(raw_shards, list):
        fail("it lacks its shard list or metadata")
    shards = []
    for raw in raw_shards:
        if not isinstance(raw, dict):
            fail("a shard entry is not a JSON object")
        file = raw.get("file")
        if not isinstance(file, str) or file in ("", ".", "..") or any(c in file for c in "/\\\0"):
            fail(f"a shard entry names {file!r}, which is not a file name in the directory")
        if not all(is_count(raw.get(key), 2**63) for key in ("records", "bytes", "header_crc")):
            fail(f"the entry of {file} has an invalid record count, size or checksum")
        shards.append(ShardEntry(file, raw["records"], raw["bytes"], raw["header_crc"]))
    records = body.get("records")
    if not is_count(records) or records != sum(s.records for s in shards):
        fail(f"its record count {records!r} is not the sum of its shards'")
    if (schema is None) != (records == 0 and not shards):
        fail("it has records but no schema, or a schema but no shards")
    return Index(records, tuple(shards), schema, metadata)
