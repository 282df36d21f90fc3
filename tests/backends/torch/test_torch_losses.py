"""The torch objective against the NumPy float64 reference (vae_core.model.losses), in float32."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from backends.torch import losses as tl
from vae_core.model import losses as ref

RTOL = 1e-6  # float32 against float64: the sums over 784 pixels keep ~7 significant digits
B, D, L = 32, 784, 20


def t(a):
    return torch.from_numpy(a)


@pytest.fixture(scope="module")
def inputs():
    """Fixed inputs with the hard cases: saturated logits (+-50), exact 0/1 pixels, extreme log-variances."""
    rng = np.random.default_rng(0)
    x = rng.random((B, D)).astype(np.float32)
    x[:, :200] = np.round(x[:, :200])  # binary pixels
    logits = (rng.standard_normal((B, D)) * 8).astype(np.float32)
    logits[:, ::7], logits[:, 3::7] = 50.0, -50.0
    mu = (rng.standard_normal((B, L)) * 3).astype(np.float32)
    log_var = (rng.standard_normal((B, L)) * 3).astype(np.float32)
    log_var[:, 0], log_var[:, 1], log_var[:, 2], log_var[:, 3] = 1e-3, -20.0, 15.0, -1e-3
    learned = rng.standard_normal((B, 2 * D)).astype(np.float32)
    learned[:, D:] *= 4  # per-pixel log-variances in about [-16, 16]
    learned[:, D:D + 10] = 30.0
    return x, logits, mu, log_var, learned


def test_per_example_terms_match_reference(inputs):
    x, logits, mu, log_var, learned = inputs
    cases = [
        (tl.bernoulli_nll(t(x), t(logits)), ref.bernoulli_nll(x, logits)),
        (tl.gaussian_nll(t(x), t(learned[:, :D])), ref.gaussian_nll(x, learned[:, :D])),
        (tl.gaussian_learned_nll(t(x), t(learned[:, :D]), t(learned[:, D:])),
         ref.gaussian_learned_nll(x, learned[:, :D], learned[:, D:])),
        (tl.kl_to_standard_normal(t(mu), t(log_var)), ref.kl_to_standard_normal(mu, log_var)),
    ]
    for got, want in cases:
        assert got.dtype == torch.float32 and got.shape == (B,)
        np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
@pytest.mark.parametrize("beta", [1.0, 0.25, 4.0])
def test_negative_elbo_matches_reference(inputs, likelihood, beta):
    x, logits, mu, log_var, learned = inputs
    out = {"bernoulli": logits, "gaussian": learned[:, :D], "gaussian_learned": learned}[likelihood]
    got = tl.negative_elbo(t(x), t(out), t(mu), t(log_var), likelihood=likelihood, beta=beta)
    want = ref.negative_elbo(x, out, mu, log_var, likelihood=likelihood, beta=beta)
    for g, w in zip(got, want):
        assert g.shape == () and g.dtype == torch.float32
        assert float(g) == pytest.approx(w, rel=RTOL, abs=0)
    # The reduction: sum over features, mean over the batch.
    recon = tl.reconstruction_nll(t(x), t(out), likelihood)
    assert float(got.recon) == pytest.approx(float(recon.sum()) / B, rel=1e-6)


def test_gaussian_keeps_the_log_2pi_constant():
    x = torch.zeros(1, 784)
    assert float(tl.gaussian_nll(x, x)[0]) == pytest.approx(0.5 * 784 * np.log(2 * np.pi), rel=1e-6)  # 720.4 nats


def test_kl_is_accurate_and_non_negative_near_zero_log_var():
    # expm1(v) - v computed directly in float32 would be off by ~10% at |v| = 1e-6; the reference is exact there.
    v = np.array([[1e-4, -1e-4, 3e-3, -0.2, 0.49, 0.51, -0.51, 2.0, -7.0]], np.float32)
    mu = np.zeros_like(v)
    got = tl.kl_to_standard_normal(t(mu), t(v)).numpy()
    np.testing.assert_allclose(got, ref.kl_to_standard_normal(mu, v), rtol=RTOL)
    per_dim = tl.kl_to_standard_normal(t(mu.T), t(v.T)).numpy()  # one dim per row
    assert (per_dim > 0).all()
    np.testing.assert_allclose(per_dim, ref.kl_to_standard_normal(mu.T, v.T), rtol=RTOL)


@settings(max_examples=40, deadline=None)
@given(mu=arrays(np.float32, (3, 5), elements=st.floats(-30, 30, width=32)),
       log_var=arrays(np.float32, (3, 5), elements=st.floats(-30, 30, width=32).filter(lambda v: abs(v) > 1e-4 or v == 0)))
def test_kl_property_matches_reference(mu, log_var):
    got = tl.kl_to_standard_normal(t(mu), t(log_var)).numpy()
    want = ref.kl_to_standard_normal(mu, log_var)
    assert (got >= 0).all()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30)


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float32, (2, 16), elements=st.floats(0, 1, width=32)),
       logits=arrays(np.float32, (2, 16), elements=st.floats(-80, 80, width=32)))
def test_bernoulli_property_matches_reference(x, logits):
    got = tl.bernoulli_nll(t(x), t(logits)).numpy()
    want = ref.bernoulli_nll(x, logits)
    # Absolute slack for pixels whose loss is below float32 resolution (e.g. x = 1, logit = 80: ~1e-35 nats).
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_bf16_inputs_are_widened_to_float32(inputs):
    x, logits, mu, log_var, _ = inputs
    got = tl.negative_elbo(t(x), t(logits).bfloat16(), t(mu).bfloat16(), t(log_var).bfloat16())
    assert got.total.dtype == torch.float32
    want = ref.negative_elbo(x, t(logits).bfloat16().float().numpy(), t(mu).bfloat16().float().numpy(),
                             t(log_var).bfloat16().float().numpy())
    assert float(got.total) == pytest.approx(want.total, rel=RTOL)


def test_gradients_flow_to_every_input(inputs):
    x, logits, mu, log_var, learned = inputs
    out, m, lv = (torch.tensor(a, requires_grad=True) for a in (learned, mu, log_var))
    tl.negative_elbo(t(x), out, m, lv, likelihood="gaussian_learned").total.backward()
    for p in (out, m, lv):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_unknown_likelihood_is_rejected(inputs):
    x, logits, *_ = inputs
    with pytest.raises(ValueError, match="likelihood must be one of"):
        tl.reconstruction_nll(t(x), t(logits), "poisson")


@pytest.mark.parametrize("pixel, logit", [(0.0, -7.0), (1.0, 7.0), (1.0, 12.0), (0.0, -12.0)])
def test_bernoulli_keeps_small_losses_exact(pixel, logit):
    # Confident, correct pixels: softplus(-7) = log1p(exp(-7)) = 9.1147e-4 nats each. torch's own
    # binary_cross_entropy_with_logits returns it 2.5e-4 too small (log(1 + e) in float32); adding the small
    # term to l before subtracting x * l = l loses it the same way for x = 1 (2.5e-4 at l = 7, 7e-2 at l = 12).
    x, logits = np.full((1, 16), pixel, np.float32), np.full((1, 16), logit, np.float32)
    got = tl.bernoulli_nll(t(x), t(logits)).numpy()
    np.testing.assert_allclose(got, ref.bernoulli_nll(x, logits), rtol=1e-6)


def test_bernoulli_gradients_pass_gradcheck():
    # bernoulli_nll has a hand-written backward (sigmoid(l) - x, -l); gradcheck compares it with finite
    # differences in float64, for both inputs, on moderate and saturated logits.
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((4, 9)), requires_grad=True)
    logits = torch.tensor(rng.standard_normal((4, 9)) * 6, requires_grad=True)
    with torch.no_grad():
        logits[0, :3] = torch.tensor([30.0, -30.0, 0.0])
    assert torch.autograd.gradcheck(tl.bernoulli_nll, (x, logits))


def test_bernoulli_broadcasts_like_the_formula():
    # IWAE's shapes: x (B, 1, D) against logits (B, K, D); values, and gradients reduced to each input's shape.
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.random((3, 1, 5)), requires_grad=True)
    logits = torch.tensor(rng.standard_normal((3, 4, 5)) * 5, requires_grad=True)
    assert torch.autograd.gradcheck(tl.bernoulli_nll, (x, logits))
    got = tl.bernoulli_nll(x, logits)
    assert got.shape == (3, 4)
    want = ref.bernoulli_nll(np.broadcast_to(x.detach().numpy(), (3, 4, 5)), logits.detach().numpy())
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)


def test_bernoulli_gradient_matches_autograd_of_the_formula(inputs):
    x, logits, *_ = inputs
    weights = torch.linspace(0.5, 2.0, B)  # a non-uniform upstream gradient
    got = torch.tensor(logits, requires_grad=True)
    (tl.bernoulli_nll(t(x), got) * weights).sum().backward()
    want = t(logits).double().requires_grad_(True)
    xd = t(x).double()
    ((want.clamp(min=0) - xd * want + torch.log1p(torch.exp(-want.abs()))).sum(-1) * weights.double()).sum().backward()
    # Absolute: sigmoid(l) - x cancels where sigmoid(l) ~ x, leaving float32's rounding of numbers ~1, times
    # the largest weight; autograd through the float32 formula loses the same.
    atol = 4 * torch.finfo(torch.float32).eps * float(weights.max())
    torch.testing.assert_close(got.grad.double(), want.grad, rtol=1e-6, atol=atol)
