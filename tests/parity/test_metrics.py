"""Metrics across backends: the same IWAE estimate and active units as torch on the same weights (`other`: every
other backend), and dynamic binarization feeding every backend's training loop the same 0/1 images."""
import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, fit
from vae_core.model import losses as ref
from vae_core.data import load_dataset
from vae_core.model.init import init_weights
from vae_core.metrics import active_units, iwae_nll, posterior_means
from vae_core.registry import backend_module
from vae_core.train.schedule import epoch_binarized, epoch_noise, epoch_permutation

from tests.parity.drivers import build_shared, forward
from tests.parity.tolerances import FORWARD_ATOL, IWAE_RTOL, LOSS_RTOL


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-5k")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_learned"])
def test_iwae_agrees_on_shared_weights(digits, other, likelihood):
    spec = VAESpec(likelihood=likelihood)
    x = digits.x_test[:32]
    results = {name: iwae_nll(build_shared(name, spec, seed=0), x, k=64, chunk_size=32, batch_size=16, seed=5,
                              device="cpu") for name in ("torch", other)}
    a, b = results["torch"], results[other]
    np.testing.assert_allclose(b.log_px, a.log_px, rtol=IWAE_RTOL)
    assert b.nll == pytest.approx(a.nll, rel=IWAE_RTOL) and b.stderr == pytest.approx(a.stderr, rel=1e-3)
    assert (a.k, a.n) == (b.k, b.n) == (64, 32)


def test_active_units_agree_on_shared_weights(digits, other):
    # Init weights with the mu head scaled by 5: unit variances spread around the 0.01 threshold (~0.006-0.018),
    # so the count is neither 0 nor 20 and any disagreement in mu would show.
    spec = VAESpec()
    weights = init_weights(spec, 0)
    weights["encoder.mu.kernel"] *= np.float32(5.0)
    x = digits.x_test[:500]
    results, means = {}, {}
    for name in ("torch", other):
        model = build_shared(name, spec, seed=0)
        backend_module(name).weights.import_weights(model, weights)
        results[name], means[name] = active_units(model, x, device="cpu"), posterior_means(model, x, device="cpu")
    np.testing.assert_allclose(means[other], means["torch"], rtol=0, atol=FORWARD_ATOL)
    assert 0 < results["torch"].count < 20 and results["torch"].count == results[other].count
    np.testing.assert_allclose(results[other].variances, results["torch"].variances, rtol=1e-5)


def test_dynamic_binarization_feeds_every_backend_the_same_images(digits, backend):
    # lr 1e-12: the weights barely move (< 1e-10 relative), so each epoch's train loss is the initial model's loss
    # on that epoch's binarized batches. Every backend must match the loss of epoch_binarized(x, seed, epoch), its
    # own forward pass at the initial weights (which tests/parity/test_forward_and_gradients.py holds to torch's).
    spec = VAESpec(hidden_dims=(64,), latent_dim=4)
    x, seed = digits.x_train[:256], 2
    config = TrainConfig(epochs=2, batch_size=128, learning_rate=1e-12, seed=seed, dynamic_binarization=True)
    losses = fit(build_shared(backend, spec, seed=0), x, None, config, shared_noise=True, progress=False,
                 device="cpu")["train_loss"]
    model = build_shared(backend, spec, seed=0)
    for epoch in range(2):
        data = epoch_binarized(x, seed, epoch)[epoch_permutation(seed, epoch, len(x))]  # (256, 784) 0/1
        eps = epoch_noise(seed, epoch, len(x), spec.latent_dim)
        out = forward(backend, model, data, eps)
        expected = ref.negative_elbo(data, out["decoder_out"], out["mu"], out["log_var"]).total
        grey_data = x[epoch_permutation(seed, epoch, len(x))]
        grey = forward(backend, model, grey_data, eps)
        assert ref.negative_elbo(grey_data, grey["decoder_out"], grey["mu"], grey["log_var"]).total != \
            pytest.approx(expected, rel=100 * LOSS_RTOL)  # binarizing changes the loss: the check can fail
        assert losses[epoch] == pytest.approx(expected, rel=LOSS_RTOL), epoch
