"""torch's samplers, driven by ladle's engine, with a position that can be saved.

ladle.torch iterates torch's own samplers, so an unseeded shuffle draws from torch's default
generator exactly as torch's loader does and ``torch.manual_seed`` governs it. What a pass's
order depends on is then torch's random state where the sampler starts: the default
generator's (the samplers given no generator draw from it on their first step), the states of
the generators the samplers hold, and the epochs set with ``set_epoch``. :class:`SamplerState`
records those at the start of a pass; a resumed pass restores them and replays the sampler,
drawing from a copy of the saved default state so that the program's own random stream is
left as it is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as torch_data

__all__ = ["SamplerState", "decode_state", "encode_state"]

_MISSING = object()
_LINKS = ("batch_sampler", "sampler")  # how samplers hold the samplers they wrap
_DEPTH = 6


def encode_state(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def decode_state(text: str) -> torch.Tensor:
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()
    return torch.from_numpy(raw)


def _chain(sampler: Any) -> list[Any]:
    """``sampler`` and the samplers it wraps, outermost first."""
    chain: list[Any] = []
    seen: set[int] = set()
    node = sampler
    while node is not None and id(node) not in seen and len(chain) < _DEPTH:
        chain.append(node)
        seen.add(id(node))
        node = next((getattr(node, link) for link in _LINKS if hasattr(node, link)), None)
    return chain


def _own_generator(node: Any) -> torch.Generator | None:
    generator = getattr(node, "generator", None)
    if isinstance(generator, torch.Generator) and generator is not torch.default_generator:
        return generator
    return None


class SamplerState:
    """The index sampler of a ladle.torch loader: iterates ``sampler`` as torch's loader
    would, and saves and restores what its order depends on (see the module's docstring)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self._replay: torch.Tensor | None = None  # the default state the next pass draws from

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        replay, self._replay = self._replay, None
        iterator: Iterator[Any] = _stock_batches(self.sampler) or iter(self.sampler)
        if replay is None:
            return iterator
        return _replayed(iterator, replay)

    def state_dict(self) -> dict[str, Any]:
        chain = _chain(self.sampler)
        generators = [_own_generator(node) for node in chain]
        epochs = [getattr(node, "epoch", None) for node in chain]
        return {
            "default": encode_state(torch.get_rng_state()),
            "generators": [None if g is None else encode_state(g.get_state()) for g in generators],
            "epochs": [epoch if isinstance(epoch, int) else None for epoch in epochs],
        }

    def state_between_passes(self) -> dict[str, Any]:
        """The state saved while no pass runs: the next pass draws from torch's default
        generator afresh, as a new pass does, so the default state is not kept."""
        return {**self.state_dict(), "default": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        chain = _chain(self.sampler)
        generators, epochs = state.get("generators"), state.get("epochs")
        if not isinstance(generators, list) or not isinstance(epochs, list):
            raise ValueError(
                f"the saved sampler state {sorted(state)!r} is not a ladle.torch sampler's; "
                f"pass a state_dict() of a ladle.torch DataLoader"
            )
        if len(generators) != len(chain) or len(epochs) != len(chain):
            raise ValueError(
                f"the saved sampler state describes {len(generators)} nested samplers, but "
                f"this loader's sampler has {len(chain)}; resume with the same sampler"
            )
        for node, saved in zip(chain, generators, strict=True):
            if saved is None:
                continue  # it drew from no generator of its own when the state was saved
            generator = _own_generator(node)
            if generator is None:
                if getattr(node, "generator", _MISSING) is not None:
                    raise ValueError(
                        f"the saved sampler state holds a generator for "
                        f"{type(node).__name__}, which has no generator attribute; resume "
                        f"with the same sampler"
                    )
                # a sampler that makes its generator on its first pass (accelerate's
                # SeedableRandomSampler) gets it now, in the saved state
                generator = torch.Generator()
                node.generator = generator
            generator.set_state(decode_state(saved))
        for node, epoch in zip(chain, epochs, strict=True):
            if epoch is not None:
                node.epoch = epoch  # what set_epoch() sets
        default = state.get("default")
        self._replay = None if default is None else decode_state(default)


def _stock_batches(sampler: Any) -> Iterator[np.ndarray] | None:
    """torch's ``BatchSampler`` over its own ``RandomSampler`` (without replacement) or
    ``SequentialSampler``, as int64 slices of whole epoch orders instead of one Python int at a
    time: the same batches, drawing from the same generators at the same steps. None for any
    other sampler, which is iterated as it is."""
    if type(sampler) is not torch_data.BatchSampler:
        return None
    inner = sampler.sampler
    if type(inner) is torch_data.SequentialSampler:
        rounds: Iterator[np.ndarray] = iter([np.arange(len(inner.data_source), dtype=np.int64)])
    elif type(inner) is torch_data.RandomSampler and not inner.replacement:
        rounds = _permutations(inner)
    else:
        return None
    return _batched(rounds, sampler.batch_size, sampler.drop_last)


def _permutations(sampler: Any) -> Iterator[np.ndarray]:
    """The rounds of ``RandomSampler.__iter__``: its draws, in its order, at its steps."""
    n = len(sampler.data_source)
    generator = sampler.generator
    if generator is None:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator()
        generator.manual_seed(seed)
    count = sampler.num_samples
    for _ in range(count // n):
        yield _randperm(n, generator)
    if count % n or sampler.generator is not None:
        # torch draws this tail even when it is empty, which moves the sampler's generator;
        # a generator made for this pass alone is dropped after it, so the draw can be too.
        yield _randperm(n, generator)[: count % n]


def _randperm(n: int, generator: torch.Generator) -> np.ndarray:
    """``torch.randperm(n, generator=generator)``, on one intra-op thread: the same
    permutation (torch's is the same for any thread count), but a large one is ~10x faster on
    a busy machine, where the pool's second thread spins waiting for a core (1.2 vs 11.7 ms
    for 60,000 on 2 loaded cores)."""
    threads = torch.get_num_threads()
    if threads == 1:
        return torch.randperm(n, generator=generator).numpy()
    torch.set_num_threads(1)
    try:
        return torch.randperm(n, generator=generator).numpy()
    finally:
        torch.set_num_threads(threads)


def _batched(rounds: Iterator[np.ndarray], size: int, drop_last: bool) -> Iterator[np.ndarray]:
    """Batches of ``size`` from ``rounds``, taking each round when torch's BatchSampler would
    first ask for one of its indices."""
    current, position = np.empty(0, dtype=np.int64), 0
    while True:
        parts, need = [], size
        while need:
            if position == len(current):
                following = next(rounds, None)
                if following is None:
                    break
                current, position = following, 0
                continue
            part = current[position : position + need]
            position += len(part)
            need -= len(part)
            parts.append(part)
        if need == size or (drop_last and need):
            return
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)


def _replayed(iterator: Iterator[Any], state: torch.Tensor) -> Iterator[Any]:
    """``iterator`` with its first step (where torch's samplers draw) taken from ``state`` of
    the default generator, which is then put back as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(state)
        try:
            first = next(iterator)
        except StopIteration:
            return
    yield first
    yield from iterator
