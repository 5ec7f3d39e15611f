"""Damaged shards raise FormatError, naming the file and the record, and nothing else.

The fuzz tests feed the reader random bytes, mutated shards, and shards whose header JSON was
rewritten with a valid checksum (so the parser, not the checksum, must catch it): more than
10,000 inputs in all, each of which must read cleanly or raise FormatError.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladle.errors import FormatError
from ladle.formats import ShardDataset, write_shards
from ladle.formats.index import read_index
from ladle.formats.shardfile import FORMAT_VERSION, ShardFile

PREAMBLE = struct.Struct("<8sIIII")


def sample(i: int) -> dict[str, Any]:
    return {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3) + i,
        "v": np.arange(i % 4, dtype=np.int16),
        "label": i,
        "flag": i % 2 == 0,
        "blob": bytes(range(i % 9)),
        "text": "ü" * (i % 3),
        "half": np.float16(i),
    }


def build(directory: Path, n: int = 12, per_shard: int = 12) -> Path:
    write_shards([sample(i) for i in range(n)], directory, samples_per_shard=per_shard)
    return directory


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return (build(tmp_path_factory.mktemp("valid")) / "shard-00000.ladle").read_bytes()


def layout(data: bytes) -> dict[str, Any]:
    _, _, size, _, _ = PREAMBLE.unpack_from(data)
    header: dict[str, Any] = json.loads(data[24 : 24 + size])
    return header


def read_everything(data: bytes, verify: bool) -> None:
    shard = ShardFile(data, "fuzz.ladle")
    records = np.arange(shard.records)
    for record in range(shard.records):
        shard.record(record, verify)
    shard.gather(records, verify)


def test_flipped_byte_in_a_record_names_file_and_record(tmp_path: Path, valid: bytes) -> None:
    header = layout(valid)
    table, row = header["table_offset"], header["row_size"]
    for record in (0, 5, 11):
        path = build(tmp_path / f"r{record}")
        shard = path / "shard-00000.ladle"
        data = bytearray(valid)
        data[table + record * row + row - 1] ^= 0x10  # the last byte of the row
        shard.write_bytes(bytes(data))
        dataset = ShardDataset(path)
        for other in (record - 1, record + 1):
            if 0 <= other < 12:
                dataset[other]  # the neighbours still read
        with pytest.raises(FormatError, match=f"shard-00000.ladle, record {record}: checksum") as e:
            dataset[record]
        assert e.value.record == record and e.value.path == str(shard)
        with pytest.raises(FormatError, match=f"record {record}: checksum mismatch"):
            dataset.__getitems__([0, record])


def test_flipped_byte_in_the_heap_is_caught(tmp_path: Path, valid: bytes) -> None:
    header = layout(valid)
    path = build(tmp_path)
    data = bytearray(valid)
    data[header["heap_offset"] + header["heap_size"] - 1] ^= 0x01  # the last record's payload
    (path / "shard-00000.ladle").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"record 11: checksum mismatch"):
        ShardDataset(path)[11]
    ShardDataset(path)[10]


@pytest.mark.parametrize("where", ["magic", "header", "footer"])
def test_flipped_byte_outside_the_records_fails_at_open(
    tmp_path: Path, valid: bytes, where: str
) -> None:
    position = {"magic": 2, "header": 40, "footer": len(valid) - 3}[where]
    data = bytearray(valid)
    data[position] ^= 0xFF
    path = tmp_path / "one.ladle"
    path.write_bytes(bytes(data))
    message = {"magic": "not a ladle shard", "header": "header fails its checksum"}
    with pytest.raises(FormatError, match=message.get(where, "does not end with")) as error:
        ShardDataset(path)
    assert error.value.record is None and error.value.path == str(path)


@pytest.mark.parametrize("keep", [0, 10, 23, 100, -100, -9, -1])
def test_truncation_fails_at_open(tmp_path: Path, valid: bytes, keep: int) -> None:
    path = tmp_path / "one.ladle"
    path.write_bytes(valid[:keep])
    with pytest.raises(FormatError, match=r"one.ladle: .*(empty|truncated|short)"):
        ShardDataset(path)


def test_truncated_shard_in_a_directory(tmp_path: Path) -> None:
    path = build(tmp_path, n=30, per_shard=10)
    shard = path / "shard-00001.ladle"
    shard.write_bytes(shard.read_bytes()[:-50])
    with pytest.raises(FormatError, match=r"shard-00001.ladle: its layout does not match its size"):
        ShardDataset(path)


def test_wrong_shard_version(tmp_path: Path, valid: bytes) -> None:
    data = bytearray(valid)
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    path = tmp_path / "one.ladle"
    path.write_bytes(bytes(data))
    with pytest.raises(
        FormatError, match=r"shard format version 2, and this ladle reads version 1"
    ):
        ShardDataset(path)


def test_wrong_index_version_and_damaged_index(tmp_path: Path) -> None:
    path = build(tmp_path)
    index = path / "index.json"
    document = json.loads(index.read_text())
    original = index.read_text()
    document["index"]["version"] = 2
    index.write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"fails its checksum"):
        ShardDataset(path)
    body = document["index"]
    document["crc32"] = zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    index.write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"index version 2, and this ladle reads version 1"):
        ShardDataset(path)
    index.write_text(original[:-20])
    with pytest.raises(FormatError, match=r"index.json: it is not valid JSON"):
        ShardDataset(path)


# -- fuzzing ------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=4_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


FUZZED: dict[str, int] = {}


def check_reader(data: bytes, name: str) -> None:
    FUZZED[name] = FUZZED.get(name, 0) + 1
    for verify in (True, False):
        with contextlib.suppress(FormatError):
            read_everything(data, verify)


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_reader(data, "random")
    check_reader(b"LADLSHRD" + data, "random")


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_shards(valid: bytes, data: st.DataObject) -> None:
    shard = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        position = data.draw(st.integers(0, max(len(shard) - 1, 0)))
        if action == "flip" and shard:
            shard[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and shard:
            shard[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del shard[position:]
        elif action == "insert":
            shard[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del shard[position : position + data.draw(st.integers(1, 16))]
    check_reader(bytes(shard), "mutated")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def rewrite_header(valid: bytes, header: Any) -> bytes:
    """``valid`` with ``header`` in place of its own, checksummed, data left where it was."""
    old = layout(valid)
    encoded = json.dumps(header).encode()
    front = PREAMBLE.pack(b"LADLSHRD", FORMAT_VERSION, len(encoded), zlib.crc32(encoded), 0)
    front += encoded
    front += bytes(max(old["table_offset"] - len(front), 0))
    return front + valid[old["table_offset"] :]


@FUZZ
@given(data=st.data())
def test_fuzz_checksummed_headers(valid: bytes, data: st.DataObject) -> None:
    header = layout(valid)
    path = data.draw(st.sampled_from(sorted(_paths(header))))
    replacement = data.draw(JSON | st.integers(-3, 300))
    target: Any = header
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    check_reader(rewrite_header(valid, header), "header")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    found = {prefix} if prefix else set()
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found |= _paths(child, (*prefix, key))
    return found


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_fuzz_index(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    directory = tmp_path_factory.getbasetemp() / "fuzz-index"
    if not (directory / "index.json").exists():
        build(directory, n=20, per_shard=7)
    text = bytearray((directory / "index.json").read_bytes())
    position = data.draw(st.integers(0, len(text) - 1))
    text[position : position + 1] = data.draw(st.binary(max_size=2))
    damaged = directory.parent / "damaged-index.json"
    damaged.write_bytes(bytes(text))
    FUZZED["index"] = FUZZED.get("index", 0) + 1
    with contextlib.suppress(FormatError):
        read_index(damaged)


def test_the_fuzzers_fed_at_least_ten_thousand_inputs() -> None:
    if set(FUZZED) != {"random", "mutated", "header", "index"}:
        pytest.skip("counts the inputs of the fuzz tests above: run the whole module")
    assert sum(FUZZED.values()) >= 10_000, FUZZED


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("slots", 0, "shape"), [2**20, 2**19]),  # a slot NumPy cannot build
        (("slots", 0, "shape"), [0, 2**40]),
        (("row_size",), 2**33),
        (("schema", "fields", 1, "ndim"), 3),  # neighbouring bytes read as dims
    ],
)
def test_layouts_numpy_cannot_represent_are_format_errors(
    valid: bytes, path: tuple[Any, ...], value: Any
) -> None:
    header = layout(valid)
    target: Any = header
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(FormatError):
        read_everything(rewrite_header(valid, header), verify=False)


def test_heap_dims_numpy_cannot_represent_are_format_errors(valid: bytes) -> None:
    header = layout(valid)
    slot = header["slots"][1]["offset"]  # "v": a varying int16 array, refs (start, length, dim)
    data = bytearray(valid)
    struct.pack_into("<QQQ", data, header["table_offset"] + slot, 0, 0, 2**63)
    shard = ShardFile(bytes(data), "x.ladle")
    with pytest.raises(FormatError, match=r"x\.ladle, record 0: field 'v' has shape"):
        shard.record(0, verify=False)
