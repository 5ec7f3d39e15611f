"""Seeds and random generators.

Every random choice ladle makes comes from a generator keyed by integers: ``(seed, epoch)`` for an
epoch's order, ``(seed, pass)`` for the workers' seeds, ``(seed, pass, sample index)`` for
:func:`sample_rng`. Keys go through NumPy's SeedSequence, so neighbouring keys give independent
streams.
"""

from __future__ import annotations

import base64
import operator
import secrets
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ladle._runtime.context import SampleSlot, sample_slot

__all__ = [
    "check_generator",
    "check_loader_seed",
    "check_seed",
    "draw_seed",
    "each_sample",
    "fresh_seed",
    "generator_state",
    "is_global_generator",
    "keyed_rng",
    "pass_seed",
    "rank_seed",
    "restore_generator",
    "sample_key",
    "sample_rng",
]

_SEED_BOUND = 2**63
# Spawn-key tags that keep the derived streams apart. Sampler orders use the one-word key
# (epoch,); everything else is tagged. Changing any of these changes every seeded stream.
_PASS_TAG = 0x70617373  # "pass"
_RANK_TAG = 0x72616E6B  # "rank"
_SAMPLE_TAG = 0x73616D70  # "samp"
_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} should be a non-negative int, but got {name}={seed!r}")
    if seed < 0:
        raise ValueError(f"{name} should be a non-negative int, but got {name}={seed}")
    return int(seed)


def check_loader_seed(seed: object, generator: object) -> int | None:
    """A loader's ``seed`` as an int (None when not given), refusing a ``generator`` beside it."""
    if seed is None:
        return None
    checked = check_seed(seed)
    if generator is not None:
        raise ValueError(
            "DataLoader takes seed or generator, not both; seed=<int> fixes the order of every "
            "epoch, so drop generator="
        )
    return checked


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


def is_global_generator(generator: Any) -> bool:
    """``generator`` is torch's process-wide default generator (``torch.manual_seed``'s).

    A loader draws each pass's seed from it as torch's does, but never saves or restores its
    state: that belongs to the whole program. A saved position records the drawn seed instead.
    """
    torch = sys.modules.get("torch")
    return torch is not None and generator is torch.default_generator


def draw_seed(generator: Any, name: str = "generator") -> int:
    """Draw one seed from a NumPy or torch generator, advancing it as torch's samplers do."""
    if isinstance(check_generator(generator, name), np.random.Generator):
        return int(generator.integers(_SEED_BOUND))
    import torch

    value = torch.empty((), dtype=torch.int64).random_(generator=generator).item()
    return int(value) % _SEED_BOUND


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"ndarray", "dtype"}:
            return np.asarray(value["ndarray"], dtype=np.dtype(value["dtype"]))
        return {key: _from_json(item) for key, item in value.items()}
    return value


def generator_state(generator: Any) -> dict[str, Any]:
    """A JSON-serialisable snapshot of a NumPy or torch generator, for :func:`restore_generator`."""
    if isinstance(generator, np.random.Generator):
        return {"numpy": _to_json(generator.bit_generator.state)}
    state = generator.get_state().numpy().tobytes()
    return {"torch": base64.b64encode(state).decode("ascii")}


def restore_generator(generator: Any, state: dict[str, Any], name: str = "generator") -> None:
    """Put ``generator`` back in the state :func:`generator_state` saw."""
    if isinstance(generator, np.random.Generator) and "numpy" in state:
        try:
            generator.bit_generator.state = _from_json(state["numpy"])
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(
                f"{name} cannot take the saved state ({error}); resume with a generator of the "
                f"kind that was saved, {state['numpy'].get('bit_generator')!r}"
            ) from None
        return
    if not isinstance(generator, np.random.Generator) and "torch" in state:
        import torch

        raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
        generator.set_state(torch.from_numpy(raw))
        return
    saved = "a NumPy" if "numpy" in state else "a torch"
    raise ValueError(
        f"the saved state is of {saved} generator, but {name}={generator!r}; resume with the "
        f"same kind of generator"
    )


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator for ``(seed, *key)``: a pure function of its arguments."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def pass_seed(seed: int, pass_index: int) -> int:
    """The seed of pass ``pass_index`` of a loader seeded with ``seed`` (torch's base seed)."""
    words = np.random.SeedSequence(seed, spawn_key=(_PASS_TAG, pass_index)).generate_state(2)
    return (int(words[0]) << 31 | int(words[1]) >> 1) % _SEED_BOUND


