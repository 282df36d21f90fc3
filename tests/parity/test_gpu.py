"""Check 7: torch on CUDA (TF32 off) and JAX on its GPU (full float32 matmuls) against TensorFlow on the CPU, and
the committed TF reference they rely on.

GPU machines have torch but no TensorFlow, so the TF side of check 7 is always the committed TF CPU reference
(tests/parity/fixtures/tf_cpu_reference.safetensors, written by scripts/make_tf_reference.py) rather than a live
run: the comparison is then the same on every CUDA machine, with or without TensorFlow, and never silently skipped
for a missing framework. The reference is kept honest on CPU machines that have TensorFlow: the
test_committed_tf_reference_* tests recompute it and must agree (bit for bit where it was made; within checks 2-4's
bounds elsewhere). The CUDA tests skip only without a CUDA device (torch's: torch.cuda; JAX's: jax.devices("gpu")).

The tolerances are checks 1-4's (CPU) constants. They were not measured on a GPU (none was available when this
check was written): cuBLAS's summation orders differ from MKL's as XLA's do, so the same float32 reasoning applies;
the first CUDA run's numbers belong in tolerances.py (scripts/parity_report.py prints them).
"""
import numpy as np
import pytest

from vae_core import LIKELIHOODS, VAESpec

from tests.conftest import missing_framework
from tests.parity.drivers import (loss_fixture, loss_inputs, FORWARD_SEED, GRADIENT_SEED, batch, build_shared, forward,
                                  gradient_rel_diffs, gradients, lockstep_config, lockstep_data, lockstep_losses,
                                  per_example, relative_gaps, tf_reference)
from tests.parity.tolerances import FORWARD_ATOL, GRAD_RTOL, LOCKSTEP_RTOL, LOCKSTEP_RTOL_200, LOCKSTEP_STEPS, LOSS_RTOL

_META, TENSORS = loss_fixture()
CASES = [c["case"] for c in _META["cases"]]


def inputs(case):
    return loss_inputs(TENSORS, case)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


pytestmark = pytest.mark.gpu  # scripts/gpu_check.sh selects the CUDA tests with -m gpu
cuda = pytest.mark.skipif(not _cuda(), reason="check 7 needs torch with a CUDA device")
META, REF = tf_reference()


def test_committed_tf_reference_has_the_suite_inputs():
    """Runs anywhere (no framework needed): the reference holds every tensor check 7 reads, in the spec's shapes."""
    for likelihood in LIKELIHOODS:
        spec = VAESpec(likelihood=likelihood)
        assert REF[f"{likelihood}.forward.decoder_out"].shape == (64, spec.output_dim)
        assert REF[f"{likelihood}.forward.mu"].shape == REF[f"{likelihood}.forward.log_var"].shape == (64, 20)
    for name, shape in VAESpec().weight_shapes().items():
        assert REF[f"bernoulli.grad.{name}"].shape == shape
    assert REF["bernoulli.lockstep"].shape == (lockstep_config().epochs,)
    assert META["forward_seed"] == FORWARD_SEED and META["gradient_seed"] == GRADIENT_SEED


# the reference is recomputed where TensorFlow is installed (CPU machines); a GPU machine has none
needs_tf = pytest.mark.skipif(missing_framework("tf") is not None, reason=str(missing_framework("tf")))


@needs_tf
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_committed_tf_reference_forward_is_current(likelihood):
    spec = VAESpec(likelihood=likelihood)
    out = forward("tf", build_shared("tf", spec), *batch(spec, seed=FORWARD_SEED))
    for key, value in out.items():
        np.testing.assert_allclose(value, REF[f"{likelihood}.forward.{key}"], rtol=0, atol=FORWARD_ATOL,
                                   err_msg=f"{key}: regenerate with scripts/make_tf_reference.py")


@needs_tf
def test_committed_tf_reference_gradients_are_current():
    spec = VAESpec(likelihood="bernoulli", beta=1.0)
    grads = gradients("tf", build_shared("tf", spec), *batch(spec, seed=GRADIENT_SEED))
    ref = {n: REF[f"bernoulli.grad.{n}"] for n in grads}
    worst = max(gradient_rel_diffs(ref, grads).items(), key=lambda kv: kv[1])
    assert worst[1] < GRAD_RTOL, f"{worst}: regenerate with scripts/make_tf_reference.py"


