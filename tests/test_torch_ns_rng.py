"""``ladle.torch``'s unseeded randomness is torch's: same orders, same RNG consumption.

Each case seeds torch's default generator (``torch.manual_seed``) or builds a
``torch.Generator().manual_seed(...)``, runs 3 epochs, and reports three aspects, each its own test
so that a report says which ones ladle.torch matches:

- ``order``: the indices or batches of every epoch;
- ``global state``: ``torch.get_rng_state()`` afterwards (torch draws a base seed per
  ``iter(loader)``, then a seed per RandomSampler pass, lazily at the first batch);
- ``generator state``: the given generator's state afterwards (generator cases only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch
from torch_ns_support import Samples, Stream, differential, namespace_under_test

SEED = 1234
EPOCHS = 3


@pytest.fixture(scope="module")
def ns() -> ModuleType:
    return namespace_under_test()


def _digest(state: torch.Tensor) -> str:
    return hashlib.sha1(state.numpy().tobytes()).hexdigest()[:16]


def _loader_epochs(loader: Any) -> list[Any]:
    out = []
    for _ in range(EPOCHS):
        out.append(list(loader))
        out.append(torch.randint(0, 1000, (1,)).item())  # a user draw between epochs
    return out


def _sampler_epochs(sampler: Any) -> list[Any]:
    return [list(sampler) for _ in range(EPOCHS)]


def _partial_then_full(loader: Any) -> list[Any]:
    it = iter(loader)
    first = next(it)
    del it
    return [first, *_loader_epochs(loader)]


def _split(m: ModuleType, lengths: list[Any], generator: Any = None) -> list[Any]:
    kwargs = {} if generator is None else {"generator": generator}
    return [
        [subset.indices for subset in m.random_split(range(10), lengths, **kwargs)]
        for _ in range(EPOCHS)
    ]


def _ds(n: int = 10) -> Samples:
    return Samples("int", n)


# each case: (namespace, generator or None) -> epochs
Case = Callable[[ModuleType, Any], Any]

GLOBAL_CASES: dict[str, Case] = {
    "shuffle loader": lambda m, g: _loader_epochs(m.DataLoader(_ds(), batch_size=3, shuffle=True)),
    "shuffle loader drop_last": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(11), batch_size=4, shuffle=True, drop_last=True)
    ),
    "shuffle loader batch_size None": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), batch_size=None, shuffle=True)
    ),
    "shuffle loader partial epoch": lambda m, g: _partial_then_full(
        m.DataLoader(_ds(), batch_size=3, shuffle=True)
    ),
    "sequential loader": lambda m, g: _loader_epochs(m.DataLoader(_ds(), batch_size=4)),
    "iterable loader": lambda m, g: _loader_epochs(m.DataLoader(Stream(5), batch_size=2)),
    "RandomSampler": lambda m, g: _sampler_epochs(m.RandomSampler(range(10))),
    "RandomSampler replacement": lambda m, g: _sampler_epochs(
        m.RandomSampler(range(10), replacement=True, num_samples=40)
    ),
    "RandomSampler num_samples > n": lambda m, g: _sampler_epochs(
        m.RandomSampler(range(10), num_samples=25)
    ),
    "RandomSampler num_samples < n": lambda m, g: _sampler_epochs(
        m.RandomSampler(range(10), num_samples=4)
    ),
    "SubsetRandomSampler": lambda m, g: _sampler_epochs(m.SubsetRandomSampler([3, 7, 1, 9, 4])),
    "WeightedRandomSampler": lambda m, g: _sampler_epochs(
        m.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6], 12)
    ),
    "WeightedRandomSampler no replacement": lambda m, g: _sampler_epochs(
        m.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6], 5, replacement=False)
    ),
    "random_split lengths": lambda m, g: _split(m, [3, 7]),
    "random_split fractions": lambda m, g: _split(m, [0.3, 0.3, 0.4]),
    "loader over RandomSampler": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), sampler=m.RandomSampler(range(10)), batch_size=4)
    ),
    "loader over RandomSampler replacement": lambda m, g: _loader_epochs(
        m.DataLoader(
            _ds(),
            sampler=m.RandomSampler(range(10), replacement=True, num_samples=50),
            batch_size=8,
        )
    ),
    "loader over SubsetRandomSampler": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), sampler=m.SubsetRandomSampler([0, 2, 4, 6, 8]), batch_size=2)
    ),
    "loader over WeightedRandomSampler": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(4), sampler=m.WeightedRandomSampler([1, 2, 3, 4], 9), batch_size=4)
    ),
    "loader over BatchSampler(RandomSampler)": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), batch_sampler=m.BatchSampler(m.RandomSampler(range(10)), 3, False))
    ),
    "loader over sampler list": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), sampler=[9, 1, 5], batch_size=2)
    ),
}

GENERATOR_CASES: dict[str, Case] = {
    "shuffle loader": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), batch_size=3, shuffle=True, generator=g)
    ),
    "shuffle loader partial epoch": lambda m, g: _partial_then_full(
        m.DataLoader(_ds(), batch_size=3, shuffle=True, generator=g)
    ),
    "sequential loader": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), batch_size=4, generator=g)
    ),
    "RandomSampler": lambda m, g: _sampler_epochs(m.RandomSampler(range(10), generator=g)),
    "RandomSampler replacement": lambda m, g: _sampler_epochs(
        m.RandomSampler(range(10), replacement=True, num_samples=40, generator=g)
    ),
    "SubsetRandomSampler": lambda m, g: _sampler_epochs(
        m.SubsetRandomSampler([3, 7, 1, 9, 4], generator=g)
    ),
    "WeightedRandomSampler": lambda m, g: _sampler_epochs(
        m.WeightedRandomSampler([0.1, 0.9, 0.4, 0.7, 3.0, 0.6], 12, generator=g)
    ),
    "random_split lengths": lambda m, g: _split(m, [3, 7], g),
    "random_split fractions": lambda m, g: _split(m, [0.3, 0.3, 0.4], g),
    "loader over RandomSampler with its own generator": lambda m, g: _loader_epochs(
        m.DataLoader(_ds(), sampler=m.RandomSampler(range(10), generator=g), batch_size=4)
    ),
    "loader over RandomSampler replacement, partial epoch": lambda m, g: _partial_then_full(
        m.DataLoader(
            _ds(),
            sampler=m.RandomSampler(range(10), replacement=True, num_samples=100, generator=g),
            batch_size=4,
        )
    ),
}


def _run(case: Case, m: ModuleType, with_generator: bool) -> dict[str, Any]:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED + 1) if with_generator else None
    epochs = case(m, g)
    return {
        "order": epochs,
        "global state": _digest(torch.get_rng_state()),
        "generator state": None if g is None else _digest(g.get_state()),
    }


@pytest.mark.parametrize("aspect", ["order", "global state"])
@pytest.mark.parametrize("case", list(GLOBAL_CASES))
def test_manual_seed(ns: ModuleType, case: str, aspect: str) -> None:
    differential(lambda m: _run(GLOBAL_CASES[case], m, False)[aspect], ns)


@pytest.mark.parametrize("aspect", ["order", "global state", "generator state"])
@pytest.mark.parametrize("case", list(GENERATOR_CASES))
def test_generator(ns: ModuleType, case: str, aspect: str) -> None:
    differential(lambda m: _run(GENERATOR_CASES[case], m, True)[aspect], ns)


def test_two_loaders_interleaved(ns: ModuleType) -> None:
    """Two shuffled passes alive at once draw from the global generator in torch's order."""

    def case(m: ModuleType) -> Any:
        torch.manual_seed(SEED)
        a = m.DataLoader(_ds(), batch_size=5, shuffle=True)
        b = m.DataLoader(_ds(), batch_size=5, shuffle=True)
        ia, ib = iter(a), iter(b)
        out = [next(ib), next(ia), *ia, *ib]
        return out, _digest(torch.get_rng_state())

    differential(case, ns)
