"""One shard set written by many independent tasks: ``write_part`` in each, ``commit_parts`` once.

The tasks may be processes, or the tasks of an engine such as Ray or Spark; they share nothing
but ``out_dir``. While parts are written, ``out_dir`` holds::

    .parts/.part-00003-<token>/     an attempt at part 3 in progress, or one that failed or was
                                    killed (never read)
    .parts/part-00003-<token>/      a complete attempt: its shards, then manifest.json; one
                                    rename makes it complete, so a part is whole or absent

``commit_parts`` checks that every part is there, complete and of one schema, links the parts'
shards into place in part order and writes ``index.json`` last; then it removes ``.parts``. Until
the index is written the directory reads as no dataset, never as a partial one; a commit that
fails on the way can be run again, as the parts stay whole until it succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ladle.errors import FormatError
from ladle.formats.index import (
    INDEX_NAME,
    Index,
    ShardEntry,
    check_metadata,
    check_replaceable,
    read_index,
    write_index,
)
from ladle.formats.progress import Progress
from ladle.formats.records import (
    ShardRule,
    check_shard_sizes,
    is_map_style,
    samples,
    shard_batches,
    stream_rule,
)
from ladle.formats.schema import Schema, SchemaError, is_count
from ladle.formats.shardfile import encode_shard
from ladle.formats.writer import DEFAULT_SHARD_BYTES, shard_name
from ladle.validation import check_bool, check_int, check_path

__all__ = ["PARTS", "PartError", "PartManifest", "commit_parts", "committed_shards", "write_part"]

PARTS = ".parts"
MANIFEST = "manifest.json"
_FORMAT = "ladle.part"
_VERSION = 1
_OUT_FIX = "name the shard directory every part is written into, e.g. ./shards"


class PartError(ValueError):
    """The parts of a shard set cannot be committed: one is missing, twice there, damaged, from
    another directory, or of another schema."""


def _prefix(part: int) -> str:
    return f"part-{part:05d}-"


@dataclass(frozen=True)
class PartManifest:
    """What one ``write_part`` call wrote; JSON (``to_json``) and pickle both carry it.

    ``shards`` name files inside the attempt directory ``out_dir/.parts/<attempt>``;
    ``directory`` is ``out_dir`` as the task named it, for messages.
    """

    part: int
    attempt: str
    directory: str
    records: int
    schema: Schema | None  # None for a part without samples
    shards: tuple[ShardEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "part": self.part,
            "attempt": self.attempt,
            "directory": self.directory,
            "records": self.records,
            "schema": None if self.schema is None else self.schema.to_json(),
            "shards": [
                {"file": s.file, "records": s.records, "bytes": s.bytes, "header_crc": s.header_crc}
                for s in self.shards
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> PartManifest:
        """A manifest from ``to_json()``'s dict; PartError if it is not one."""

        def fail(why: str) -> NoReturn:
            raise PartError(
                f"a part manifest should be what write_part returned (or its to_json()), but {why}"
            )

        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            fail(f"got {type(data).__name__} {data!r:.80}")
        if data.get("version") != _VERSION:
            fail(f"it has version {data.get('version')!r}, and this ladle reads {_VERSION}")
        part, attempt, records = data.get("part"), data.get("attempt"), data.get("records")
        if not (isinstance(part, int) and is_count(part) and is_count(records)) or not isinstance(
            attempt, str
        ):
            fail(f"its part, attempt or record count is invalid ({part!r}, {attempt!r})")
        if not attempt.startswith(_prefix(part)) or "/" in attempt or "\\" in attempt:
            fail(f"its attempt {attempt!r} is not a directory name of part {part}")
        try:
            schema = None if data.get("schema") is None else Schema.from_json(data["schema"])
        except SchemaError as error:
            fail(f"its schema is invalid: {error}")
        shards: list[ShardEntry] = []
        raw_shards = data.get("shards")
        if not isinstance(raw_shards, list):
            fail("it lacks its shard list")
        for raw in raw_shards:
            file = raw.get("file") if isinstance(raw, dict) else None
            if not isinstance(file, str) or file != shard_name(len(shards)):
                fail(f"shard entry {len(shards)} names {file!r}")
            if not all(is_count(raw.get(k), 2**63) for k in ("records", "bytes", "header_crc")):
                fail(f"the entry of {file} has an invalid record count, size or checksum")
            shards.append(ShardEntry(file, raw["records"], raw["bytes"], raw["header_crc"]))
        if records != sum(s.records for s in shards) or (schema is None) != (records == 0):
            fail(f"its record count {records} does not match its shards and schema")
        directory = data.get("directory")
        return cls(part, attempt, str(directory), records, schema, tuple(shards))

    def same_data(self, other: PartManifest) -> bool:
        """Whether both describe the same shards (another attempt may have written them)."""
        return (self.part, self.records, self.schema, self.shards) == (
            other.part,
            other.records,
            other.schema,
            other.shards,
        )


