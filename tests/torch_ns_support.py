"""Shared helpers for the differential tests of the ``ladle.torch`` namespace.

Every test in ``test_torch_ns*.py`` / ``test_torch_namespace.py`` runs the same code twice: once
with ``torch.utils.data`` (the reference) and once with the namespace under test, which is
``ladle.torch`` unless the environment variable ``LADLE_TORCH_NS`` names another module. Setting
``LADLE_TORCH_NS=torch.utils.data`` runs torch against itself: every test must then pass (or skip,
for ladle's own additions), which validates the harness.

Lives in a plain module (not the test files) so that worker processes, whatever their start
method, can import the datasets defined here.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import time
import traceback
import warnings
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from workers_support import child_pids

from ladle.errors import LadleError

NS_ENV = "LADLE_TORCH_NS"


def namespace_under_test() -> ModuleType:
    """The module tested against torch.utils.data: ``ladle.torch`` by default."""
    return importlib.import_module(os.environ.get(NS_ENV, "ladle.torch"))


def is_reference(ns: ModuleType) -> bool:
    """True when the harness runs torch against itself."""
    return ns is tud


# --------------------------------------------------------------------------------------------
# outcomes: a value, or an exception's type and text


@dataclass
class Raised:
    type: type[BaseException]
    message: str

    def opening(self, limit: int = 60) -> str:
        """torch's text up to the first ';' or line break, at most ``limit`` characters: ladle
        may append a fix after it, and object reprs (addresses) come later in the text."""
        return self.message.split(";")[0].split("\n")[0][:limit]


def outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``'s value, or a :class:`Raised` for the exception it raises."""
    try:
        return fn()
    except Exception as error:
        # Break the exception <-> frame cycle, so that an iterator in those frames is freed
        # now: torch's worker shutdown from a gc pass waits 5 s per worker.
        traceback.clear_frames(error.__traceback__)
        return Raised(type(error), str(error))


def assert_same_outcome(got: Any, want: Any, *, limit: int = 60, full: bool = False) -> None:
    """``got`` (ns) matches ``want`` (torch): same value, or same exception type (or a ladle
    error deriving from it) and opening
    (with ``full``: ns's text starts with the whole of torch's)."""
    if isinstance(want, Raised):
        assert isinstance(got, Raised), (
            f"torch raises {want.type.__name__}: {want.message!r}; ns returns {got!r}"
        )
        same_text = got.message.startswith(want.message if full else want.opening(limit))
        # ladle's own errors derive from torch's type (and LadleError): except clauses
        # written for torch catch them
        ours = issubclass(got.type, want.type) and issubclass(got.type, LadleError)
        if got.type is not want.type and not ours:
            relation = "a subclass of torch's" if issubclass(got.type, want.type) else "unrelated"
            raise AssertionError(
                f"torch raises {want.type.__name__}, ns {got.type.__module__}."
                f"{got.type.__name__} ({relation}); text {'same' if same_text else 'differs'}:"
                f"\n torch: {want.message!r}\n ns:    {got.message!r}"
            )
        assert same_text, (
            f"{want.type.__name__} text differs:\n torch: {want.message!r}\n ns:    {got.message!r}"
        )
        return
    assert not isinstance(got, Raised), (
        f"torch returns {want!r}; ns raises {got.type.__name__}: {got.message!r}"
    )
    assert_exact(got, want)


def differential(case: Callable[[ModuleType], Any], ns: ModuleType, *, full: bool = False) -> Any:
    """Run ``case`` with torch.utils.data and with ``ns``; the outcomes must agree. Returns
    torch's outcome."""
    want = outcome(lambda: case(tud))
    got = outcome(lambda: case(ns))
    assert_same_outcome(got, want, full=full)
    return want


# --------------------------------------------------------------------------------------------
# exact structural comparison


