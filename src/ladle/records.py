"""RecordArray: a list of records (dicts or tuples of scalars and strings) as columns.

A million small dicts are millions of Python objects, and every read in a forked worker writes
reference counts into the pages they share with the parent (see strings.py). A RecordArray
holds one NumPy array per field (a :class:`~ladle.StringArray` for str and bytes fields), so
reading ``records[i]`` builds a new dict from arrays whose pages stay shared.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ladle.strings import StringArray

__all__ = ["RecordArray"]

Column = np.ndarray | StringArray

_DTYPES: dict[frozenset[type], Any] = {
    frozenset({bool}): np.bool_,
    frozenset({int}): np.int64,
    frozenset({int, bool}): np.int64,
    frozenset({float}): np.float64,
    frozenset({float, int}): np.float64,
}


def _column(values: list[Any], field: Any, records: Sequence[Any] | None) -> tuple[Column, bool]:
    """(the column of ``field``, whether its elements go back out as Python scalars)."""
    kinds = frozenset(map(type, values))
    if kinds in (frozenset({str}), frozenset({bytes})):
        return StringArray(values), False
    if kinds in _DTYPES:
        try:
            return np.fromiter(values, _DTYPES[kinds], len(values)), True
        except OverflowError:
            big = next(i for i, v in enumerate(values) if not -(2**63) <= v < 2**63)
            raise ValueError(
                f"RecordArray field {field!r} of record {big} is {values[big]}, beyond "
                f"int64; store it as a str (or a float) in every record"
            ) from None
    if len(kinds) == 1 and issubclass(next(iter(kinds)), np.generic):
        return np.array(values), False
    supported = (str, bytes, bool, int, float, np.generic)
    index = next((i for i, v in enumerate(values) if not isinstance(v, supported)), None)
    if index is None:  # supported types that do not mix: blame the first that differs
        first = type(values[0])
        clashes = [i for i, v in enumerate(values) if type(v) is not first]
        # int beside bool, or beside float, is fine: blame a type that mixes with neither
        index = next(
            (i for i in clashes if frozenset({first, type(values[i])}) not in _DTYPES),
            clashes[0],
        )
        wanted = f"{first.__name__}, as record 0's is"
    else:
        wanted = "a str, bytes, bool, int, float or NumPy scalar"
    wrong = values[index]
    where = f"; the record: {records[index]!r}" if records is not None else ""
    raise TypeError(
        f"RecordArray field {field!r} of record {index} is {type(wrong).__name__} {wrong!r}, "
        f"but every record's {field!r} must be {wanted}; convert the values, or keep records "
        f"with such fields in a list{where}"
    )


class RecordArray:
    """An immutable sequence of records held as columns.

    ``RecordArray(records)`` takes a list (or any iterable) of dicts with the same keys, or of
    tuples (namedtuples included) of one length, whose fields are str, bytes, bool, int, float
    or NumPy scalars, one type per field (ints among floats become floats, bools among ints
    become ints: a column has one dtype). ``records[i]`` is a new dict (tuple) of that record's
    fields as Python values of the column's type; a slice, an array
    of indices or a boolean mask gives a new RecordArray. ``columns`` maps each field (a tuple
    position for tuples) to its NumPy array or StringArray; :meth:`from_columns` builds one.
    """

    __slots__ = ("_columns", "_length", "_make", "_python")

    def __init__(self, records: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]]) -> None:
        values: Sequence[Any] = records if isinstance(records, list | tuple) else list(records)
        if not values:
            self._set({}, 0, dict, frozenset())
            return
        first = values[0]
        if isinstance(first, Mapping):
            fields: list[Any] = list(first)
            make: Any = dict
        elif isinstance(first, tuple):
            fields = list(range(len(first)))
            make = getattr(type(first), "_make", tuple)  # a namedtuple rebuilds its own type
        else:
            raise TypeError(
                f"RecordArray takes dicts or tuples, but record 0 is {type(first).__name__} "
                f"{first!r}; for a list of strings use StringArray, for numbers a NumPy array"
            )
        self._check_shapes(values, fields)
        columns: dict[Any, Column] = {}
        python = set()
        for field in fields:
            column, as_python = _column([r[field] for r in values], field, values)
            columns[field] = column
            if as_python:
                python.add(field)
        self._set(columns, len(values), make, frozenset(python))

    @staticmethod
    def _check_shapes(values: Sequence[Any], fields: list[Any]) -> None:
        first = values[0]
        kind = Mapping if isinstance(first, Mapping) else tuple
        for index, record in enumerate(values):
            if not isinstance(record, kind):
                raise TypeError(
                    f"RecordArray record {index} is {type(record).__name__} {record!r}, but "
                    f"record 0 is a {type(first).__name__}; make every record one kind"
                )
            if kind is tuple and len(record) != len(fields):
                raise ValueError(
                    f"RecordArray record {index} has {len(record)} fields, record 0 has "
                    f"{len(fields)}; give every record the same fields"
                )
            same_keys = len(record) == len(fields) and all(k in record for k in fields)
            if kind is Mapping and not same_keys:
                raise ValueError(
                    f"RecordArray record {index} has keys {sorted(map(str, record))}, record 0 "
                    f"has {sorted(map(str, fields))}; give every record the same keys"
                )

    def _set(
        self, columns: dict[Any, Column], length: int, make: Any, python: frozenset[Any]
    ) -> None:
        self._columns, self._length, self._make, self._python = columns, length, make, python

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> RecordArray:
        """Dict records over ``columns``, one value of each per record: NumPy arrays and
        StringArrays as they are (a NumPy column gives NumPy scalars), lists packed here."""
        packed: dict[Any, Column] = {}
        python = set()
        for name, column in columns.items():
            if isinstance(column, np.ndarray | StringArray):
                packed[name] = column
            else:
                packed[name], as_python = _column(list(column), name, None)
                if as_python:
                    python.add(name)
        lengths = {name: len(column) for name, column in packed.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"RecordArray.from_columns needs columns of one length, but got {lengths}; "
                f"give every column one value per record"
            )
        array = cls.__new__(cls)
        array._set(packed, next(iter(lengths.values()), 0), dict, frozenset(python))
        return array

    @property
    def columns(self) -> dict[Any, Column]:
        return dict(self._columns)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            position = operator.index(index)
            size = self._length
            if position < 0:
                position += size
            if not 0 <= position < size:
                raise IndexError(
                    f"RecordArray index {index} is out of range for {size} records (valid: "
                    f"{-size} to {size - 1})"
                )
            python = self._python
            values = [
                column.item(position) if field in python else column[position]  # type: ignore[union-attr]
                for field, column in self._columns.items()
            ]
            if self._make is dict:
                return dict(zip(self._columns, values, strict=True))
            return self._make(values)
        picked = {field: column[index] for field, column in self._columns.items()}
        # records without fields: a zero-width array indexes like the columns would (no memory)
        length = (
            len(next(iter(picked.values()))) if picked else len(np.empty((self._length, 0))[index])
        )
        array = RecordArray.__new__(RecordArray)
        array._set(picked, length, self._make, self._python)
        return array

    def __iter__(self) -> Iterator[Any]:
        for position in range(self._length):
            yield self[position]

    def tolist(self) -> list[Any]:
        return list(self)

    def __repr__(self) -> str:
        fields = ", ".join(map(repr, self._columns))
        return f"RecordArray({self._length} records, fields {fields})"
