"""The random samplers: a permutation (or draws) per epoch from a seed or a generator."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Any

import numpy as np

from ladle.sampler import EpochSampler, check_flag, check_positive_int, check_sized
from ladle.seeding import (
    check_generator,
    check_seed,
    draw_seed,
    fresh_seed,
    generator_state,
    keyed_rng,
    restore_generator,
)
from ladle.validation import check_bool

__all__ = ["RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler"]


class _SeededSampler(EpochSampler):
    """An epoch sampler whose randomness comes from ``seed``, ``generator`` or fresh entropy."""

    advances = True

    def __init__(self, generator: Any, seed: int | None) -> None:
        super().__init__()
        if seed is not None and generator is not None:
            raise ValueError(
                f"{type(self).__name__} takes seed or generator, not both; seed=<int> fixes "
                f"every epoch's order, generator= draws a new seed from it each epoch"
            )
        self.generator = check_generator(generator) if generator is not None else None
        self.seed = check_seed(seed) if seed is not None else None
        self._base_seed = self.seed if self.seed is not None else fresh_seed()
        self._drawn: tuple[int, int] | None = None  # (epoch, seed drawn from the generator)

    def _rng(self, epoch: int) -> np.random.Generator:
        if self.generator is None:
            return keyed_rng(self._base_seed, epoch)
        # torch draws a new seed from the generator for each epoch; the draw is kept so that
        # re-reading an epoch (state_dict, resume) gives the same order.
        if self._drawn is None or self._drawn[0] != epoch:
            self._drawn = (epoch, draw_seed(self.generator))
        return keyed_rng(self._drawn[1])

    def state_at(self, epoch: int, offset: int) -> dict[str, Any]:
        """The position, plus what the order depends on: ``seed`` (the one given or the fresh
        one picked), or the generator's state and the seed already drawn for ``epoch``."""
        state = super().state_at(epoch, offset)
        if self.generator is None:
            state["seed"] = self._base_seed
            return state
        if self._drawn is not None and self._drawn[0] == epoch:
            state["drawn"] = self._drawn[1]
        state["generator"] = generator_state(self.generator)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        name = type(self).__name__
        if self.generator is None:
            if "generator" in state:
                raise ValueError(
                    f"the state was saved from a {name} drawing from a generator, but this one "
                    f"has none; build it with generator= as the saved one was"
                )
            if "seed" in state:
                seed = check_seed(state["seed"], "state['seed']")
                if self.seed is not None and seed != self.seed:
                    raise ValueError(
                        f"the state was saved from a {name} with seed={seed}, but this one has "
                        f"seed={self.seed}; resume with seed={seed} (or seed=None to adopt it)"
                    )
                if seed != self._base_seed:
                    self._base_seed = seed
                    self._cache = None
        else:
            if "generator" not in state:
                raise ValueError(
                    f"the state was saved from a {name} without a generator, but this one has "
                    f"generator=; drop it (the saved seed is adopted)"
                )
            restore_generator(self.generator, state["generator"])
            drawn = state.get("drawn")
            self._drawn = None if drawn is None else (int(state["epoch"]), check_seed(drawn))
            self._cache = None
        super().load_state_dict(state)


class RandomSampler(_SeededSampler):
    """Indices in random order: a fresh permutation each epoch, or draws with replacement."""

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Any = None,
        *,
        seed: int | None = None,
    ) -> None:
        check_bool(replacement, "replacement")
        self.data_source = check_sized(data_source, "data_source")
        self.replacement = replacement
        self._num_samples = num_samples
        if num_samples is not None:
            check_positive_int(num_samples, "num_samples")
        elif len(data_source) == 0:
            raise ValueError(
                "num_samples should be a positive integer value, but got num_samples=0: "
                "RandomSampler cannot shuffle an empty dataset"
            )
        super().__init__(generator, seed)

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __len__(self) -> int:
        return self.num_samples

    def _compute_order(self, epoch: int) -> np.ndarray:
        n, count = len(self.data_source), self.num_samples
        rng = self._rng(epoch)
        if self.replacement:
            return rng.integers(0, n, size=count, dtype=np.int64)
        rounds, rest = divmod(count, n)
        parts = [rng.permutation(n) for _ in range(rounds)]
        if rest:
            parts.append(rng.permutation(n)[:rest])
        return np.concatenate(parts).astype(np.int64, copy=False)


def _index_array(indices: Any) -> np.ndarray:
    """``indices`` as int64, refusing what is not a sequence of integers (floats would be
    truncated without a word)."""
    array = np.asarray(indices)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(
            f"indices should be a 1-d sequence of ints, but got indices={indices!r}; pass the "
            f"dataset positions to sample from, e.g. list(range(100))"
        )
    return array.astype(np.int64, copy=False)


class SubsetRandomSampler(_SeededSampler):
    """The given indices in a random order, without replacement."""

    def __init__(
        self, indices: Sequence[int], generator: Any = None, *, seed: int | None = None
    ) -> None:
        super().__init__(generator, seed)
        self.indices = indices
        self._index_array = _index_array(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _compute_order(self, epoch: int) -> np.ndarray:
        return self._index_array[self._rng(epoch).permutation(len(self._index_array))]


class WeightedRandomSampler(_SeededSampler):
    """``num_samples`` indices of ``range(len(weights))`` drawn with probability ∝ weight."""

    def __init__(
        self,
        weights: Sequence[float],
        num_samples: int,
        replacement: bool = True,
        generator: Any = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.replacement = check_flag(replacement, "replacement")
        array = np.asarray(weights, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(
                f"weights should be a 1d sequence but given weights have shape {array.shape}"
            )
        if not np.all(np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
            raise ValueError(
                "weights should be finite and non-negative with a positive sum, but got "
                f"weights={array.tolist() if array.size <= 8 else array}"
            )
        p = array / array.sum()  # weights too small to matter underflow to zero here
        if not replacement and num_samples > np.count_nonzero(p):
            raise ValueError(
                f"num_samples={num_samples} exceeds the {np.count_nonzero(p)} non-zero "
                f"weights; without replacement each index is drawn at most once, so lower "
                f"num_samples or set replacement=True"
            )
        super().__init__(generator, seed)
        self.weights = array
        self._p = p

    def __len__(self) -> int:
        return self.num_samples

    def _compute_order(self, epoch: int) -> np.ndarray:
        rng = self._rng(epoch)
        drawn = rng.choice(len(self._p), size=self.num_samples, replace=self.replacement, p=self._p)
        return drawn.astype(np.int64, copy=False)
