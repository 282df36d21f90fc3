"""Hypothesis properties of the loss math in every backend, and of the config round trip.

The reference (`vae_core.model.losses`, float64) has its own properties in tests/unit/test_losses.py; here each backend's
float32 loss is checked against it on random inputs, extreme ones included: values are finite, KL >= 0, and the
terms agree with the reference to float32 accuracy.
"""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from vae_core import TrainConfig
from vae_core.model import losses as ref

f32 = dict(width=32, allow_nan=False, allow_infinity=False)
SHAPE = (3, 8)
pixels = arrays(np.float32, SHAPE, elements=st.floats(0, 1, **f32))
logits = arrays(np.float32, SHAPE, elements=st.floats(-80, 80, **f32))  # sigmoid saturates float32 well before 80
means = arrays(np.float32, (3, 4), elements=st.floats(-30, 30, **f32))
# |log_var| <= 30: exp(30) ~ 1e13 stays far from float32 overflow; tiny nonzero values are where KL loses digits.
log_vars = arrays(np.float32, (3, 4), elements=st.floats(-30, 30, **f32).filter(lambda v: v == 0 or abs(v) > 1e-4))


def backend_terms(backend: str, fn: str, *args: np.ndarray) -> np.ndarray:
    """The backend's loss function `fn` on the arrays as its own tensors on the CPU, back as NumPy."""
    from vae_core.registry import backend_module

    module = backend_module(backend)
    cpu = module.device.resolve_device("cpu")
    return np.asarray(getattr(module.losses, fn)(*(module.device.to_device(a, cpu) for a in args)))


# `backend`: every registered backend (tests/conftest.py)
@settings(max_examples=30, deadline=None)
@given(mu=means, log_var=log_vars)
def test_kl_is_finite_non_negative_and_matches_reference(backend, mu, log_var):
    got = backend_terms(backend, "kl_to_standard_normal", mu, log_var)
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    np.testing.assert_allclose(got, ref.kl_to_standard_normal(mu, log_var), rtol=2e-6, atol=1e-30)


@settings(max_examples=30, deadline=None)
@given(x=pixels, logit=logits)
def test_bernoulli_is_finite_and_matches_reference(backend, x, logit):
    got = backend_terms(backend, "bernoulli_nll", x, logit)
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    # max(l, 0) - x * l cancels when x is near 1 (x = 0.999, l = 5: 5 - 4.995): float32 keeps x * l to half an
    # ulp of |l|, so the error bound is per example ~ eps32 * sum |l| (2e-6 nats here), not relative to the loss.
    slack = 2 * np.finfo(np.float32).eps * np.abs(logit).sum(axis=-1)  # (B,)
    want = ref.bernoulli_nll(x, logit)
    assert np.all(np.abs(got - want) <= 2e-6 * want + slack + 1e-6), (got, want)


@settings(max_examples=30, deadline=None)
@given(x=arrays(np.float32, SHAPE, elements=st.floats(-5, 5, **f32)),
       mean=arrays(np.float32, SHAPE, elements=st.floats(-5, 5, **f32)),
       log_var=arrays(np.float32, SHAPE, elements=st.floats(-20, 20, **f32)))
def test_gaussian_learned_is_finite_and_matches_reference(backend, x, mean, log_var):
    got = backend_terms(backend, "gaussian_learned_nll", x, mean, log_var)
    assert np.all(np.isfinite(got))
    want = ref.gaussian_learned_nll(x, mean, log_var)
    # Per pixel the terms reach exp(20) * 100 ~ 5e10; float32 keeps ~7 digits of the largest.
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())


configs = st.builds(
    TrainConfig, batch_size=st.integers(1, 4096), epochs=st.integers(1, 1000),
    learning_rate=st.floats(1e-8, 10), adam_beta1=st.floats(0, 0.999), adam_beta2=st.floats(0, 0.9999),
    adam_eps=st.floats(1e-12, 1), seed=st.integers(0, 2**32), grad_clip_norm=st.none() | st.floats(1e-3, 1e3),
    reduce_lr_on_plateau=st.booleans(), lr_plateau_factor=st.floats(0.01, 0.99), lr_plateau_patience=st.integers(0, 50),
    early_stopping=st.booleans(), early_stopping_patience=st.integers(1, 50), dynamic_binarization=st.booleans())


@given(configs)
def test_train_config_json_round_trip(config):
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
