"""The main job: train a small classifier on built-in digits through a ladle DataLoader.

The digits are drawn from a 5x7 pixel font embedded below, at a random place on a 16x16 canvas
with noise, so the demo needs no download and no framework beyond NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ladle.dataset import Dataset
from ladle.loader import DataLoader
from ladle.seeding import keyed_rng, sample_rng
from ladle.split import random_split

__all__ = ["Digits", "make_loader", "run_demo"]

_FONT = {
    0: "01110 10001 10011 10101 11001 10001 01110",
    1: "00100 01100 00100 00100 00100 00100 01110",
    2: "01110 10001 00001 00010 00100 01000 11111",
    3: "11111 00010 00100 00010 00001 10001 01110",
    4: "00010 00110 01010 10010 11111 00010 00010",
    5: "11111 10000 11110 00001 00001 10001 01110",
    6: "00110 01000 10000 11110 10001 10001 01110",
    7: "11111 00001 00010 00100 01000 01000 01000",
    8: "01110 10001 10001 01110 10001 10001 01110",
    9: "01110 10001 10001 01111 00001 00010 01100",
}
GLYPHS = np.array(
    [[[c == "1" for c in row] for row in _FONT[d].split()] for d in range(10)], dtype=np.uint8
)
SIZE = 16


class Digits(Dataset[tuple[np.ndarray, int]]):
    """``length`` noisy 16x16 uint8 digit images, each rendered on demand from its index."""

    def __init__(
        self, length: int, seed: int = 0, transform: Callable[[np.ndarray], Any] | None = None
    ) -> None:
        self.length = length
        self.seed = seed
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for Digits of size {self.length}")
        rng = keyed_rng(self.seed, index)
        label = int(rng.integers(10))
        glyph = np.kron(GLYPHS[label], np.ones((2, 2), dtype=np.uint8))  # 14 x 10
        image = np.zeros((SIZE, SIZE), dtype=np.float32)
        top, left = rng.integers(0, SIZE - 14 + 1), rng.integers(0, SIZE - 10 + 1)
        image[top : top + 14, left : left + 10] = glyph * rng.uniform(0.6, 1.0)
        image += rng.normal(0.0, 0.25, image.shape).astype(np.float32)
        pixels = np.clip(image * 255, 0, 255).astype(np.uint8)
        return (self.transform(pixels) if self.transform else pixels), label


class RandomShift:
    """Augmentation: roll the image by up to ``pixels`` in each direction, drawn from the
    sample's own generator, so each epoch's shifts are fixed by the loader's seed."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __call__(self, image: np.ndarray) -> np.ndarray:
        dy, dx = sample_rng().integers(-self.pixels, self.pixels + 1, size=2)
        return np.roll(image, (int(dy), int(dx)), axis=(0, 1))


def normalize(image: np.ndarray) -> np.ndarray:
    return ((image.astype(np.float32) / 255.0) - 0.15).reshape(-1) / 0.3


class TransformedSubset(Dataset[tuple[np.ndarray, int]]):
    """A split of the digits with its own transform (augment the training split only)."""

    def __init__(self, base: Dataset[tuple[np.ndarray, int]], transform: Callable[..., Any]):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        image, label = self.base[index]
        return self.transform(image), label


