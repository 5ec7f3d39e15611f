"""Copy-on-read: StringArray and RecordArray, gc.freeze around the workers' fork, and what a
forked worker copies from each kind of dataset."""

from __future__ import annotations

import gc
import pickle
from collections import namedtuple

import numpy as np
import pytest
from script_support import run_json

from ladle import RecordArray, StringArray
from ladle._runtime.heap import frozen_while_forking

TEXTS = ["hello", "", "héllo wörld", "日本語", "", "a\x00b", "🙂 emoji", "plain ascii"]


@pytest.mark.parametrize(
    "items", [TEXTS, ["ascii", "only", ""], [""] * 5, [], [b"raw", b"", b"\xff\x00bytes"]]
)
def test_round_trip(items: list) -> None:  # type: ignore[type-arg]
    array = StringArray(items)
    assert len(array) == len(items)
    assert [array[i] for i in range(len(items))] == items
    assert list(array) == array.tolist() == items
    assert array == items
    assert array.is_bytes == (len(items) > 0 and isinstance(items[0], bytes))
    joined = b"".join(i if isinstance(i, bytes) else i.encode() for i in items)
    assert array.data.tobytes() == joined
    assert array.nbytes == len(joined) + 8 * (len(items) + 1)  # the bytes, and one offset each


def test_any_iterable_and_storage_is_read_only() -> None:
    array = StringArray(str(i) for i in range(12))
    assert array.tolist() == [str(i) for i in range(12)]
    assert array.offsets.dtype == np.int64 and array.data.dtype == np.uint8
    with pytest.raises(ValueError, match="read-only"):
        array.data[0] = 1


def test_indexing_follows_a_list() -> None:
    array = StringArray(TEXTS)
    assert array[-1] == TEXTS[-1] and array[-len(TEXTS)] == TEXTS[0]
    assert array[np.int64(2)] == TEXTS[2]
    for index in (len(TEXTS), -len(TEXTS) - 1):
        with pytest.raises(IndexError, match=f"index {index} is out of range for 8 strings"):
            array[index]
    for key in (slice(1, 5), slice(None, None, -1), slice(6, 2, -2), slice(5, 1), slice(-3, None)):
        part = array[key]
        assert isinstance(part, StringArray) and part.tolist() == TEXTS[key]
    assert array[[3, 0, -1]].tolist() == [TEXTS[3], TEXTS[0], TEXTS[-1]]
    assert array[np.array([], np.int64)].tolist() == []
    mask = np.array([i % 2 == 0 for i in range(len(TEXTS))])
    assert array[mask].tolist() == TEXTS[::2]
    assert array[2:6][1:3].tolist() == TEXTS[3:5]  # a slice of a slice views the same bytes
    with pytest.raises(IndexError, match="index 9 is out of range"):
        array[[0, 9]]
    with pytest.raises(IndexError, match="one value per string"):
        array[np.array([True, False])]
    with pytest.raises(TypeError, match="must be an int, a slice"):
        array[np.array([0.5])]


def test_pickles_compactly() -> None:
    big = StringArray([f"string {i}" for i in range(10_000)])
    for array in (big, big[5000:5003], big[::-1], StringArray([])):
        again = pickle.loads(pickle.dumps(array))
        assert again == array and again.tolist() == array.tolist()
    assert len(pickle.dumps(big[5000:5003])) < 500  # its own bytes, not the whole buffer
    assert len(pickle.dumps(big)) < big.nbytes + 500


def test_from_arrays() -> None:
    array = StringArray(TEXTS)
    again = StringArray.from_arrays(array.offsets, array.data)
    assert again == array
    assert StringArray.from_arrays([0, 2, 2], np.frombuffer(b"ab", np.uint8), is_bytes=True) == [
        b"ab",
        b"",
    ]
    data = np.frombuffer(b"abc", np.uint8)
    with pytest.raises(ValueError, match="non-decreasing offsets within the data's 3 bytes"):
        StringArray.from_arrays([0, 4], data)
    with pytest.raises(ValueError, match="and decrease somewhere"):
        StringArray.from_arrays([0, 2, 1], data)
    with pytest.raises(ValueError, match="offsets as a 1-D integer array"):
        StringArray.from_arrays([], data)
    with pytest.raises(ValueError, match="data as a 1-D uint8 array"):
        StringArray.from_arrays([0, 1], np.zeros(3, np.int32))


