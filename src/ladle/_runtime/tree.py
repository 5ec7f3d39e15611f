"""Walking a batch's structure: the containers collate builds, rebuilt around new leaves."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["is_namedtuple", "map_leaves", "rebuild_mapping"]


def is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def rebuild_mapping(template: Mapping[Any, Any], items: dict[Any, Any]) -> Any:
    """``items`` in the mapping type of ``template`` where it can be rebuilt, else a dict."""
    if type(template) is dict:
        return items
    if isinstance(template, MutableMapping):
        clone = copy.copy(template)
        clone.update(items)
        return clone
    try:
        return type(template)(items)  # type: ignore[call-arg]
    except TypeError:
        return items


def map_leaves(batch: Any, leaf: Callable[[Any], Any]) -> Any:
    """Apply ``leaf`` to every non-container value of ``batch``, keeping its structure."""
    cls = type(batch)
    if cls is list:
        return [map_leaves(item, leaf) for item in batch]
    if cls is dict:
        return {key: map_leaves(item, leaf) for key, item in batch.items()}
    if isinstance(batch, str | bytes):
        return batch
    if is_namedtuple(batch):
        return cls(*(map_leaves(item, leaf) for item in batch))
    if isinstance(batch, tuple | list):
        return cls(map_leaves(item, leaf) for item in batch)
    if isinstance(batch, Mapping):
        return rebuild_mapping(batch, {k: map_leaves(v, leaf) for k, v in batch.items()})
    if isinstance(batch, Sequence):  # a sequence type of the user's, rebuilt as collate does
        items = [map_leaves(item, leaf) for item in batch]
        try:
            return cls(items)
        except TypeError:
            return items
    return leaf(batch)
