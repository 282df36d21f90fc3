"""The parity tests compare the backends with the NumPy reference and with each other.

- A test that takes `backend` runs for every registered backend (tests/conftest.py); one whose parameter `name`,
  `backend`, `source` or `target` names a backend whose framework is not installed is skipped (the drivers in
  tests/parity/drivers.py raise ImportError for it).
- A test that takes `other` compares backend `other` against `REFERENCE` (torch), once for every other registered
  backend: the checks that are inherently pair-wise (one Adam step against torch's, lockstep training, the same
  forward pass and gradients on shared weights), whose tolerances were measured against torch.
"""
import pytest

from tests.conftest import BACKEND_NAMES, backend_param
from vae_core.registry import BACKENDS

FRAMEWORKS = {name: frameworks[0] for name, (_, frameworks, _) in BACKENDS.items()}
REFERENCE = "torch"  # the backend the pair-wise checks compare every other backend against


def pytest_generate_tests(metafunc):
    if "other" in metafunc.fixturenames:
        metafunc.parametrize("other", [backend_param(name, needs=(REFERENCE,)) for name in BACKEND_NAMES
                                       if name != REFERENCE], scope="module")


@pytest.fixture(autouse=True)
def _skip_without_the_framework(request):
    params = getattr(request.node, "callspec", None)
    for key in ("name", "backend", "source", "target", "other"):
        value = params.params.get(key) if params else None
        if value in FRAMEWORKS:
            pytest.importorskip(FRAMEWORKS[value])
