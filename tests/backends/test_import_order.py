"""torch and TensorFlow (and JAX) in one process, in every order a user can reach (see vae_core/triton_guard.py).

Each scenario runs in a subprocess, so the segmentation fault it guards against fails this test instead of
killing the test runner. The suite itself is one more: collecting it imports TensorFlow (tests/backends/tf/), and
its tests then build torch's first Adam (the parity optimizer test was the first to die), and run `vae compare`
with both backends in one process (tests/cli/test_cli.py). The control proves the
environment can fail: with the installed triton and TensorFlow, `import tensorflow; import triton` crashes when
nothing guards it.

JAX is the third framework a process can hold (the jax extra, in the dev extra): its jaxlib carries its own XLA and
LLVM, as TensorFlow does. The JAX scenarios cover the six orders in which the three can first be used, and each one
runs all three: a checked jax.jit computation (and grad), a TensorFlow op, and torch's Adam step (which imports
triton). Every subprocess runs with CUDA_VISIBLE_DEVICES="" (so no framework reserves GPU memory: JAX and
TensorFlow each preallocate most of a GPU's memory when they find one) and TF_CPP_MIN_LOG_LEVEL=2; KERAS_BACKEND is
left as the caller's environment has it, except in the scenario that sets it to "jax" on purpose.
"""
import importlib.util
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


# Each framework, run and checked, printing one line the test expects.
JAX_JIT = ("import jax, jax.numpy as jnp\n"
           "f = jax.jit(jax.value_and_grad(lambda x: (x * x).sum()))\n"
           "value, grad = f(jnp.arange(4.0))\n"
           "assert float(value) == 14.0 and grad.tolist() == [0.0, 2.0, 4.0, 6.0], (value, grad)\n"
           "assert jax.devices()[0].platform == 'cpu', jax.devices()\n"
           "print('jax ok')\n")
TF_OP = ("import tensorflow as tf\n"
         "assert float(tf.reduce_sum(tf.constant([1.0, 2.0]) * 2.0)) == 6.0\n"
         "print('tf ok')\n")
TORCH_ADAM = ("import torch\n"
              "p = torch.ones(2, requires_grad=True); (p * p).sum().backward()\n"
              "torch.optim.Adam([p], lr=0.5).step()\n"  # the optimizer's constructor imports triton
              "assert 'triton' in __import__('sys').modules and torch.allclose(p, torch.full((2,), 0.5)), p\n"
              "print('torch ok')\n")
KERAS_ON_TF = ("import keras\n"
               "assert keras.backend.backend() == 'tensorflow', keras.backend.backend()\n"
               "print('keras on tensorflow')\n")
FIT_X = "import numpy as np\nx = np.random.default_rng(0).random((64, 16), dtype=np.float32)\n"
FIT = "vae_core.fit({}, x, config=vae_core.TrainConfig(epochs=1, batch_size=32), progress=False)\n"

# scenario -> (code, the lines it must print, in order). With JAX_BACKEND_SCENARIOS: one scenario for each order
# of first use of the three frameworks.
JAX_SCENARIOS = {
    # Keras' own choice would be JAX here: backends.tf must still put it on TensorFlow (and warn). (Not so after a
    # plain `import tensorflow`: TensorFlow >= 2.20 imports Keras itself, which then takes KERAS_BACKEND=jax, and
    # build('tf') raises its ImportError saying how to fix it.)
    "jax with KERAS_BACKEND=jax, then Keras through build tf, then torch's Adam": (
        "import os; os.environ['KERAS_BACKEND'] = 'jax'\n" + JAX_JIT
        + "import warnings, vae_core\n"
          "with warnings.catch_warnings(record=True) as caught:\n"
          "    warnings.simplefilter('always')\n"
          f"    vae_core.build('tf', seed=0, {TINY})\n"
          "assert any('KERAS_BACKEND' in str(w.message) for w in caught), [str(w.message) for w in caught]\n"
        + KERAS_ON_TF + TF_OP + TORCH_ADAM, ["jax ok", "keras on tensorflow", "tf ok", "torch ok"]),
    "tensorflow, then vae_core, then jax jits, then torch's Adam": (
        TF_OP + "import vae_core\n" + JAX_JIT + TORCH_ADAM, ["tf ok", "jax ok", "torch ok"]),
    "build torch, then jax, then build tf": (
        f"import vae_core\nvae_core.build('torch', seed=0, {TINY})\n" + TORCH_ADAM + JAX_JIT
        + f"vae_core.build('tf', seed=0, {TINY})\n" + TF_OP, ["torch ok", "jax ok", "tf ok"]),
    "tf and torch have run, then jax is imported": (
        f"import vae_core\nvae_core.build('tf', seed=0, {TINY})\n" + TF_OP
        + f"vae_core.build('torch', seed=0, {TINY})\n" + TORCH_ADAM + JAX_JIT, ["tf ok", "torch ok", "jax ok"]),
}
# With vae_core's own jax backend (backends/jax): the two remaining orders. Only the second fits (one epoch of
# 64 rows: its jit compiles cost seconds), where JAX comes last, after TensorFlow's and triton's LLVM are loaded.
JAX_BACKEND_SCENARIOS = {
    "build jax, then build torch, then build tf": (
        f"import vae_core\nvae_core.build('jax', seed=0, {TINY})\n"
        + f"vae_core.build('torch', seed=0, {TINY})\n" + TORCH_ADAM
        + f"vae_core.build('tf', seed=0, {TINY})\n" + KERAS_ON_TF + TF_OP + JAX_JIT,
        ["torch ok", "keras on tensorflow", "tf ok", "jax ok"]),
    "build torch, then build tf, then build and fit jax": (
        f"import vae_core\n{FIT_X}vae_core.build('torch', seed=0, {TINY})\n" + TORCH_ADAM
        + f"vae_core.build('tf', seed=0, {TINY})\n" + TF_OP
        + f"j = vae_core.build('jax', seed=0, {TINY})\n" + FIT.format("j") + JAX_JIT,
        ["torch ok", "tf ok", "jax ok"]),
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


@pytest.fixture(scope="module")
def jax_installed():
    """JAX, flax and optax are installed (the jax extra, part of the dev extra). Looked up, not imported: this
    process keeps to the frameworks the suite already holds."""
    missing = [name for name in ("jax", "flax", "optax") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[jax]')")


def _check(scenario: str, code: str, expected: list[str]) -> None:
    result = _run(code + "print('survived')")
    assert result.returncode == 0 and "survived" in result.stdout, f"{scenario}: {_explain(result)}"
    printed = [line for line in result.stdout.splitlines() if line in expected]
    assert printed == expected, f"{scenario}: printed {printed}, expected {expected}; stdout:\n{result.stdout}"


@pytest.mark.parametrize("scenario", sorted(JAX_SCENARIOS))
def test_torch_tensorflow_and_jax_coexist(affected_environment, jax_installed, scenario):
    _check(scenario, *JAX_SCENARIOS[scenario])


@pytest.mark.parametrize("scenario", sorted(JAX_BACKEND_SCENARIOS))
def test_the_jax_backend_coexists_with_torch_and_tensorflow(affected_environment, jax_installed, scenario):
    if not (ROOT / "backends" / "jax" / "__init__.py").exists():
        pytest.skip("backends/jax is not there yet")
    _check(scenario, *JAX_BACKEND_SCENARIOS[scenario])
