"""Test-wide set-up: markers, and small CPU thread counts so the suite behaves on a 2-core CI machine."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped without it")
    config.addinivalue_line("markers", "slow: trains a model for a few epochs (still CI-sized)")
