"""A batch of samples fetched together and stored column-wise.

A dataset's vectorised ``__getitems__`` returns one: to a custom ``collate_fn`` it is an ordinary
sequence of samples (torch's contract for ``__getitems__``), while ``default_collate`` takes its
columns as they are, so a batch costs one gather per column instead of a Python loop per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

__all__ = ["GatheredBatch"]

Columns = tuple[Any, ...] | dict[str, Any]


class GatheredBatch(Sequence[Any]):
    """``length`` samples held as columns.

    ``columns`` is a tuple (samples are tuples), a dict (samples are dicts) or a single column
    (samples are its rows). A column is an already-stacked array or tensor, another
    GatheredBatch, or a list of per-sample values still to be collated.
    """

    __slots__ = ("_length", "columns")

    def __init__(self, columns: Any, length: int) -> None:
        self.columns = columns
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._length))]
        columns = self.columns
        if isinstance(columns, tuple):
            return tuple(column[i] for column in columns)
        if isinstance(columns, dict):
            return {key: column[i] for key, column in columns.items()}
        return columns[i]

    def __repr__(self) -> str:
        return f"GatheredBatch(length={self._length})"

    def collate(
        self,
        collate_list: Callable[[Sequence[Any], tuple[Any, ...]], Any],
        path: tuple[Any, ...] = (),
    ) -> Any:
        """The collated batch: stacked columns pass through, lists go to ``collate_list`` with
        their path in the sample (``("image",)``), so its errors can name the field.

        Tuples of columns come back as lists, as torch's default_collate turns tuples into lists.
        """

        def column(value: Any, key: tuple[Any, ...], transposed: bool = False) -> Any:
            if isinstance(value, GatheredBatch):
                return value.collate(collate_list, key)
            if isinstance(value, list):
                # torch transposes tuple samples with zip, so their columns arrive as tuples
                return collate_list(tuple(value) if transposed else value, key)
            return value

        columns = self.columns
        if isinstance(columns, tuple):
            return [column(c, (*path, i), transposed=True) for i, c in enumerate(columns)]
        if isinstance(columns, dict):
            return {key: column(c, (*path, key)) for key, c in columns.items()}
        return column(columns, path)
