"""Checks 2 and 3: with the same weights and noise, both backends compute the same forward pass and gradients."""
import numpy as np
import pytest

from vae_core import LIKELIHOODS, VAESpec

from .backends import build_shared, forward, gradients
from .tolerances import FORWARD_ATOL, GRAD_RTOL


def batch(spec: VAESpec, n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, spec.input_dim)).astype(np.float32)  # (B, D)
    eps = rng.standard_normal((n, spec.latent_dim)).astype(np.float32)  # (B, latent_dim)
    return x, eps


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_forward_agrees_with_shared_weights(likelihood):
    spec = VAESpec(likelihood=likelihood)
    x, eps = batch(spec)
    torch_out = forward("torch", build_shared("torch", spec), x, eps)
    tf_out = forward("tf", build_shared("tf", spec), x, eps)
    for key in ("mu", "log_var", "decoder_out"):
        assert torch_out[key].shape == tf_out[key].shape
        np.testing.assert_allclose(torch_out[key], tf_out[key], rtol=0, atol=FORWARD_ATOL, err_msg=key)
    # The check can fail: different weights differ by far more than the tolerance.
    other = forward("tf", build_shared("tf", spec, seed=1), x, eps)
    assert np.abs(other["mu"] - torch_out["mu"]).max() > 100 * FORWARD_ATOL


@pytest.mark.parametrize("likelihood, beta", [("bernoulli", 1.0), ("gaussian", 0.5), ("gaussian_learned", 4.0)])
def test_gradients_agree_for_every_weight(likelihood, beta):
    spec = VAESpec(likelihood=likelihood, beta=beta)
    x, eps = batch(spec, seed=1)
    g_torch = gradients("torch", build_shared("torch", spec), x, eps)
    g_tf = gradients("tf", build_shared("tf", spec), x, eps)
    assert list(g_torch) == list(g_tf) == list(spec.weight_shapes())
    for name in spec.weight_shapes():
        assert g_torch[name].shape == g_tf[name].shape == spec.weight_shapes()[name]
        rel = np.linalg.norm(g_torch[name] - g_tf[name]) / np.linalg.norm(g_torch[name])
        assert rel < GRAD_RTOL, f"{name}: relative gradient difference {rel:.2e} >= {GRAD_RTOL}"
