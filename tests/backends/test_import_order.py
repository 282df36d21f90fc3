"""torch and TensorFlow in one process, in every order a user can reach (see vae_core/triton_guard.py).

Each scenario runs in a subprocess, so the segmentation fault it guards against fails this test instead of
killing the test runner. The suite itself is one more: collecting it imports TensorFlow (tests/backends/tf/), and
its tests then build torch's first Adam (the parity optimizer test was the first to die), and run `vae compare`
with both backends in one process (tests/cli/test_cli.py). The control proves the
environment can fail: with the installed triton and TensorFlow, `import tensorflow; import triton` crashes when
nothing guards it.
"""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from vae_core.triton_guard import AFFECTED_TENSORFLOW, AFFECTED_TRITON, installed_release

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

# One optimizer constructor is what makes torch import triton (torch.optim -> torch._dynamo -> triton).
ADAM = "import torch; torch.optim.Adam([torch.zeros(2, requires_grad=True)]).step()"
TINY = "hidden_dims=(8,), latent_dim=2, input_dim=16"

SCENARIOS = {
    "build tf, then torch": f"import vae_core; vae_core.build('tf', seed=0, {TINY}); {ADAM}",
    "build torch, then tf, then fit torch": (
        "import numpy as np, vae_core\n"
        f"m = vae_core.build('torch', seed=0, {TINY}); vae_core.build('tf', seed=0, {TINY})\n"
        "x = np.random.default_rng(0).random((64, 16), dtype=np.float32)\n"
        "vae_core.fit(m, x, config=vae_core.TrainConfig(epochs=1, batch_size=32), progress=False)"),
    "user imports tensorflow, then vae_core": f"import tensorflow; import vae_core; vae_core.build('torch'); {ADAM}",
    "import vae_core, then the user imports tensorflow, then build torch": (
        f"import vae_core; import tensorflow; vae_core.build('torch', {TINY}); {ADAM}"),
    "build torch, then the user imports tensorflow": (
        f"import vae_core; vae_core.build('torch', {TINY}); import tensorflow; {ADAM}"),
}


def _run(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _explain(result: subprocess.CompletedProcess) -> str:
    kind = "a signal (segfault/abort)" if result.returncode < 0 or result.returncode in (134, 139) else "an error"
    return f"exit status {result.returncode}, {kind}; stderr ends:\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def affected_environment():
    """The installed triton and TensorFlow are releases that crash. The dev extra installs triton on Linux x86-64,
    CI's platform, so there these tests cannot skip: they fail when triton is missing."""
    triton, tensorflow = installed_release("triton"), installed_release("tensorflow")
    missing = (f"needs triton >= {AFFECTED_TRITON} and TensorFlow >= {AFFECTED_TENSORFLOW} installed to be able to "
               f"fail; found triton {triton}, TensorFlow {tensorflow}. Install them with scripts/setup.sh")
    if triton is None or triton < AFFECTED_TRITON or tensorflow is None or tensorflow < AFFECTED_TENSORFLOW:
        if sys.platform == "linux" and platform.machine() == "x86_64":  # where the dev extra installs triton
            pytest.fail(missing)
        pytest.skip(missing)


def test_the_unguarded_order_crashes(affected_environment):
    result = _run("import tensorflow; import triton; print('survived')")
    assert result.returncode < 0 and "survived" not in result.stdout, (  # killed by SIGSEGV or SIGABRT
        "import tensorflow; import triton no longer crashes with the installed releases: the upstream bug may be "
        "fixed, so narrow AFFECTED_TENSORFLOW/AFFECTED_TRITON in vae_core/triton_guard.py")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_torch_and_tensorflow_coexist(affected_environment, scenario):
    result = _run(SCENARIOS[scenario] + "\nprint('survived')")
    assert result.returncode == 0 and "survived" in result.stdout, f"{scenario}: {_explain(result)}"


@pytest.mark.parametrize("triton, tensorflow, expected", [
    ((3, 7), (2, 20), True), ((3, 9), (2, 21), True),  # the affected releases
    ((3, 6), (2, 21), False), ((3, 7), (2, 19), False),  # either one older: nothing to guard
    (None, (2, 21), False), ((3, 7), None, False),  # either one missing
])
def test_the_guard_acts_only_for_affected_releases(affected_environment, monkeypatch, triton, tensorflow, expected):
    import vae_core.triton_guard as guard

    monkeypatch.delitem(sys.modules, "triton", raising=False)  # as in a process that has not loaded it yet
    monkeypatch.setattr(guard, "installed_release", lambda package: {"triton": triton, "tensorflow": tensorflow}[package])
    assert guard.needs_preload() is expected