def assert_exact(got: Any, want: Any, path: str = "out") -> None:
    """Same types (exactly), structure, tensor dtypes/shapes/values, container extras."""
    assert type(got) is type(want), (
        f"{path}: ns gives {type(got).__module__}.{type(got).__qualname__} {got!r:.200}, "
        f"torch gives {type(want).__module__}.{type(want).__qualname__} {want!r:.200}"
    )
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != torch's {want.dtype}"
        assert tuple(got.shape) == tuple(want.shape), f"{path}: shape {got.shape} != {want.shape}"
        assert got.device == want.device, f"{path}: device {got.device} != {want.device}"
        assert torch.equal(got, want), f"{path}: values differ:\n{got}\n{want}"
    elif isinstance(want, np.ndarray | np.generic):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != torch's {want.dtype}"
        assert np.shape(got) == np.shape(want), f"{path}: shape differs"
        assert np.array_equal(got, want), f"{path}: values differ"
    elif isinstance(want, str | bytes):
        assert got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, Mapping):
        assert list(got.keys()) == list(want.keys()), f"{path}: keys {list(got)} != {list(want)}"
        assert getattr(got, "tag", None) == getattr(want, "tag", None), f"{path}: tag differs"
        for key in want:
            assert_exact(got[key], want[key], f"{path}[{key!r}]")
    elif isinstance(want, Sequence):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        assert getattr(got, "tag", None) == getattr(want, "tag", None), f"{path}: tag differs"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_exact(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), f"{path}: {got!r} != nan"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def recorded_warnings(fn: Callable[[], Any]) -> tuple[Any, list[tuple[type[Warning], str]]]:
    """``fn()``'s outcome and every warning it raised, as (category, text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = outcome(fn)
    return result, [(w.category, str(w.message)) for w in caught]


# --------------------------------------------------------------------------------------------
# sample types


Point = namedtuple("Point", ["x", "y"])
Labelled = namedtuple("Labelled", ["point", "meta"])


class Record(MutableMapping[str, Any]):
    """A custom mutable mapping with extra state: collate clones it and updates the clone."""

    def __init__(self, data: dict[str, Any], tag: str = "t") -> None:
        self.data = dict(data)
        self.tag = tag

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class FrozenRecord(Mapping[str, Any]):
    """An immutable mapping that can be rebuilt from a dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Row(Sequence[Any]):
    """An immutable custom sequence, rebuilt from a list."""

    def __init__(self, items: Sequence[Any]) -> None:
        self._items = list(items)

    def __getitem__(self, i: Any) -> Any:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)


class MyList(list):  # type: ignore[type-arg]
    """A list subclass: collate clones it and assigns the items."""


def arr(i: int, dtype: Any = np.float32, shape: tuple[int, ...] = (3,)) -> np.ndarray:
    return (np.arange(math.prod(shape)).reshape(shape) + i).astype(dtype)


# one sample per kind; SAMPLES[kind](i) is sample i
SAMPLES: dict[str, Callable[[int], Any]] = {
    "float32 array": lambda i: arr(i),
    "int64 2-d array": lambda i: arr(i, np.int64, (2, 3)),
    "uint8 image": lambda i: arr(i, np.uint8, (4, 4, 3)),
    "bool array": lambda i: np.array([True, i % 2 == 0]),
    "0-d array": lambda i: np.array(i * 1.5),
    "float16 array": lambda i: arr(i, np.float16),
    "tensor": lambda i: torch.arange(3) + i,
    "float tensor 2-d": lambda i: torch.ones(2, 3) * i,
    "0-d tensor": lambda i: torch.tensor(i * 0.5),
    "bool tensor": lambda i: torch.tensor([True, i % 2 == 0]),
    "float32 scalar": lambda i: np.float32(i) / 3,
    "int16 scalar": lambda i: np.int16(i),
    "bool_ scalar": lambda i: np.bool_(i % 2),
    "float64 scalar": lambda i: np.float64(i),
    "uint8 scalar": lambda i: np.uint8(i),
    "int": lambda i: i - 2,
    "float": lambda i: i * 1.25,
    "bool": lambda i: i % 2 == 0,
    "str": lambda i: "s" * (i + 1),
    "bytes": lambda i: b"b" * (i + 1),
    "None": lambda i: None,
    "dict": lambda i: {"x": arr(i), "y": i, "name": f"n{i}"},
    "OrderedDict": lambda i: OrderedDict([("b", i), ("a", arr(i))]),
    "custom MutableMapping": lambda i: Record({"x": arr(i), "y": i}),
    "custom Mapping": lambda i: FrozenRecord({"x": arr(i), "y": i}),
    "namedtuple": lambda i: Point(arr(i), i),
    "nested namedtuple": lambda i: Labelled(Point(i, float(i)), {"id": i}),
    "tuple": lambda i: (arr(i), i, i * 0.5, f"s{i}"),
    "list": lambda i: [arr(i), np.int32(i), [i, float(i)]],
    "custom Sequence": lambda i: Row([arr(i), i]),
    "list subclass": lambda i: MyList([arr(i), i]),
    "tensor pair": lambda i: (torch.full((2,), float(i)), torch.tensor(i)),
    "nested mix": lambda i: {
        "img": arr(i, np.uint8, (2, 2)),
        "meta": Point({"a": i, "t": torch.tensor([i])}, [np.int16(i), np.bool_(i % 2)]),
        "tags": (f"t{i}", b"x"),
        "w": [np.float64(i), i / 2],
    },
}