class MLP:
    """A two-layer perceptron trained with SGD and momentum, in NumPy."""

    def __init__(self, sizes: tuple[int, int, int], seed: int) -> None:
        rng = np.random.default_rng(seed)
        n_in, hidden, n_out = sizes
        self.params = [
            rng.normal(0, np.sqrt(2 / n_in), (n_in, hidden)).astype(np.float32),
            np.zeros(hidden, np.float32),
            rng.normal(0, np.sqrt(1 / hidden), (hidden, n_out)).astype(np.float32),
            np.zeros(n_out, np.float32),
        ]
        self.velocity = [np.zeros_like(p) for p in self.params]

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w1, b1, w2, b2 = self.params
        hidden = np.maximum(x @ w1 + b1, 0)
        return hidden, hidden @ w2 + b2

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, int]:
        hidden, logits = self.logits(x)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(-np.log(probs[rows, y] + 1e-9).mean())
        correct = int((probs.argmax(axis=1) == y).sum())
        grad = probs
        grad[rows, y] -= 1
        grad /= len(y)
        w2 = self.params[2]
        grad_hidden = (grad @ w2.T) * (hidden > 0)
        grads = [x.T @ grad_hidden, grad_hidden.sum(0), hidden.T @ grad, grad.sum(0)]
        for param, velocity, g in zip(self.params, self.velocity, grads, strict=True):
            velocity *= 0.9
            velocity -= lr * g
            param += velocity
        return loss, correct

    def accuracy(self, loader: DataLoader) -> float:
        correct = total = 0
        for x, y in loader:
            correct += int((self.logits(x)[1].argmax(axis=1) == y).sum())
            total += len(y)
        return correct / total


def _augmented(image: np.ndarray) -> np.ndarray:
    return normalize(_SHIFT(image))


_SHIFT = RandomShift(1)


def _loaders(
    samples: int, batch_size: int, seed: int
) -> tuple[DataLoader, Dataset[tuple[np.ndarray, int]]]:
    digits = Digits(samples, seed=seed)
    train_split, test_split = random_split(digits, [0.85, 0.15], seed=seed)
    train = TransformedSubset(train_split, _augmented)
    return DataLoader(train, batch_size=batch_size, shuffle=True, seed=seed), test_split


def make_loader(batch_size: int = 64, samples: int = 12_000, seed: int = 0) -> DataLoader:
    """The demo's training loader: augmented digits, shuffled, batches of ``batch_size``, in
    the training process (``num_workers=0``). ``ladle doctor --demo`` diagnoses it."""
    return _loaders(samples, batch_size, seed)[0]


def run_demo(
    epochs: int = 5, samples: int = 12_000, batch_size: int = 64, seed: int = 0, out: Any = print
) -> list[dict[str, float]]:
    """Train and print one line per epoch; returns the per-epoch figures."""
    train_loader, test_split = _loaders(samples, batch_size, seed)
    train = train_loader.dataset
    test = TransformedSubset(test_split, normalize)
    test_loader = DataLoader(test, batch_size=512)
    model = MLP((SIZE * SIZE, 128, 10), seed)

    out(
        f"ladle demo: {len(train):,} training and {len(test):,} test digits "
        f"({SIZE}x{SIZE}, drawn from an embedded font), batch {batch_size}, seed {seed}"
    )
    out(
        f"{'epoch':>5}  {'loss':>6}  {'train acc':>9}  {'test acc':>8}  {'loading':>18}  "
        f"{'data wait':>9}  stats (ms per batch)"
    )
    history = []
    for epoch in range(1, epochs + 1):
        loss_sum = correct = seen = 0.0
        batches = iter(train_loader)
        for x, y in batches:
            loss, hits = model.step(x, y, lr=0.05)
            loss_sum += loss * len(y)
            correct += hits
            seen += len(y)
        # the pass's own numbers: time inside next() against the training step's
        stats = batches.stats()
        figures = {
            "epoch": epoch,
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "test_accuracy": model.accuracy(test_loader),
            "samples_per_second": seen / stats.wait,
            "data_wait_share": stats.data_wait_share,
        }
        history.append(figures)
        per_batch = stats.wait / stats.batches * 1e3
        stages = ", ".join(
            f"{name} {seconds / stats.batches * 1e3:.2f}"
            for name, seconds in stats.stages.items()
            if seconds
        )
        out(
            f"{epoch:>5}  {figures['loss']:>6.3f}  {figures['train_accuracy']:>9.1%}  "
            f"{figures['test_accuracy']:>8.1%}  {figures['samples_per_second']:>10,.0f} samples/s"
            f"  {stats.data_wait_share:>9.0%}  wait {per_batch:.2f}: {stages}"
        )
    out(f"loader.stats(): {train_loader.stats().total}")
    return history
