"""vae_core.model.losses: golden values worked out by hand, and properties against scipy."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm

from vae_core.model import losses

LOG2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# --- golden values: each "expected" is the formula evaluated by hand, not by the code under test ---
@pytest.mark.parametrize("x, logits, expected", [
    ([1.0, 0.0], [0.0, 0.0], 2 * LOG2),                      # sigmoid(0) = 1/2 for both pixels
    ([1.0], [2.0], math.log(1 + math.exp(-2.0))),            # -log sigmoid(2)
    ([0.5], [1.0], math.log(1 + math.e) - 0.5),              # softplus(1) - x * l
    ([1.0, 0.0], [1e4, -1e4], 0.0),                          # saturated and right
    ([0.0, 1.0], [1e4, -1e4], 2e4),                          # saturated and wrong: |l| each
])
def test_bernoulli_golden(x, logits, expected):
    got = losses.bernoulli_nll(np.array([x]), np.array([logits]))
    assert got.shape == (1,)
    assert got[0] == pytest.approx(expected, rel=1e-15, abs=1e-300)


def test_gaussian_golden():
    # x = (1, 2), mean = 0: 0.5 * (1 + 4) + 2 * 0.5 * log(2 pi)
    got = losses.gaussian_nll(np.array([[1.0, 2.0]]), np.zeros((1, 2)))
    assert got[0] == pytest.approx(2.5 + 2 * HALF_LOG_2PI, rel=1e-15)


def test_gaussian_learned_golden():
    # x = 1, mean = 0, variance 4: 0.5 * log 4 + 1 / (2 * 4) + 0.5 * log(2 pi)
    got = losses.gaussian_learned_nll(np.array([[1.0]]), np.array([[0.0]]), np.array([[math.log(4.0)]]))
    assert got[0] == pytest.approx(LOG2 + 0.125 + HALF_LOG_2PI, rel=1e-15)


@pytest.mark.parametrize("mu, log_var, expected", [
    ([1.0], [0.0], 0.5),                           # 0.5 * mu^2
    ([0.0], [LOG2], 0.5 * (2.0 - 1.0 - LOG2)),     # 0.5 * (sigma^2 - 1 - log sigma^2)
    ([0.0, 0.0], [0.0, 0.0], 0.0),
    ([3.0, -1.0], [0.0, 0.0], 5.0),
])
def test_kl_golden(mu, log_var, expected):
    assert losses.kl_to_standard_normal(np.array([mu]), np.array([log_var]))[0] == pytest.approx(expected, abs=1e-15)


def test_negative_elbo_is_batch_mean_of_recon_plus_beta_kl():
    x = np.array([[1.0, 0.0], [1.0, 1.0]])
    logits = np.zeros((2, 2))  # recon = 2 log 2 for each example
    mu = np.array([[1.0], [3.0]])  # KL = 0.5 and 4.5
    log_var = np.zeros((2, 1))
    total, recon, kl = losses.negative_elbo(x, logits, mu, log_var, likelihood="bernoulli", beta=2.0)
    assert recon == pytest.approx(2 * LOG2)
    assert kl == pytest.approx(2.5)
    assert total == pytest.approx(2 * LOG2 + 2.0 * 2.5)


def test_reconstruction_dispatch_splits_learned_output():
    x = np.array([[1.0, 2.0]])
    out = np.array([[0.5, 1.5, 0.1, -0.2]])  # means, then log-variances
    assert losses.reconstruction_nll(x, out, "gaussian_learned")[0] == pytest.approx(
        losses.gaussian_learned_nll(x, out[:, :2], out[:, 2:])[0], rel=1e-15)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        losses.reconstruction_nll(x, out, "laplace")


# --- properties ---
finite = st.floats(-30, 30, allow_nan=False)


@settings(max_examples=200)
@given(arrays(np.float64, (3, 5), elements=finite), arrays(np.float64, (3, 5), elements=finite))
def test_kl_non_negative(mu, log_var):
    kl = losses.kl_to_standard_normal(mu, log_var)
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0.0)


@given(st.integers(1, 50))
def test_kl_zero_at_prior(d):
    assert np.all(losses.kl_to_standard_normal(np.zeros((2, d)), np.zeros((2, d))) == 0.0)


@settings(max_examples=200)
@given(arrays(np.float64, (4, 6), elements=st.floats(0, 1)),
       arrays(np.float64, (4, 6), elements=st.floats(-1e4, 1e4, allow_nan=False)))
def test_bernoulli_finite_and_exact_for_any_logit(x, logits):
    got = losses.bernoulli_nll(x, logits)
    # Reference in exact form per pixel: -(x log p + (1 - x) log(1 - p)) with log p = -softplus(-l).
    log_p = -np.logaddexp(0.0, -logits)
    log_1mp = -np.logaddexp(0.0, logits)
    expected = -(x * log_p + (1 - x) * log_1mp).sum(axis=-1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("x, logit", [(1.0, 1e4), (0.0, -1e4), (0.0, 1e4), (1.0, -1e4), (0.3, 1e4)])
def test_bernoulli_extreme_logits_exact(x, logit):
    # softplus(l) - x l: for l = +1e4 that is (1 - x) * 1e4; for l = -1e4 it is x * 1e4.
    expected = (1 - x) * 1e4 if logit > 0 else x * 1e4
    assert losses.bernoulli_nll(np.array([[x]]), np.array([[logit]]))[0] == pytest.approx(expected, abs=1e-9)


@settings(max_examples=200)
@given(arrays(np.float64, (3, 4), elements=st.floats(-5, 5)), arrays(np.float64, (3, 4), elements=st.floats(-5, 5)))
def test_gaussian_matches_scipy(x, mean):
    expected = -norm.logpdf(x, loc=mean, scale=1.0).sum(axis=-1)
    np.testing.assert_allclose(losses.gaussian_nll(x, mean), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=200)
@given(arrays(np.float64, (3, 4), elements=st.floats(-5, 5)), arrays(np.float64, (3, 4), elements=st.floats(-5, 5)),
       arrays(np.float64, (3, 4), elements=st.floats(-10, 10)))
def test_gaussian_learned_matches_scipy(x, mean, log_var):
    expected = -norm.logpdf(x, loc=mean, scale=np.exp(0.5 * log_var)).sum(axis=-1)
    np.testing.assert_allclose(losses.gaussian_learned_nll(x, mean, log_var), expected, rtol=1e-10, atol=1e-10)