class Samples:
    """A map-style dataset (no base class) of ``n`` samples of one kind."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.n = kind, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return SAMPLES[self.kind](i)


class Stream(tud.IterableDataset):  # type: ignore[type-arg]
    """0..n-1 as a stream (torch's IterableDataset), with a length only when ``length`` is
    given (it may lie)."""

    def __init__(self, n: int, length: int | None = None) -> None:
        self.n, self.length = n, length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"object of type '{type(self).__name__}' has no len()")
        return self.length

    def __repr__(self) -> str:
        return f"Stream(n={self.n})"


class Unsized(tud.IterableDataset):  # type: ignore[type-arg]
    """A stream without ``__len__``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))


class Sharded(tud.IterableDataset):  # type: ignore[type-arg]
    """0..n-1 split across workers with torch's get_worker_info(): each sample once."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        info = tud.get_worker_info()
        start, step = (info.id, info.num_workers) if info is not None else (0, 1)
        return iter(range(start, self.n, step))


def worker_record(getter: Callable[[], Any]) -> dict[str, Any]:
    """Everything a worker knows about itself, as plain values."""
    info = getter()
    if info is None:
        return {"info": None}
    return {
        "id": info.id,
        "num_workers": info.num_workers,
        "seed": info.seed,
        "dataset": type(info.dataset).__name__,
        "dataset_tag": getattr(info.dataset, "tag", None),
    }


class WhoAmI(tud.Dataset):  # type: ignore[type-arg]
    """Each sample reports the worker that loaded it and the state of its RNGs.

    ``module`` names the namespace whose get_worker_info is called besides torch's (a name, so
    that the dataset pickles)."""

    def __init__(self, n: int, module: str) -> None:
        self.n, self.module, self.tag = n, module, "whoami"
        self.init_ids: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        own = importlib.import_module(self.module).get_worker_info
        return {
            "index": i,
            "torch_info": worker_record(tud.get_worker_info),
            "ns_info": worker_record(own),
            "initial_seed": torch.initial_seed(),
            "init_ids": list(self.init_ids),
            "torch_draw": torch.randint(0, 2**31, (1,)).item(),
            "random_draw": random.random(),
            "numpy_draw": int(np.random.randint(0, 2**31)),
        }


def record_worker_init(worker_id: int) -> None:
    """worker_init_fn: remember the id on the worker's copy of the dataset."""
    info = tud.get_worker_info()
    assert info is not None and info.id == worker_id
    info.dataset.init_ids.append(worker_id)


class FailAt(tud.Dataset):  # type: ignore[type-arg]
    """Integers; sample ``at`` raises ``error(message)``."""

    def __init__(self, n: int, at: int, error: type[Exception], message: str) -> None:
        self.n, self.at, self.error, self.message = n, at, error, message

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.at:
            raise self.error(self.message)
        return i


def identity(batch: Any) -> Any:
    return batch


def wait_no_children(grace: float = 10.0) -> list[int]:
    """Children still alive after ``grace`` seconds (empty: all gone)."""
    deadline = time.monotonic() + grace
    while (left := child_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