def committed_shards(directory: Path, overwrite: bool) -> list[Path]:
    """The shard files of the shard set ``directory`` holds now, to be replaced; refuses them
    unless ``overwrite``. Creates ``directory`` when it is missing."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"out_dir {directory} is a file; pass a directory to write into")
    directory.mkdir(parents=True, exist_ok=True)
    old = sorted(directory.glob("shard-*.ladle"))
    check_replaceable(
        directory, bool(old), (directory / INDEX_NAME).exists(), overwrite, "directory"
    )
    return old


def write_part(
    data: Any,
    out_dir: str | os.PathLike[str],
    *,
    part: int,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    samples_per_shard: int | None = None,
    overwrite: bool = False,
) -> PartManifest:
    """Write the samples of ``data`` as part ``part`` of the shard set at ``out_dir``.

    Run it once per part, in any process or machine that sees ``out_dir``; parts are numbered
    0, 1, 2, ... and the committed dataset holds them in that order. ``data`` is what
    ``write_shards`` takes (a map-style dataset or an iterable of dict, tuple or single-value
    samples), and shards close as they do there for a stream (``shard_bytes``, default 128
    MiB, or ``samples_per_shard``); a shard never spans two parts. Returns the part's manifest:
    hand it to ``commit_parts`` (it pickles, and ``to_json()`` is plain JSON), or let
    ``commit_parts`` find it on disk. Running a part again replaces what it wrote before; a
    part that raises removes what it wrote. ``overwrite`` as in ``commit_parts``: without it a
    part refuses to start in a directory that holds a committed shard set.
    """
    if not (is_map_style(data) or isinstance(data, Iterable)) or isinstance(
        data, str | bytes | Mapping
    ):
        raise TypeError(
            f"write_part takes a dataset (len and [i]) or an iterable of samples, but got "
            f"data={data!r:.60} ({type(data).__name__}); pass e.g. a list of dicts"
        )
    directory = Path(check_path(out_dir, "out_dir", fix=_OUT_FIX))
    part = check_int(part, "part", minimum=0, fix="number the parts 0, 1, 2, ... in order")
    shard_bytes, samples_per_shard = check_shard_sizes(shard_bytes, samples_per_shard)
    committed_shards(directory, check_bool(overwrite, "overwrite"))
    rule = stream_rule(shard_bytes, samples_per_shard)
    return write_attempt(samples(data), directory, part, rule)


def write_attempt(
    items: Iterator[Any],
    directory: Path,
    part: int,
    rule: ShardRule,
    start: int = 0,
    token: str | None = None,
    bar: Progress | None = None,
) -> PartManifest:
    """Write ``items`` as one attempt at part ``part``; ``start`` is the global index of the
    first (for shard grids and messages), ``token`` names the attempt (random by default)."""
    staging = directory / PARTS
    staging.mkdir(parents=True, exist_ok=True)
    name = f"{_prefix(part)}{token or secrets.token_hex(6)}"
    pending = staging / f".{name}"
    shutil.rmtree(pending, ignore_errors=True)  # an attempt of this name that was killed
    pending.mkdir()
    try:
        entries: list[ShardEntry] = []
        schema: Schema | None = None
        with Progress(None, "", False) if bar is None else bar as progress:
            for schema, records in shard_batches(items, rule, progress, start):
                file = shard_name(len(entries))
                with open(pending / file, "wb") as out:
                    header_crc = encode_shard(schema, records, out)
                    size = out.tell()
                entries.append(ShardEntry(file, len(records), size, header_crc))
        total = sum(e.records for e in entries)
        manifest = PartManifest(part, name, str(directory), total, schema, tuple(entries))
        _write_manifest(pending / MANIFEST, manifest)
        shutil.rmtree(staging / name, ignore_errors=True)  # the same attempt, run again
        os.rename(pending, staging / name)
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        raise
    for earlier in staging.glob(f"{_prefix(part)}*"):
        if earlier.name != name:
            shutil.rmtree(earlier, ignore_errors=True)  # this part, written before
    return manifest


def _write_manifest(path: Path, manifest: PartManifest) -> None:
    body = manifest.to_json()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    path.write_text(json.dumps({"crc32": zlib.crc32(canonical), "part": body}, indent=1) + "\n")


def _read_manifest(path: Path) -> PartManifest:
    try:
        document = json.loads(path.read_bytes())
        body = document["part"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if document["crc32"] != zlib.crc32(canonical):
            raise ValueError("it fails its checksum")
        return PartManifest.from_json(body)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise PartError(
            f"{path}: the manifest of this part cannot be read ({error}); write the part again"
        ) from None


def _attempts(staging: Path, parts: set[int] | None) -> dict[int, list[PartManifest]]:
    """The complete attempts under ``staging`` (at ``parts``, or all), by part number."""
    found: dict[int, list[PartManifest]] = {}
    paths = staging.glob("part-*") if parts is None else _globs(staging, sorted(parts))
    for path in sorted(paths):
        manifest = _read_manifest(path / MANIFEST)
        if manifest.attempt != path.name:
            raise PartError(
                f"{path}: its manifest belongs to {manifest.attempt}, not to this directory: "
                f"write part {manifest.part} again"
            )
        found.setdefault(manifest.part, []).append(manifest)
    return found


def _globs(staging: Path, parts: list[int]) -> Iterator[Path]:
    for part in parts:
        yield from staging.glob(f"{_prefix(part)}*")


def commit_parts(
    out_dir: str | os.PathLike[str],
    manifests: Iterable[PartManifest | Mapping[str, Any]] | None = None,
    *,
    parts: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Make the parts written into ``out_dir`` one shard set, in part order; returns the
    directory.

    ``manifests`` are what the ``write_part`` calls returned (objects or their ``to_json()``
    dicts), in any order; with None, the complete parts found in ``out_dir`` are committed.
    ``parts`` is how many there should be (parts 0 to parts-1): without it a missing last part
    cannot be noticed. Every part must be complete, present once and of one schema, or
    PartError says which is not and nothing changes. ``metadata`` goes into the index, as in
    ``write_shards``; a shard set already committed in ``out_dir`` is replaced only with
    ``overwrite=True``. The dataset equals ``write_shards`` of the parts' samples concatenated,
    record for record; shard for shard too where each part ends where such a write closes a
    shard (e.g. with ``samples_per_shard`` dividing every part's length but the last).
    """
    directory = Path(check_path(out_dir, "out_dir", fix=_OUT_FIX))
    if parts is not None:
        parts = check_int(parts, "parts", minimum=0, fix="pass how many parts were written")
    meta = check_metadata(metadata)
    overwrite = check_bool(overwrite, "overwrite")
    given = None if manifests is None else _as_manifests(manifests)
    staging = directory / PARTS
    if not staging.is_dir():
        raise PartError(_nothing_to_commit(directory, given))
    chosen = _choose(staging, given)
    expected = parts if parts is not None else max(chosen, default=-1) + 1
    if not chosen and parts is None:
        raise PartError(_nothing_to_commit(directory, given))
    missing = [number for number in range(expected) if number not in chosen]
    if missing:
        started = [n for n in missing if any(staging.glob(f".{_prefix(n)}*"))]
        state = "no task has written it" if len(missing) == 1 else "no task has written them"
        if started:
            state = (
                f"a task started part {started[0]} but did not finish (it failed or was "
                f"killed)" + ("" if missing == started[:1] else "; no task finished the others")
            )
        named = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        which = (
            f"part {named} of {expected} is"
            if len(missing) == 1
            else f"parts {named} of {expected} are"
        )
        raise PartError(
            f"{which} missing from {staging}: {state}; run write_part(..., part={missing[0]})"
            f"{' and the others' if len(missing) > 1 else ''} again, then commit"
        )
    for number in sorted(chosen):
        if number >= expected:
            raise PartError(
                f"part {number} is in {staging / chosen[number].attempt}, but parts={expected}: "
                f"it is left from another write into this directory; remove it, or pass parts="
                f"{max(chosen) + 1}"
            )
    ordered = [chosen[n] for n in range(expected)]
    schema = _one_schema(ordered)
    for manifest in ordered:
        _check_files(staging / manifest.attempt, manifest)
    _remove_own_leftovers(directory, staging, ordered)
    old = committed_shards(directory, overwrite)
    entries: list[ShardEntry] = []
    try:
        # the old index goes first: from then on the old shards no longer read as a dataset
        (directory / INDEX_NAME).unlink(missing_ok=True)
        for path in old:
            path.unlink(missing_ok=True)
        for manifest in ordered:
            for shard in manifest.shards:
                name = shard_name(len(entries))
                _place(staging / manifest.attempt / shard.file, directory / name)
                entries.append(ShardEntry(name, shard.records, shard.bytes, shard.header_crc))
        total = sum(e.records for e in entries)
        write_index(directory, Index(total, tuple(entries), schema, meta))
    except BaseException:
        (directory / f".{INDEX_NAME}.partial").unlink(missing_ok=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return directory


def _as_manifests(manifests: Iterable[Any]) -> list[PartManifest]:
    if isinstance(manifests, str | bytes | Mapping | PartManifest):
        raise TypeError(
            f"manifests should be a list of what write_part returned, or None, but got "
            f"{type(manifests).__name__}; wrap a single manifest in a list"
        )
    out = []
    for item in manifests:
        out.append(item if isinstance(item, PartManifest) else PartManifest.from_json(item))
    return out


def _nothing_to_commit(directory: Path, given: list[PartManifest] | None) -> str:
    if (directory / INDEX_NAME).exists():
        listed: set[int] = set()
        with contextlib.suppress(FormatError):  # a damaged index is no proof of a commit
            listed = {s.header_crc for s in read_index(directory / INDEX_NAME).shards}
        ours = {s.header_crc for m in given or () for s in m.shards}
        if ours and ours <= listed:
            return (
                f"these parts were committed already: the index of {directory} lists their "
                f"shards, and the parts themselves are gone; there is nothing left to commit"
            )
        return (
            f"out_dir {directory} holds no parts to commit, but a committed shard set: were "
            f"they committed already? Write parts with write_part(..., part=k) to commit anew"
        )
    return (
        f"out_dir {directory} holds no parts to commit ({directory / PARTS} is missing or "
        f"empty); write them with write_part(data, {str(directory)!r}, part=k) first"
    )


def _choose(staging: Path, given: list[PartManifest] | None) -> dict[int, PartManifest]:
    """Each part's attempt to commit: the given manifests' (checked against the disk), or the
    one complete attempt found."""
    found = _attempts(staging, None if given is None else {m.part for m in given})
    chosen: dict[int, PartManifest] = {}
    if given is None:
        for number, attempts in found.items():
            if len(attempts) > 1:
                names = ", ".join(a.attempt for a in attempts)
                raise PartError(
                    f"part {number} has {len(attempts)} complete attempts in {staging} "
                    f"({names}): two tasks wrote it at once; pass commit_parts the manifests "
                    f"the tasks returned, or run write_part(..., part={number}) once more"
                )
            chosen[number] = attempts[0]
        return chosen
    for manifest in given:
        if manifest.part in chosen:
            raise PartError(
                f"part {manifest.part} is given twice in manifests; pass each part's manifest "
                f"once (the one its last write_part call returned)"
            )
        chosen[manifest.part] = _locate(manifest, found.get(manifest.part, []), staging)
    return chosen


def _locate(manifest: PartManifest, attempts: list[PartManifest], staging: Path) -> PartManifest:
    for attempt in attempts:
        if attempt.attempt == manifest.attempt and attempt.same_data(manifest):
            return attempt
    for attempt in attempts:
        if attempt.same_data(manifest):
            return attempt  # a later run of the same part wrote the same shards
    number = manifest.part
    if attempts:
        raise PartError(
            f"part {number} in {staging} was written again since this manifest, with other "
            f"data: pass the manifest its last write_part call returned, or manifests=None"
        )
    raise PartError(
        f"part {number}'s files ({manifest.attempt}) are not in {staging}: the manifest was "
        f"written for {manifest.directory}, so it belongs to another shard directory, or the "
        f"part was removed; run write_part(..., part={number}) for this directory again"
    )


def _one_schema(ordered: list[PartManifest]) -> Schema | None:
    first: PartManifest | None = None
    for manifest in ordered:
        if manifest.schema is None:
            continue  # a part without samples fits any schema
        if first is None:
            first = manifest
        elif manifest.schema != first.schema:
            assert first.schema is not None
            raise PartError(
                f"part {manifest.part}'s samples differ from part {first.part}'s: "
                f"{_difference(manifest.schema, first.schema)}; every part must hold samples "
                f"of one structure, with the same fields, kinds, dtypes and array ndims"
            )
    return None if first is None else first.schema


def _difference(schema: Schema, reference: Schema) -> str:
    if schema.structure is not reference.structure:
        return f"they are {schema.structure.value}s, not {reference.structure.value}s"
    if schema.names != reference.names:
        return f"their fields are {schema.names}, not {reference.names}"
    for field, want in zip(schema.fields, reference.fields, strict=True):
        if field != want:
            return f"field {field.name!r} is {field.to_json()}, not {want.to_json()}"
    return "their schemas differ"


def _check_files(attempt: Path, manifest: PartManifest) -> None:
    from ladle.formats.reader import open_shard

    for entry in manifest.shards:
        path = attempt / entry.file
        try:
            shard = open_shard(path)
        except (OSError, FormatError) as error:
            raise PartError(
                f"part {manifest.part}: {path} cannot be read ({error}); write the part again"
            ) from None
        found = (shard.records, path.stat().st_size, shard.header_crc, shard.schema)
        if found != (entry.records, entry.bytes, entry.header_crc, manifest.schema):
            raise PartError(
                f"part {manifest.part}: {path} is not the shard its manifest describes (it was "
                f"changed after write_part wrote it); write the part again"
            )


def _remove_own_leftovers(directory: Path, staging: Path, ordered: list[PartManifest]) -> None:
    """Unlink the shards an earlier, failed commit of these same parts linked into place (no
    index, and the same files as the parts'), so that running the commit again needs no
    overwrite; any other shard file is left for ``committed_shards`` to refuse."""
    if (directory / INDEX_NAME).exists():
        return
    ours = set()
    for manifest in ordered:
        for shard in manifest.shards:
            status = (staging / manifest.attempt / shard.file).stat()
            ours.add((status.st_dev, status.st_ino))
    for path in directory.glob("shard-*.ladle"):
        status = path.stat()
        if (status.st_dev, status.st_ino) in ours:
            path.unlink()


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target`` too: a hard link keeps the part whole should the commit fail
    later (and be run again); a file system without links gets a rename."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        os.replace(source, target)