def test_errors_name_the_element_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"must all be str as element 0 is, but element 2 is int 7"):
        StringArray(["a", "b", 7])
    with pytest.raises(TypeError, match=r"must be str or bytes, but element 0 is NoneType None"):
        StringArray([None])
    with pytest.raises(TypeError, match=r"must all be bytes as element 0 is, but element 1 is str"):
        StringArray([b"a", "b"])
    with pytest.raises(TypeError, match=r"must all be bytes .* element 1 is bytearray"):
        StringArray([b"a", bytearray(b"b")])
    with pytest.raises(TypeError, match=r"not one str \('abc'\); wrap it in a list"):
        StringArray("abc")
    with pytest.raises(ValueError, match=r"element 2 \('\\udc80'\) cannot be encoded as UTF-8"):
        StringArray(["ok", "", "\udc80"])


Point = namedtuple("Point", "x label")


def test_records_round_trip() -> None:
    records = [
        {"id": 1, "name": "ant", "weight": 0.5, "ok": True, "raw": b"\x00"},
        {"id": -2, "name": "bée", "weight": 2, "ok": False, "raw": b""},
        {"name": "", "id": 3, "weight": 1.25, "ok": True, "raw": b"xy"},
    ]
    array = RecordArray(records)
    assert len(array) == 3
    assert array.tolist() == records
    assert [type(v) for v in array[1].values()] == [int, str, float, bool, bytes]
    assert list(array[2]) == ["id", "name", "weight", "ok", "raw"]  # record 0's key order
    assert array[-1] == records[-1] and array[::-1].tolist() == records[::-1]
    assert array[[2, 0]].tolist() == [records[2], records[0]]
    assert pickle.loads(pickle.dumps(array)).tolist() == records
    columns = array.columns
    assert isinstance(columns["name"], StringArray) and columns["id"].dtype == np.int64
    with pytest.raises(IndexError, match="index 3 is out of range for 3 records"):
        array[3]
    assert RecordArray([(1, "a"), (2, "b")])[1] == (2, "b")
    assert RecordArray([Point(1.5, "a"), Point(2.5, "b")])[0] == Point(1.5, "a")
    assert len(RecordArray([])) == 0 and len(RecordArray([{}, {}])[1:]) == 1
    made = RecordArray.from_columns({"a": [1, 2], "b": np.array([0.5, 1.5])})
    assert made[1] == {"a": 2, "b": 1.5}


