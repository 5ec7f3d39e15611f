"""Argument checks shared by every public constructor.

Each check returns the value normalised to a plain Python type (``np.int64(4)`` becomes ``4``)
or raises with one message that says what was expected, shows ``name=value!r`` and ends with
the fix when one is given::

    batch_size = check_int(batch_size, "batch_size", minimum=1, fix="pass a positive int")
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, overload

import numpy as np

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_fits_dtype",
    "check_int",
    "check_number",
    "check_path",
    "check_probability",
]

T = TypeVar("T")


def _fix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    return f"<= {maximum}"


def _is_bool(value: object) -> bool:
    return isinstance(value, bool | np.bool_)


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fix: str = "",
    type_error: type[Exception] = TypeError,
) -> int:
    """``value`` as a Python int; bools, floats (even ``2.0``) and strings are refused."""
    if _is_bool(value) or not isinstance(value, int | np.integer):
        raise type_error(
            f"{name} should be an int, but got {name}={value!r} ({type(value).__name__}){_fix(fix)}"
        )
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(
            f"{name} should be an int {_bounds(minimum, maximum)}, but got "
            f"{name}={value!r}{_fix(fix)}"
        )
    return number


def check_bool(
    value: Any, name: str, *, fix: str = "", type_error: type[Exception] = TypeError
) -> bool:
    """``value`` as a Python bool; ``"no"``, ``0`` and ``1`` are refused, not taken as truth."""
    if not _is_bool(value):
        raise type_error(
            f"{name} should be True or False, but got {name}={value!r} "
            f"({type(value).__name__}){_fix(fix)}"
        )
    return bool(value)


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    finite: bool = True,
    positive: bool = False,
    fix: str = "",
) -> float:
    """``value`` (an int, float or NumPy real, not a bool) as a Python float; NaN is refused."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} should be a number, but got {name}={value!r} "
            f"({type(value).__name__}){_fix(fix)}"
        )
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} should be a number, not NaN, but got {name}={value!r}{_fix(fix)}")
    if finite and math.isinf(number):
        raise ValueError(f"{name} should be a finite number, but got {name}={value!r}{_fix(fix)}")
    if positive and not number > 0:
        raise ValueError(f"{name} should be a number > 0, but got {name}={value!r}{_fix(fix)}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(
            f"{name} should be a number {_bounds(minimum, maximum)}, but got "
            f"{name}={value!r}{_fix(fix)}"
        )
    return number


def check_probability(value: Any, name: str, *, fix: str = "") -> float:
    """``value`` as a float with ``0 <= value <= 1``."""
    return check_number(value, name, minimum=0, maximum=1, fix=fix)


@overload
def check_callable(
    value: Any, name: str, *, optional: Literal[False] = ..., fix: str = ...
) -> Callable[..., Any]: ...
@overload
def check_callable(
    value: Any, name: str, *, optional: bool, fix: str = ...
) -> Callable[..., Any] | None: ...
def check_callable(
    value: Any, name: str, *, optional: bool = False, fix: str = ""
) -> Callable[..., Any] | None:
    """``value`` if it is callable (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        expected = "a callable or None" if optional else "a callable"
        raise TypeError(
            f"{name} should be {expected}, but got {name}={value!r} "
            f"({type(value).__name__}){_fix(fix)}"
        )
    return value  # type: ignore[no-any-return]


def check_choice(value: Any, name: str, choices: Iterable[T], *, fix: str = "") -> T:
    """The element of ``choices`` equal to ``value`` (a bool never matches an int choice)."""
    options = list(choices)
    for choice in options:
        if _is_bool(value) != _is_bool(choice):
            continue
        try:
            if bool(value == choice):
                return choice
        except (TypeError, ValueError):  # arrays and other odd values compare to no choice
            continue
    listed = ", ".join(repr(choice) for choice in options)
    raise ValueError(f"{name} should be one of {listed}, but got {name}={value!r}{_fix(fix)}")


def check_fits_dtype(value: Any, name: str, dtype: Any, *, fix: str = "") -> None:
    """Raise ValueError unless the number ``value`` is stored exactly in ``dtype``.

    NaN and infinities fit only floating dtypes; integer dtypes take whole numbers in their
    range; bool takes 0 and 1. ``value`` is a number already checked (``check_number``).
    """
    kind = np.dtype(dtype)
    if kind.kind in "fc":
        number = float(value)
        if math.isfinite(number) and abs(number) > float(np.finfo(kind).max):
            reason = f"its largest value is {np.finfo(kind).max}"
        else:
            return
    elif kind.kind in "iub":
        low, high = (0, 1) if kind.kind == "b" else (np.iinfo(kind).min, np.iinfo(kind).max)
        whole: int | None
        if isinstance(value, int | np.integer):
            whole = int(value)
        else:
            number = float(value)
            whole = int(number) if math.isfinite(number) and number.is_integer() else None
        if whole is not None and low <= whole <= high:
            return
        reason = f"it holds whole numbers from {low} to {high}"
    else:
        reason = "it does not hold numbers"
    raise ValueError(f"{name}={value!r} does not fit the dtype {kind}: {reason}{_fix(fix)}")


def check_path(value: Any, name: str, *, fix: str = "") -> str:
    """``value`` (a str or ``os.PathLike``) as a str; the empty string is refused, since it
    would silently mean the current directory."""
    path = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(path, str):
        raise TypeError(
            f"{name} should be a path (a str or pathlib.Path), but got {name}={value!r} "
            f"({type(value).__name__}){_fix(fix)}"
        )
    if not path:
        raise ValueError(
            f"{name} should be a path, but got {name}={value!r}, which would mean the current "
            f"directory{_fix(fix or 'name the directory, e.g. ./data')}"
        )
    return path
