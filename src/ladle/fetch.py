"""Fetchers: turn one batch of indices (or the next stretch of a stream) into a collated batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ladle.collate import Collater, default_collate
from ladle.gathered import GatheredBatch

__all__ = ["IterableFetcher", "MapFetcher"]


class MapFetcher:
    """Fetch from a map-style dataset: ``__getitems__`` once per batch when it has one."""

    def __init__(
        self, dataset: Any, auto_collation: bool, collate_fn: Callable[[Any], Any]
    ) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self._getitems = getattr(dataset, "__getitems__", None) if auto_collation else None
        self._accepts_array = bool(getattr(dataset, "accepts_index_array", False))
        # ladle's collaters take a GatheredBatch's columns as they are; any other collate_fn
        # gets the plain list of samples torch would give it.
        self._takes_gathered = collate_fn is default_collate or isinstance(collate_fn, Collater)

    def fetch(self, indices: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[indices])
        if self._getitems is None:
            if isinstance(indices, np.ndarray):
                indices = indices.tolist()
            dataset = self.dataset
            return self.collate_fn([dataset[i] for i in indices])
        if isinstance(indices, np.ndarray) and not self._accepts_array:
            indices = indices.tolist()
        samples = self._getitems(indices)
        if isinstance(samples, GatheredBatch) and not self._takes_gathered:
            samples = list(samples)
        return self.collate_fn(samples)


class IterableFetcher:
    """Fetch from an iterable dataset's stream: ``batch_size`` samples at a time, or one."""

    def __init__(
        self,
        stream: Iterator[Any],
        batch_size: int | None,
        drop_last: bool,
        collate_fn: Callable[[Any], Any],
    ) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn

    def fetch(self) -> Any:
        """The next batch; raises StopIteration when the stream has no (full) batch left."""
        if self.batch_size is None:
            return self.collate_fn(next(self.stream))
        samples = list(itertools.islice(self.stream, self.batch_size))
        if not samples or (self.drop_last and len(samples) < self.batch_size):
            raise StopIteration
        return self.collate_fn(samples)