def _jax_gpu() -> bool:
    try:
        import jax
    except ImportError:
        return False
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:  # the CPU jaxlib, or no GPU found
        return False


jax_gpu = pytest.mark.skipif(not _jax_gpu(), reason="check 7 for JAX needs JAX with a GPU (the CUDA jaxlib)")


def _jax_model_on_gpu(spec):
    from backends.jax.device import model_device

    model = build_shared("jax", spec)
    assert model_device(model).startswith("cuda"), f"the JAX model is on {model_device(model)}, not a GPU"
    return model


# One body per check for every backend that runs on a GPU: torch on CUDA (TF32 off), and JAX on its GPU (the CUDA
# jaxlib; its side runs on its default device with full float32 matmuls: drivers._placed, and `fit` on "cuda"
# sets the same, backends.jax.device.exact_fp32). Each test first checks that the backend's side really is on the
# GPU, so a CPU fallback cannot pass for a GPU result.
GPU_BACKENDS = [pytest.param("torch", marks=cuda, id="torch"), pytest.param("jax", marks=jax_gpu, id="jax")]


def _on_gpu(name: str, spec):
    """The backend's model of `spec` holding the shared weights, on its GPU."""
    if name == "torch":
        return build_shared("torch", spec, device="cuda")
    return _jax_model_on_gpu(spec)


def _check_gpu_default(name: str) -> None:
    """JAX computes on its default backend: it must be the GPU (torch's side is placed by `device="cuda"`)."""
    if name == "jax":
        import jax

        assert jax.default_backend() == "gpu", f"JAX's default backend is {jax.default_backend()}"


@pytest.mark.parametrize("name", GPU_BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_gpu_loss_terms_match_reference(name, case):
    _check_gpu_default(name)
    likelihood = case.split(".")[0]
    recon, kl = per_example(name, inputs(case), likelihood, device="cuda")
    np.testing.assert_allclose(recon, TENSORS[f"{case}.ref_recon"], rtol=LOSS_RTOL, atol=0)
    np.testing.assert_allclose(kl, TENSORS[f"{case}.ref_kl"], rtol=LOSS_RTOL, atol=0)


@pytest.mark.parametrize("name", GPU_BACKENDS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_gpu_forward_agrees_with_tf_cpu(name, likelihood):
    spec = VAESpec(likelihood=likelihood)
    out = forward(name, _on_gpu(name, spec), *batch(spec, seed=FORWARD_SEED))
    for key, value in out.items():
        np.testing.assert_allclose(value, REF[f"{likelihood}.forward.{key}"], rtol=0, atol=FORWARD_ATOL, err_msg=key)


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_gradients_agree_with_tf_cpu(name):
    spec = VAESpec(likelihood="bernoulli", beta=1.0)
    grads = gradients(name, _on_gpu(name, spec), *batch(spec, seed=GRADIENT_SEED))
    for weight, rel in gradient_rel_diffs(grads, {n: REF[f"bernoulli.grad.{n}"] for n in grads}).items():
        assert rel < GRAD_RTOL, f"{weight}: relative gradient difference {rel:.2e} >= {GRAD_RTOL}"


@pytest.mark.slow
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_lockstep_agrees_with_tf_cpu(name):
    spec = VAESpec()
    curve = lockstep_losses(name, spec, lockstep_data(), lockstep_config(), device="cuda", model=_on_gpu(name, spec))
    gap = relative_gaps(curve, REF["bernoulli.lockstep"])
    assert curve[-1] < 0.6 * curve[0]
    assert gap[:LOCKSTEP_STEPS].max() < LOCKSTEP_RTOL, f"max relative gap {gap[:LOCKSTEP_STEPS].max():.2e}"
    assert gap.max() < LOCKSTEP_RTOL_200, f"max relative gap {gap.max():.2e} over {len(gap)} steps"
