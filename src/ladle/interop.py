"""Crossing into other frameworks: NumPy, torch and JAX outputs, and pinned memory.

torch and JAX are imported only when a loader asks for them, with an install hint if missing.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ladle._runtime.tree import map_leaves

__all__ = ["OUTPUTS", "converter", "require", "to_jax", "to_numpy", "to_torch"]

OUTPUTS = (None, "numpy", "torch", "jax")

_EXTRAS = {
    "torch": "torch",
    "jax": "jax",
    "PIL": "images",
    "tqdm": "progress",
    "matplotlib": "plot",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = _EXTRAS.get(module.split(".")[0], module)
        raise ImportError(
            f"{purpose} needs {module}, which is not installed; install it with "
            f"pip install 'ladle[{extra}]' (or pip install {module.split('.')[0]})"
        ) from error


def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _numeric(array: np.ndarray) -> bool:
    return array.dtype.kind in "biufc"


def _numpy_leaf(value: Any) -> Any:
    if _is_torch_tensor(value):
        return value.detach().cpu().numpy()
    if type(value).__module__.startswith("jax"):
        return np.asarray(value)
    return value


def to_numpy(batch: Any) -> Any:
    """torch tensors and JAX arrays in ``batch`` as NumPy arrays."""
    return map_leaves(batch, _numpy_leaf)


def to_torch(batch: Any) -> Any:
    """Numeric NumPy arrays and scalars in ``batch`` as torch tensors, sharing memory."""
    leaf = _torch_leaf()
    if type(batch) is list:  # the usual batch, [x, y]: its arrays without the general walk
        return [leaf(x) if type(x) is np.ndarray else map_leaves(x, leaf) for x in batch]
    return map_leaves(batch, leaf)


@functools.cache
def _torch_leaf() -> Callable[[Any], Any]:
    """The per-leaf conversion, built once: it runs for every batch."""
    torch = require("torch", 'output="torch"')

    def leaf(value: Any) -> Any:
        if isinstance(value, np.ndarray) and _numeric(value):
            if not value.flags.writeable:
                value = value.copy()  # torch tensors are writable; never alias read-only memory
            return torch.from_numpy(value)
        if isinstance(value, np.generic) and _numeric(np.asarray(value)):
            return torch.as_tensor(value)
        return value

    return leaf


def to_jax(batch: Any) -> Any:
    """Numeric arrays in ``batch`` as JAX arrays on the default device."""
    jnp = require("jax.numpy", 'output="jax"')

    def leaf(value: Any) -> Any:
        value = _numpy_leaf(value)
        if isinstance(value, np.ndarray | np.generic) and _numeric(np.asarray(value)):
            return jnp.asarray(value)
        return value

    return map_leaves(batch, leaf)


def converter(output: str | None) -> Callable[[Any], Any] | None:
    """The conversion for a loader's ``output=``; None when batches keep their sample types."""
    if output not in OUTPUTS:
        raise ValueError(
            f"output should be one of None, 'numpy', 'torch' or 'jax', but got output={output!r}; "
            f"None keeps the samples' own array types"
        )
    if output == "torch":
        require("torch", 'output="torch"')
    elif output == "jax":
        require("jax.numpy", 'output="jax"')
    return {None: None, "numpy": to_numpy, "torch": to_torch, "jax": to_jax}[output]


def accelerator_available() -> bool:
    """True when torch is installed and sees an accelerator that can use pinned memory."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pin(batch: Any) -> Any:
    """``batch`` as torch tensors in page-locked memory, for fast copies to the accelerator."""
    tensors = to_torch(batch)

    def leaf(value: Any) -> Any:
        return value.pin_memory() if _is_torch_tensor(value) else value

    return map_leaves(tensors, leaf)
