"""The ranks of the running job: which one this process is, and how many there are.

They come from the engines that start the job, never from a launcher of ours: an initialised
``torch.distributed`` process group, else torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``; also set by Lightning and accelerate), else JAX's processes. Nothing is imported
to find out: torch and JAX count only once the program has imported them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ladle.validation import check_int

__all__ = ["Ranks", "detect_ranks", "process_group", "resolve_ranks"]


@dataclass(frozen=True)
class Ranks:
    """This process is rank ``rank`` of ``world_size``; ``source`` says where that came from."""

    rank: int
    world_size: int
    local_rank: int | None = None
    source: str = "given"

    def __post_init__(self) -> None:
        check_int(self.world_size, "world_size", minimum=1)
        check_int(self.rank, "rank", minimum=0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank={self.rank} names no rank of world_size={self.world_size}; ranks count "
                f"from 0 to world_size - 1"
            )


def process_group() -> tuple[int, int] | None:
    """(world size, rank) of an initialised torch.distributed process group, else None."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return None


def _environment_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"the environment variable {name}={value!r} is not an integer; torchrun sets it to "
            f"this process's {name.lower()}, so unset it or launch with torchrun"
        ) from None


def _from_environment() -> Ranks | None:
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return None
    missing = [name for name in ("RANK", "WORLD_SIZE") if name not in os.environ]
    if missing:
        raise ValueError(
            f"the environment sets {'WORLD_SIZE' if missing == ['RANK'] else 'RANK'} but not "
            f"{missing[0]}; torchrun sets both, so set both or neither"
        )
    local = _environment_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else None
    rank, world = _environment_int("RANK"), _environment_int("WORLD_SIZE")
    try:
        return Ranks(rank, world, local, "environment")
    except ValueError as error:
        raise ValueError(
            f"the environment's RANK={rank} and WORLD_SIZE={world} name no rank: {error}"
        ) from None


def _from_jax() -> Ranks | None:
    """JAX's processes, once ``jax.distributed.initialize()`` has run: JAX merely imported (by
    a dependency, say) is no job of many processes, and asking it would start its backend."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    initialized = getattr(getattr(jax, "distributed", None), "is_initialized", None)
    if initialized is None or not initialized():
        return None
    return Ranks(int(jax.process_index()), int(jax.process_count()), None, "jax")


def detect_ranks() -> Ranks:
    """This process's rank and the world size, from torch.distributed, torchrun's environment
    or JAX, in that order."""
    group = process_group()
    if group is not None:
        local = os.environ.get("LOCAL_RANK")
        local_rank = int(local) if local is not None and local.isdigit() else None
        return Ranks(group[1], group[0], local_rank, "torch.distributed")
    found = _from_environment() or _from_jax()
    if found is None:
        raise RuntimeError(
            "distributed=True found no ranks: no torch.distributed process group is "
            "initialised, RANK and WORLD_SIZE are not set (torchrun sets them) and "
            "jax.distributed is not initialised; launch the job with torchrun (or "
            "Lightning/accelerate), call torch.distributed.init_process_group() or "
            "jax.distributed.initialize() first, or pass "
            "distributed=ladle.Ranks(rank, world_size) (ladle.Ranks(0, 1) for one process)"
        )
    return found


def resolve_ranks(distributed: object) -> Ranks | None:
    """The ranks the ``distributed`` argument asks for: None for False (no sharding)."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return detect_ranks()
    if isinstance(distributed, Ranks):
        return distributed
    raise TypeError(
        f"distributed should be True (shard across the ranks of the running job), False, or "
        f"a ladle.Ranks(rank, world_size), but got distributed={distributed!r}"
    )