def rank_seed(seed: int, rank: int) -> int:
    """The workers' base seed on rank ``rank`` of a pass seeded ``seed``: each rank's workers
    seed NumPy's, Python's and torch's global generators their own way, as torch's loaders on
    different ranks do. ``sample_rng()`` keeps the pass seed, the same on every rank."""
    words = np.random.SeedSequence(seed, spawn_key=(_RANK_TAG, rank)).generate_state(2)
    return (int(words[0]) << 31 | int(words[1]) >> 1) % _SEED_BOUND


def sample_key(seed: int, *stream: int) -> tuple[int, int, int, int]:
    """The key of one pass's samples, from the pass seed and the stream (the sampler's epoch
    for a map-style dataset, the worker for an iterable one): four 64-bit words, two splitmix64
    stream starts and the PCG increment."""
    words = np.random.SeedSequence(seed, spawn_key=(_SAMPLE_TAG, *stream))
    a, b, c, d = (int(word) for word in words.generate_state(4, np.uint64))
    return a, b, c, d


def _splitmix(key: int, position: int) -> int:
    """Output ``position`` of the splitmix64 stream that starts at ``key``."""
    x = (key + (position + 1) * _GAMMA) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _seed_slot(slot: SampleSlot, key: tuple[int, int, int, int]) -> np.random.Generator:
    # Building a Generator costs ~6 us (SeedSequence, bit generator, Generator); setting the
    # state of a reused PCG64DXSM from two splitmix64 words costs ~2 us.
    try:
        index = operator.index(slot.index)
    except TypeError:
        raise TypeError(
            f"sample_rng() keys its generator by the sample's integer index, but the sample "
            f"being loaded has index {slot.index!r}; index the dataset with ints, or draw from "
            f"a generator of your own"
        ) from None
    generator = slot.generator
    if generator is None:
        generator = slot.generator = np.random.Generator(np.random.PCG64DXSM(0))
    # The state comes from two splitmix64 streams at position ``index``; the increment is the
    # pass's (samples then walk one PCG cycle from unrelated random points).
    generator.bit_generator.state = {
        "bit_generator": "PCG64DXSM",
        "state": {
            "state": _splitmix(key[0], index) << 64 | _splitmix(key[1], index),
            "inc": key[2] << 64 | key[3] | 1,
        },
        "has_uint32": 0,
        "uinteger": 0,
    }
    slot.seeded = True
    return generator


def each_sample(indices: Iterable[int]) -> Iterator[int]:
    """Yield ``indices`` one by one with ``sample_rng()`` keyed to each in turn.

    For a ``__getitems__`` that loads its batch sample by sample (through a per-sample
    transform): the draws are then those of the loader's per-sample path.
    """
    slot = sample_slot()
    previous = slot.index
    try:
        for index in indices:
            slot.index, slot.seeded = index, False
            yield index
    finally:
        slot.index, slot.seeded = previous, False


def sample_rng(index: int | None = None) -> np.random.Generator:
    """The random generator of the sample being loaded now, keyed by (seed, epoch, index).

    Call it in ``__getitem__`` or in a transform: with the loader's ``seed`` set, every draw is
    the same for any ``num_workers`` and ``worker_type``, and after a resume. Calls for the same
    sample continue one stream. A vectorised ``__getitems__`` passes the index of the sample it
    is working on: ``sample_rng(i)``. The generator is reseeded for the next sample, so do not
    keep it beyond the current one.
    """
    slot = sample_slot()
    key = slot.key
    if key is None:
        raise RuntimeError(
            "sample_rng() is only defined while a ladle DataLoader loads a sample (in "
            "__getitem__, __getitems__, an iterable dataset's __iter__, or a transform they "
            "call); outside a loader, pass your own generator (transforms take rng=)"
        )
    if index is not None:
        if index != slot.index or not slot.seeded:
            slot.index = index
            return _seed_slot(slot, key)
    elif slot.index is None:
        raise RuntimeError(
            "sample_rng() was called for a whole batch (in __getitems__ or collate_fn), where "
            "no single sample is being loaded; in __getitems__ pass the index of the sample: "
            "sample_rng(i)"
        )
    if slot.seeded:
        return slot.generator  # type: ignore[return-value]
    return _seed_slot(slot, key)
