"""Seeds and random generators.

Every random choice ladle makes comes from a generator keyed by integers: ``(seed, epoch)`` for an
epoch's order. Keys go through NumPy's SeedSequence, so neighbouring keys give independent streams.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

__all__ = ["check_generator", "check_seed", "draw_seed", "fresh_seed", "keyed_rng"]

_SEED_BOUND = 2**63


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} should be a non-negative int, but got {name}={seed!r}")
    if seed < 0:
        raise ValueError(f"{name} should be a non-negative int, but got {name}={seed}")
    return int(seed)


def fresh_seed() -> int:
    """A new seed from the operating system's entropy, for loaders given no seed (as torch)."""
    return secrets.randbelow(_SEED_BOUND)


def _is_torch_generator(generator: Any) -> bool:
    return type(generator).__module__.startswith("torch") and hasattr(generator, "manual_seed")


def check_generator(generator: Any, name: str = "generator") -> Any:
    """Return ``generator`` if it is a NumPy or torch generator, else raise naming ``name``."""
    if isinstance(generator, np.random.Generator) or _is_torch_generator(generator):
        return generator
    raise TypeError(
        f"{name} should be a numpy.random.Generator or a torch.Generator, "
        f"but got {name}={generator!r}; to fix the order, pass seed=<int> instead"
    )


def draw_seed(generator: Any, name: str = "generator") -> int:
    """Draw one seed from a NumPy or torch generator, advancing it as torch's samplers do."""
    if isinstance(check_generator(generator, name), np.random.Generator):
        return int(generator.integers(_SEED_BOUND))
    import torch

    value = torch.empty((), dtype=torch.int64).random_(generator=generator).item()
    return int(value) % _SEED_BOUND


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator for ``(seed, *key)``: a pure function of its arguments."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
