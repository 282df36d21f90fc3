"""Test-wide set-up: markers, and small CPU thread counts so the suite behaves on a 2-core CI machine."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N`: N worker processes share the cores, so each computes on one thread (torch's and TF's pools,
    # and the subprocesses that tests start inherit it); set before either framework is imported.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(variable, "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped without it")
    config.addinivalue_line("markers", "slow: trains a model for a few epochs (still CI-sized)")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: two threads gain nothing on them and, when other jobs share
    the two cores, lose ~10x to thread synchronisation (measured: IWAE k=100 on 1797 digits 0.3 s vs 2.5-4 s)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
