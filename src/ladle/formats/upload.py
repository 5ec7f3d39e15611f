"""Writing a shard directory into an object store: shards first, ``index.json`` last.

An object store has no rename, but each PUT is atomic: an object is absent, or whole. So each
shard is encoded into a local temporary file and uploaded, and the index, which is what makes
the prefix read as a dataset, is uploaded only once every shard is there. A reader never sees
an index naming a missing shard. Overwriting deletes the old index first: from then on the
prefix no longer reads as the old dataset (unlike a local directory, a failed overwrite does
not leave the old one readable, since its shards may be replaced already). A write that fails
deletes the shards it uploaded (best effort) and leaves no index.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ladle.formats.index import (
    INDEX_NAME,
    Index,
    ShardEntry,
    check_replaceable,
    index_text,
    shard_name,
)
from ladle.formats.schema import Schema
from ladle.formats.shardfile import encode_shard
from ladle.formats.storage import Store

__all__ = ["upload_shards"]


def _is_shard(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".ladle")


def upload_shards(
    store: Store,
    batches: Iterable[tuple[Schema, list[list[Any]]]],
    metadata: dict[str, Any],
    overwrite: bool,
) -> None:
    """Encode and upload each (schema, records) of ``batches`` as a shard, then the index."""
    existing = store.names()
    old = [name for name in existing if _is_shard(name)]
    check_replaceable(store.url, bool(old), INDEX_NAME in existing, overwrite, "prefix")
    store.remove(INDEX_NAME)
    entries: list[ShardEntry] = []
    schema: Schema | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="ladle-upload-") as staging:
            for schema, records in batches:
                name = shard_name(len(entries))
                local = Path(staging) / name
                with open(local, "wb") as out:
                    header_crc = encode_shard(schema, records, out)
                    size = out.tell()
                store.upload(local, name)
                local.unlink()
                entries.append(ShardEntry(name, len(records), size, header_crc))
        written = {entry.file for entry in entries}
        for name in old:
            if name not in written:
                store.remove(name)
        index = Index(sum(e.records for e in entries), tuple(entries), schema, metadata)
        store.write_bytes(INDEX_NAME, index_text(index).encode("utf-8"))
    except BaseException:
        for entry in entries:
            # the store may be failing: the index is absent, so leftovers read as nothing
            with contextlib.suppress(OSError):
                store.remove(entry.file)
        raise
