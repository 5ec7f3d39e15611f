"""StringArray: many strings in two NumPy arrays, so that forked workers share them for good.

A list of five million str is five million objects, each with a reference count that every
read writes. A forked worker reading them copies, page by page, the memory its parent shares
with it: as much again per worker as the strings take in the parent. A StringArray keeps the
UTF-8 bytes of all its strings in one uint8 array and where each one starts in an int64 array
of offsets; ``array[i]`` decodes a new str from them, and reading never writes to their pages,
so every worker keeps sharing them. Memory is the strings' UTF-8 bytes plus 8 bytes a string;
a pickle (what a spawned worker receives) is the two arrays.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

__all__ = ["StringArray"]


def _wrong_element(items: Sequence[Any], kind: type) -> TypeError:
    index = next(i for i, item in enumerate(items) if not isinstance(item, kind))
    item = items[index]
    if index == 0:
        what = "StringArray elements must be str or bytes, but element 0 is"
    else:
        what = (
            f"StringArray elements must all be {kind.__name__} as element 0 is, but element "
            f"{index} is"
        )
    return TypeError(
        f"{what} {type(item).__name__} {item!r}; convert the elements first (e.g. "
        f"[str(x) for x in items]), or keep values of other types in a NumPy array or a "
        f"RecordArray column"
    )


def _encode(items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    try:
        joined = "".join(items)  # checks that every element is a str, at C speed
    except TypeError:
        raise _wrong_element(items, str) from None
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError as error:
        lengths = np.cumsum(np.fromiter(map(len, items), np.int64, len(items)))
        index = int(np.searchsorted(lengths, error.start, side="right"))
        raise ValueError(
            f"StringArray element {index} ({items[index]!r}) cannot be encoded as UTF-8: "
            f"{error.reason}; lone surrogates come from decoding with errors='surrogateescape' "
            f"or 'surrogatepass': encode such strings yourself and build the StringArray "
            f"from the bytes"
        ) from None
    if len(data) == len(joined):  # all ASCII: a character is a byte
        sizes = np.fromiter(map(len, items), np.int64, len(items))
    else:
        sizes = np.fromiter((len(s.encode("utf-8")) for s in items), np.int64, len(items))
    return _offsets(sizes), np.frombuffer(data, np.uint8)


def _join_bytes(items: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = b"".join(items)
    except TypeError:
        raise _wrong_element(items, bytes) from None
    if not all(isinstance(item, bytes) for item in items):  # join takes bytearray, memoryview
        raise _wrong_element(items, bytes)
    sizes = np.fromiter(map(len, items), np.int64, len(items))
    return _offsets(sizes), np.frombuffer(data, np.uint8)


def _offsets(sizes: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class StringArray:
    """An immutable sequence of str (or of bytes) held in two NumPy arrays.

    ``StringArray(items)`` packs a list (or any iterable) of str, or of bytes: every element of
    the first one's type. ``array[i]`` is a str (bytes); a slice, an array or list of indices,
    or a boolean mask gives a new StringArray (``.tolist()`` makes a list). ``offsets`` (int64,
    ``len + 1`` of them, into ``data``) and ``data`` (uint8, the UTF-8 bytes) are the storage;
    :meth:`from_arrays` builds one from them without copying, e.g. from ``np.load(mmap_mode)``.
    """

    __slots__ = ("_bytes", "_data", "_ends", "_offsets", "_view")

    def __init__(self, items: Iterable[str] | Iterable[bytes] = ()) -> None:
        if isinstance(items, str | bytes):
            raise TypeError(
                f"StringArray takes an iterable of strings, not one {type(items).__name__} "
                f"({items[:40]!r}); wrap it in a list: StringArray([text])"
            )
        values: Sequence[Any] = items if isinstance(items, list | tuple) else list(items)
        is_bytes = len(values) > 0 and isinstance(values[0], bytes)
        offsets, data = _join_bytes(values) if is_bytes else _encode(values)
        self._set(offsets, data, is_bytes)

    def _set(self, offsets: np.ndarray, data: np.ndarray, is_bytes: bool) -> None:
        self._offsets = _read_only(offsets)
        self._data = _read_only(data)
        self._bytes = is_bytes
        # memoryviews: indexing and slicing them is the fastest read (Python ints, no NumPy)
        self._view, self._ends = self._data.data, self._offsets.data

    @classmethod
    def from_arrays(cls, offsets: Any, data: Any, *, is_bytes: bool = False) -> StringArray:
        """A StringArray over ``offsets`` and ``data`` as they are (no copy when they are int64
        and contiguous uint8 already): string i is ``data[offsets[i]:offsets[i + 1]]``."""
        offsets = np.asarray(offsets)
        data = np.asarray(data)
        if offsets.ndim != 1 or offsets.size == 0 or offsets.dtype.kind not in "iu":
            raise ValueError(
                f"StringArray.from_arrays needs offsets as a 1-D integer array of len + 1 "
                f"values, but got shape {offsets.shape} of {offsets.dtype}; pass the offsets "
                f"array of an existing StringArray (array.offsets)"
            )
        if data.ndim != 1 or data.dtype != np.uint8:
            raise ValueError(
                f"StringArray.from_arrays needs data as a 1-D uint8 array, but got shape "
                f"{data.shape} of {data.dtype}; pass np.frombuffer(blob, np.uint8)"
            )
        offsets = offsets.astype(np.int64, copy=False)
        data = np.ascontiguousarray(data)  # decoding reads one buffer
        steps = np.diff(offsets)
        if offsets[0] < 0 or (steps < 0).any() or offsets[-1] > data.size:
            raise ValueError(
                f"StringArray.from_arrays needs non-decreasing offsets within the data's "
                f"{data.size} bytes, but they run from {offsets[0]} to {offsets[-1]}"
                f"{' and decrease somewhere' if (steps < 0).any() else ''}; pass the offsets "
                f"that the data was written with"
            )
        array = cls.__new__(cls)
        array._set(offsets, data, is_bytes)
        return array

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def is_bytes(self) -> bool:
        """True when the elements are bytes, False when they are str."""
        return self._bytes

    @property
    def nbytes(self) -> int:
        """The bytes this array holds: its strings' bytes and its offsets."""
        offsets = self._offsets
        return int(offsets[-1] - offsets[0]) + offsets.nbytes

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> StringArray: ...

    def __getitem__(self, index: Any) -> Any:
        # the hot path of a dataset's __getitem__: an int, checked first and cheaply
        if type(index) is int or isinstance(index, int | np.integer):
            ends = self._ends
            size = len(ends) - 1
            position = index if type(index) is int else operator.index(index)
            if position < 0:
                position += size
            if not 0 <= position < size:
                raise IndexError(
                    f"StringArray index {index} is out of range for {size} strings (valid: "
                    f"{-size} to {size - 1})"
                )
            chunk = self._view[ends[position] : ends[position + 1]].tobytes()
            return chunk if self._bytes else chunk.decode("utf-8")
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:  # a view: the offsets' slice, over the same data
                return self._from(self._offsets[start : max(start, stop) + 1], self._data)
            return self._gather(np.arange(start, stop, step))
        return self._gather(self._positions(index))

    def _positions(self, index: Any) -> np.ndarray:
        positions = np.asarray(index)
        size = len(self)
        if positions.dtype == bool:
            if positions.shape != (size,):
                raise IndexError(
                    f"a boolean mask over a StringArray needs one value per string ({size}), "
                    f"but has shape {positions.shape}"
                )
            return np.flatnonzero(positions)
        if positions.ndim != 1 or (positions.dtype.kind not in "iu" and positions.size > 0):
            raise TypeError(
                f"StringArray indices must be an int, a slice, or a 1-D sequence of ints or "
                f"bools, not {type(index).__name__} of shape {positions.shape} and dtype "
                f"{positions.dtype}"
            )
        positions = positions.astype(np.int64, copy=False)
        bad = (positions < -size) | (positions >= size)
        if bad.any():
            raise IndexError(
                f"StringArray index {positions[bad][0]} is out of range for {size} strings "
                f"(valid: {-size} to {size - 1})"
            )
        return np.where(positions < 0, positions + size, positions)

    def _gather(self, positions: np.ndarray) -> StringArray:
        starts = self._offsets[positions]
        sizes = self._offsets[positions + 1] - starts
        offsets = _offsets(sizes)
        # byte j of the new data is byte (starts[k] + j - offsets[k]) of the old, k its string
        source = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
        return self._from(offsets, self._data[source])

    def _from(self, offsets: np.ndarray, data: np.ndarray) -> StringArray:
        array = StringArray.__new__(StringArray)
        array._set(offsets, data, self._bytes)
        return array

    def __iter__(self) -> Iterator[Any]:
        view, decode = self._view, not self._bytes
        ends = self._offsets.tolist()
        for start, stop in itertools.pairwise(ends):
            yield str(view[start:stop], "utf-8") if decode else view[start:stop].tobytes()

    def tolist(self) -> list[Any]:
        return list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StringArray):
            return self._bytes == other._bytes and self._compact() == other._compact()
        if isinstance(other, list | tuple):
            return len(other) == len(self) and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def _compact(self) -> tuple[bytes, bytes]:
        offsets = self._offsets
        first, last = int(offsets[0]), int(offsets[-1])
        return (offsets - first).tobytes(), self._data[first:last].tobytes()

    def __reduce__(self) -> tuple[Any, ...]:
        # Only this array's own bytes: a slice of a big array pickles small.
        offsets = self._offsets
        first, last = int(offsets[0]), int(offsets[-1])
        data = np.ascontiguousarray(self._data[first:last])
        return (_rebuild, (offsets - first, data, self._bytes))

    def __repr__(self) -> str:
        kind = "bytes" if self._bytes else "str"
        head = ", ".join(repr(self[i]) for i in range(min(len(self), 3)))
        more = ", ..." if len(self) > 3 else ""
        return f"StringArray([{head}{more}], {len(self)} {kind}, {self.nbytes} bytes)"


def _rebuild(offsets: np.ndarray, data: np.ndarray, is_bytes: bool) -> StringArray:
    return StringArray.from_arrays(offsets, data, is_bytes=is_bytes)