def test_record_errors_name_the_record_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"record 1 has keys \['b'\], record 0 has \['a'\]"):
        RecordArray([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match=r"field 'a' of record 2 is str 'x', but every .* int, as"):
        RecordArray([{"a": 1}, {"a": 2}, {"a": "x"}])
    with pytest.raises(TypeError, match=r"record 2 is NoneType None, but .* must be a str, bytes"):
        RecordArray([{"a": 1}, {"a": 0.5}, {"a": None}])  # int and float mix; None does not
    with pytest.raises(TypeError, match=r"record 1 is bool True, but .* must be int, as record 0"):
        RecordArray([{"a": 1}, {"a": True}, {"a": 0.5}])  # each mixes with int, not all three
    with pytest.raises(TypeError, match=r"field 0 of record 0 is NoneType None"):
        RecordArray([(None,)])
    with pytest.raises(ValueError, match="record 1 has 1 fields, record 0 has 2"):
        RecordArray([(1, 2), (1,)])
    with pytest.raises(TypeError, match="record 1 is list"):
        RecordArray([(1,), [1]])
    with pytest.raises(TypeError, match="takes dicts or tuples, but record 0 is str"):
        RecordArray(["a"])
    with pytest.raises(ValueError, match="beyond int64"):
        RecordArray([{"a": 2**64}])
    with pytest.raises(ValueError, match="columns of one length"):
        RecordArray.from_columns({"a": [1], "b": [1, 2]})


def test_freeze_while_forking_restores_the_collector() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_while_forking(True):
        assert gc.get_freeze_count() > 0
        with frozen_while_forking(True):  # a second pool starting meanwhile (another thread)
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0, "the first start's workers are still forking"
    assert gc.get_freeze_count() == 0
    with frozen_while_forking(False):  # spawn, forkserver: the workers share nothing
        assert gc.get_freeze_count() == 0


def test_freeze_leaves_a_process_that_froze_itself_alone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with frozen_while_forking(True):
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_freeze_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADLE_GC_FREEZE", "0")
    with frozen_while_forking(True):
        assert gc.get_freeze_count() == 0
    monkeypatch.setenv("LADLE_GC_FREEZE", "off")
    with (
        pytest.raises(ValueError, match=r"LADLE_GC_FREEZE='off' is neither 0 nor 1; set"),
        frozen_while_forking(True),
    ):
        pass


LOADER_PRELUDE = """
    import gc, json, os
    import numpy as np
    import ladle
    from workers_support import FreezeCounts, Items
"""


def test_in_a_loader_with_workers() -> None:
    result = run_json(
        LOADER_PRELUDE
        + """
    texts = [f"text {i} {'é' * (i % 3)}" for i in range(203)]
    records = [{"id": i, "text": t, "w": i / 2} for i, t in enumerate(texts)]
    out = {}
    for method in ("fork", "spawn"):
        packed = {"strings": ladle.StringArray(texts), "records": ladle.RecordArray(records)}
        for name, data in packed.items():
            plain = list(texts if name == "strings" else records)
            kwargs = dict(batch_size=16, shuffle=True, seed=3)
            want = list(ladle.DataLoader(Items(plain), **kwargs))
            got = list(ladle.DataLoader(Items(data), num_workers=2, multiprocessing_context=method,
                                        timeout=30, **kwargs))
            if name == "records":
                want = [{k: np.asarray(v).tolist() for k, v in b.items()} for b in want]
                got = [{k: np.asarray(v).tolist() for k, v in b.items()} for b in got]
            out[f"{method} {name}"] = got == want
    print(json.dumps(out))
""",
        timeout=120,
    )
    assert result == {f"{m} {n}": True for m in ("fork", "spawn") for n in ("strings", "records")}


def test_forked_workers_start_frozen_and_the_parent_unfrozen() -> None:
    result = run_json(
        LOADER_PRELUDE
        + """
    def counts(**kwargs):
        loader = ladle.DataLoader(FreezeCounts(), batch_size=None, num_workers=2, timeout=30,
                                  **kwargs)
        return [int(c) for c in loader], gc.get_freeze_count()

    out = {"fork": counts(), "thread": counts(worker_type="thread")}
    out["spawn"] = counts(multiprocessing_context="spawn")
    os.environ["LADLE_GC_FREEZE"] = "0"
    out["off"] = counts()
    os.environ.pop("LADLE_GC_FREEZE")
    gc.freeze()
    frozen = gc.get_freeze_count()
    out["user"] = counts()
    out["user frozen before"] = frozen
    print(json.dumps(out))
""",
        timeout=120,
    )
    workers, parent = result["fork"]
    assert min(workers) > 0 and parent == 0
    assert result["thread"] == [[0, 0, 0, 0], 0]
    assert result["off"] == [[0, 0, 0, 0], 0]
    assert result["spawn"][1] == 0  # a spawned worker is a fresh interpreter: nothing inherited
    workers, parent = result["user"]
    assert parent == result["user frozen before"] > 0, "the process's own freeze stays as it was"
    assert min(workers) > 0  # inherited (less what the worker freed by reference counting)


def test_a_string_array_is_not_copied_into_forked_workers() -> None:
    """Each worker's private memory after reading every string: a plain list's pages are
    copied as its strings' reference counts are written; a StringArray's are only read."""
    result = run_json(
        """
    import json, os
    import ladle
    from workers_support import child_pids

    class Items(ladle.Dataset):
        def __init__(self, items):
            self.items = items
        def __len__(self):
            return len(self.items)
        def __getitem__(self, i):
            return len(self.items[i])

    def private_mib(pid):
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0]] = int(parts[1]) / 1024
        return fields["Private_Clean:"] + fields["Private_Dirty:"]

    texts = [f"a string of the dataset, number {i}" for i in range(400_000)]
    out = {}
    for name, items in (("list", texts), ("strings", ladle.StringArray(texts))):
        loader = ladle.DataLoader(Items(items), batch_size=1000, num_workers=2, timeout=60,
                                  persistent_workers=True, shuffle=True, seed=0)
        iterator = iter(loader)
        total = sum(int(batch.sum()) for batch in iterator)
        out[name] = [private_mib(pid) for pid in child_pids()]  # the epoch's workers, alive
        del iterator, loader
    print(json.dumps(out))
""",
        timeout=120,
    )
    plain, packed = result["list"], result["strings"]
    assert len(plain) == len(packed) == 2
    # ~35 MiB of str objects, read in random order: each worker copies most of their pages
    assert min(plain) > 20, plain
    assert max(packed) < min(plain) / 2, (packed, plain)
