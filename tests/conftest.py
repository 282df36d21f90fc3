"""The backends every test runs on: the registry's (`vae_core.registry.BACKENDS`), never a list written in a test.

- A test (or a fixture it uses) that takes a `backend` argument runs once per registered backend, with the
  backend's name as its id: `test_x[torch]`, `test_x[tf]`, and tomorrow `test_x[jax]` with no test edited.
- One that takes `source` and `target` runs once per ordered pair of distinct backends (`test_y[torch-tf]`,
  `test_y[tf-torch]`): something made in one backend and moved to the other.
- A backend whose framework is not installed is skipped, naming the pip extra that installs it.

A test that parametrizes `backend` (or `source`/`target`) itself, e.g. to pick one backend for a CLI run, keeps its
own values. The registry's parameters are module-scoped, so a module fixture may take `backend` too (one run per
backend, shared by the module's tests of that backend).
"""
from __future__ import annotations

import importlib.util
import itertools

import pytest

from vae_core.registry import BACKENDS

BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
BACKEND_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.permutations(BACKEND_NAMES, 2))


def missing_framework(name: str) -> str | None:
    """Why backend `name` cannot run here (its framework is not installed), or None when it can."""
    _, frameworks, extra = BACKENDS[name]
    if importlib.util.find_spec(frameworks[0]) is None:
        return f"backend {name!r} needs {frameworks[0]!r}, which is not installed (pip install 'vae-core[{extra}]')"
    return None


def backend_param(*names: str, needs: tuple[str, ...] = ()):
    """One pytest parameter of backend names, skipped when a framework it needs (its own, or that of a backend in
    `needs`, such as the one it is compared against) is not installed."""
    reasons = [reason for reason in map(missing_framework, (*names, *needs)) if reason]
    return pytest.param(*names, id="-".join(names), marks=[pytest.mark.skip(reason=reasons[0])] if reasons else [])


def _parametrized_here(metafunc) -> set[str]:
    """The argument names the test's own @pytest.mark.parametrize markers give values to."""
    names: set[str] = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs["argnames"]
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",") if a.strip()]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc):
    own = _parametrized_here(metafunc)
    if "backend" in metafunc.fixturenames and "backend" not in own:
        metafunc.parametrize("backend", [backend_param(name) for name in BACKEND_NAMES], scope="module")
    if {"source", "target"} <= set(metafunc.fixturenames) and not {"source", "target"} & own:
        metafunc.parametrize(("source", "target"), [backend_param(*pair) for pair in BACKEND_PAIRS], scope="module")
