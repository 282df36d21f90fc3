"""The parity tests compare both frameworks: a test whose `name` or `backend` parameter names a framework that is
not installed is skipped (the drivers in backends.parity raise ImportError for it)."""
import pytest

FRAMEWORKS = {"torch": "torch", "tf": "tensorflow"}


@pytest.fixture(autouse=True)
def _skip_without_the_framework(request):
    params = getattr(request.node, "callspec", None)
    for key in ("name", "backend", "source", "target"):
        value = params.params.get(key) if params else None
        if value in FRAMEWORKS:
            pytest.importorskip(FRAMEWORKS[value])
