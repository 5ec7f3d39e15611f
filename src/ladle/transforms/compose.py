"""Chaining transforms, and wrapping a plain function as one."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ladle._runtime.context import sample_slot
from ladle.transforms.base import Array, Transform
from ladle.validation import check_callable

__all__ = ["Compose", "Lambda"]


class Compose(Transform):
    """Apply ``transforms`` in order, passing ``rng`` on to each ladle :class:`Transform`.

    Other callables (plain functions, torchvision-style callables) are called as ``t(image)``.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        if not isinstance(transforms, Sequence) or isinstance(transforms, str | bytes):
            raise TypeError(
                f"transforms should be a list of callables, but got transforms={transforms!r}; "
                f"wrap a single transform in a list: Compose([transform])"
            )
        for position, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    f"transforms should be a list of callables, but transforms[{position}] is "
                    f"{transform!r} ({type(transform).__name__}); wrap a function of the image "
                    f"in Lambda, or instantiate the transform class"
                )
        self.transforms = list(transforms)

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        clock = sample_slot().clock  # the loader's stats: the outermost pipeline's time
        if clock is None:  # not loading for a loader
            return self._apply(image, rng)
        clock.depth += 1
        started = time.perf_counter()
        try:
            return self._apply(image, rng)
        finally:
            clock.depth -= 1
            if not clock.depth:
                clock.transform += time.perf_counter() - started

    def _apply(self, image: Array, rng: np.random.Generator | None) -> Array:
        # Checked per call rather than once in __init__: torchvision users edit .transforms.
        for transform in self.transforms:
            if isinstance(transform, Transform):
                image = transform(image, rng=rng)
            else:
                image = transform(image)
        return image

    def __repr__(self) -> str:
        lines = "".join(f"\n    {transform!r}" for transform in self.transforms)
        return f"{type(self).__name__}({lines}\n)"


class Lambda(Transform):
    """Apply ``fn(image)``; the transform pickles when ``fn`` does (a module-level function)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = check_callable(fn, "fn", fix="pass a function of the image, e.g. np.fliplr")

    def __call__(self, image: Array, *, rng: np.random.Generator | None = None) -> Array:
        return self.fn(image)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"{type(self).__name__}(fn={name})"
