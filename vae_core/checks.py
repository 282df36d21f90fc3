"""The argument checks of the whole library: one checker per kind, one message format.

Every error reads "<owner>.<name> must be <expected>; got <value>[. <fix>]": it names the argument, what was
expected, what was received, and, where one helps, how to fix it. Each checker returns the value as a plain Python
number or bool, so a NumPy scalar that passes is stored as a plain number.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from numbers import Integral, Real
from typing import Any, Iterable, Mapping, NoReturn

import numpy as np


def fail(owner: str, name: str, expected: str, got: Any, fix: str = "") -> NoReturn:
    """Raise the ValueError of the one message format."""
    msg = f"{owner}.{name} must be {expected}; got {got!r}"
    raise ValueError(msg + (f". {fix}" if fix else ""))


def check_int(owner: str, name: str, value: Any, *, minimum: int | None = None, fix: str = "") -> int:
    """`value` as an int: an int or NumPy integer (not a bool), at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        fail(owner, name, "an int" if minimum is None else f"an int >= {minimum}", value, fix)
    if minimum is not None and value < minimum:
        fail(owner, name, f"an int >= {minimum}", value, fix)
    return int(value)


def check_float(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float: a finite real number (not a bool) inside the interval the bounds give."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        fail(owner, name, "a finite number", value)
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        fail(owner, name, f"a number in {interval}", value)
    return float(value)


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
