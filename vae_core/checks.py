"""The argument checks of the whole library: one checker per kind, one message format.

Every error reads "<owner>.<name> must be <expected>; got <value>[. <fix>]": it names the argument, what was
expected, what was received, and, where one helps, how to fix it. Each checker returns the value as a plain Python
number or bool, so a NumPy scalar that passes is stored as a plain number.
"""
from __future__ import annotations

import dataclasses
import math
import operator
import os
import sys
from numbers import Real
from typing import Any, Iterable, Mapping, NoReturn

import numpy as np


def fail(owner: str, name: str, expected: str, got: Any, fix: str = "") -> NoReturn:
    """Raise the ValueError of the one message format."""
    msg = f"{owner}.{name} must be {expected}; got {got!r}"
    raise ValueError(msg + (f". {fix}" if fix else ""))


def as_int(value: Any) -> int | None:
    """`value` as a plain int if it is an integer (an int, a NumPy integer, anything with `__index__`), else None;
    a bool (Python's or NumPy's) is not an integer here: True is no batch size."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_float(value: Any) -> float | None:
    """`value` as a plain float if it is a real number (an int, float, NumPy integer or floating scalar), else None;
    a bool is not a number here, and an int too large for a float (10**400) is None, not an OverflowError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return None


def check_int(owner: str, name: str, value: Any, *, minimum: int | None = None, fix: str = "") -> int:
    """`value` as a plain int: an int or NumPy integer (not a bool), at least `minimum`."""
    number = as_int(value)
    if number is None:
        fail(owner, name, "an int" if minimum is None else f"an int >= {minimum}", value, fix)
    if minimum is not None and number < minimum:
        fail(owner, name, f"an int >= {minimum}", value, fix)
    return number


def check_float(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, fix: str = "") -> float:
    """`value` as a plain float: a finite real number (not a bool; a NumPy scalar too) inside the interval the bounds
    give."""
    number = as_float(value)
    if number is None or not math.isfinite(number):
        fail(owner, name, "a finite number", value)
    bad_low = low is not None and (number <= low if low_open else number < low)
    bad_high = high is not None and (number >= high if high_open else number > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        fail(owner, name, f"a number in {interval}", value, fix)
    return number


def listed(positions: Iterable[Any], limit: int = 5) -> str:
    """Positions (row numbers, indices) for a message: '3', '1, 4' or '1, 4, 7, 9, 12 and 20 more'."""
    positions = list(positions)
    shown = ", ".join(str(p) for p in positions[:limit])
    return shown + (f" and {len(positions) - limit} more" if len(positions) > limit else "")


def check_seed(owner: str, seed: Any) -> int | None:
    """A model's `seed`: None (fresh entropy), or a plain int >= 0 (a NumPy integer too: Keras' seed generators take
    Python ints only)."""
    if seed is None:
        return None
    return check_int(owner, "seed", seed, minimum=0, fix="Pass e.g. seed=0, or seed=None for fresh weights")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """`value`, one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        fail(owner, name, f"one of {', '.join(repr(c) for c in choices)}", value)
    return value


def check_bool(owner: str, name: str, value: Any) -> bool:
    """`value`, True or False (a NumPy bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        fail(owner, name, "True or False", value)
    return bool(value)


_LIBRARY_ROOTS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
                       for package in ("vae_core", "backends"))


def caller_stacklevel() -> int:
    """The `stacklevel` for a `warnings.warn` made by the calling function that points at the first frame outside
    vae_core and backends: the user's line, whether they called `vae_core.fit` or a backend's `fit`."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_ROOTS):
        frame, level = frame.f_back, level + 1
    return level


def known_fields(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping as keyword arguments, rejecting keys that are not fields of `cls`."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{cls.__name__}.from_dict expects a mapping; got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}.from_dict: unknown field(s) {unknown}; "
                         f"the fields are {sorted(names)}")
    return dict(d)
