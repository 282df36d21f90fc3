"""Checks 2 and 3: with the same weights and noise, every backend computes torch's forward pass, gradients and
optimizer update (`other`: each registered backend but torch, tests/parity/conftest.py)."""
import numpy as np
import pytest

from vae_core import LIKELIHOODS, VAESpec
from vae_core.model.init import init_weights

from tests.parity.drivers import (FORWARD_SEED, GRADIENT_CASES, GRADIENT_SEED, adam_steps, batch, build_shared,
                                  forward, gradient_rel_diffs, gradients, ulp_distance)
from tests.parity.tolerances import ADAM_MAX_ULP, ADAM_MISMATCH_FRACTION, FORWARD_ATOL, GRAD_RTOL


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_forward_agrees_with_shared_weights(other, likelihood):
    spec = VAESpec(likelihood=likelihood)
    x, eps = batch(spec, seed=FORWARD_SEED)
    torch_out = forward("torch", build_shared("torch", spec), x, eps)
    other_out = forward(other, build_shared(other, spec), x, eps)
    for key in ("mu", "log_var", "decoder_out"):
        assert torch_out[key].shape == other_out[key].shape
        np.testing.assert_allclose(torch_out[key], other_out[key], rtol=0, atol=FORWARD_ATOL, err_msg=key)
    # The check can fail: different weights differ by far more than the tolerance.
    reseeded = forward(other, build_shared(other, spec, seed=1), x, eps)
    assert np.abs(reseeded["mu"] - torch_out["mu"]).max() > 100 * FORWARD_ATOL


@pytest.mark.parametrize("likelihood, beta", GRADIENT_CASES)
def test_gradients_agree_for_every_weight(other, likelihood, beta):
    spec = VAESpec(likelihood=likelihood, beta=beta)
    x, eps = batch(spec, seed=GRADIENT_SEED)
    g_torch = gradients("torch", build_shared("torch", spec), x, eps)
    g_other = gradients(other, build_shared(other, spec), x, eps)
    assert list(g_torch) == list(g_other) == list(spec.weight_shapes())
    for name in spec.weight_shapes():
        assert g_torch[name].shape == g_other[name].shape == spec.weight_shapes()[name]
    for name, rel in gradient_rel_diffs(g_torch, g_other).items():
        assert rel < GRAD_RTOL, f"{name}: relative gradient difference {rel:.2e} >= {GRAD_RTOL}"


def test_optimizer_update_agrees_given_the_same_gradients(other):
    """Fit's optimizers (torch's fused Adam; TF's TorchAdam compiled by XLA) fed the same gradients from the same
    weights: weights and moments after each of three steps agree to float32 rounding, element by element."""
    spec = VAESpec()
    weights = init_weights(spec, 0)
    model = build_shared("torch", spec)
    grads_seq = [gradients("torch", model, *batch(spec, seed=s)) for s in (1, 2, 3)]
    grads_seq[2] = {n: g * np.float32(1e-6) for n, g in grads_seq[2].items()}  # small gradients: eps matters
    steps = {name: adam_steps(name, spec, weights, grads_seq) for name in ("torch", other)}
    for t, (ours, theirs) in enumerate(zip(steps["torch"], steps[other]), 1):
        for what, a, b in zip(("weights", "m", "v"), ours, theirs):
            ulps = np.concatenate([ulp_distance(a[n], b[n]).ravel() for n in a])
            assert ulps.max() <= ADAM_MAX_ULP, f"step {t}, {what}: {ulps.max()} ulp apart"
            assert (ulps > 0).mean() <= ADAM_MISMATCH_FRACTION, f"step {t}, {what}: {(ulps > 0).mean():.1e} differ"
    moved = np.abs(steps["torch"][0][0]["encoder.0.kernel"] - weights["encoder.0.kernel"]).max()
    assert moved > 1e3 * np.spacing(np.float32(0.05))  # the steps are far larger than the agreement asked for
