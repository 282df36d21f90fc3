"""Evaluation metrics (IWAE log-likelihood, active units) and the dynamic-binarization protocol.

Small models on scikit-learn's 8x8 digits and a 6-pixel linear-Gaussian model keep it CI-sized. Cross-backend
agreement is in tests/parity/test_metrics.py; here each backend is checked against math computed independently.
"""
import inspect

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from backends.torch import build_model, evaluate, fit, weights
from backends.torch.losses import per_example
from vae_core import TrainConfig, VAESpec, build, read_checkpoint
from vae_core.model import losses as ref
from vae_core.data import load_dataset
from vae_core.metrics import (ActiveUnits, active_units, count_active_units, iwae_noise, iwae_nll,
                              log_diag_normal, log_standard_normal, posterior_means)
from vae_core.train.schedule import epoch_binarized, epoch_noise, epoch_permutation, eval_noise

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)  # for scikit-learn's 8x8 digits
# Float32 network against the float64 NumPy reference, relative per image: log w is a float32 sum of 64 pixel
# terms plus two latent terms, each rounded at ~6e-8 relative; 1e-5 leaves room for the GEMMs and no room for
# a missing constant (1e-2 or more on these ~30-100 nat values).
REF_RTOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """The 64-32-4 model after 4 epochs on the digits (torch): a model whose posterior is not trivial."""
    model = build_model(SPEC, seed=0)
    fit(model, digits.x_train, None, TrainConfig(epochs=4, batch_size=64, seed=0), progress=False, device="cpu")
    return model


def numpy_log_px(w: dict, spec: VAESpec, x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The IWAE estimate log p̂(x) per image in float64 NumPy, from neutral weights and the same noise."""
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    dense = lambda h, name: h @ w[f"{name}.kernel"].astype(np.float64) + w[f"{name}.bias"]  # noqa: E731
    h = x.astype(np.float64)
    for i in range(len(spec.hidden_dims)):
        h = relu(dense(h, f"encoder.{i}"))
    mu, log_var = dense(h, "encoder.mu"), dense(h, "encoder.log_var")  # (N, L)
    eps = iwae_noise(seed, 0, len(x), k, spec.latent_dim).astype(np.float64)  # (N, k, L)
    z = mu[:, None] + np.exp(0.5 * log_var)[:, None] * eps  # (N, k, L)
    h = z.reshape(-1, spec.latent_dim)
    for i in range(len(spec.hidden_dims)):
        h = relu(dense(h, f"decoder.{i}"))
    out = dense(h, "decoder.out")  # (N * k, D')
    recon = ref.reconstruction_nll(np.repeat(x, k, axis=0), out, spec.likelihood).reshape(len(x), k)
    log_w = -recon + log_standard_normal(z) - log_diag_normal(z, mu[:, None], log_var[:, None])  # (N, k)
    return logsumexp(log_w, axis=1) - np.log(k)


def per_image_neg_elbo(model, x: np.ndarray, seed: int) -> np.ndarray:
    """Single-sample negative ELBO (analytic KL) per image, torch, with eps = eval_noise(seed): (N,)."""
    with torch.no_grad():
        xt = torch.from_numpy(x)
        out, mu, log_var = model(xt, torch.from_numpy(eval_noise(seed, len(x), model.spec.latent_dim)))
        recon, kl = per_example(xt, out, mu, log_var, likelihood=model.spec.likelihood)
    return (recon + kl).double().numpy()


def mean_and_stderr(d: np.ndarray) -> tuple[float, float]:
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


# ---------------------------------------------------------------- IWAE: the estimator itself


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_iwae_matches_a_float64_numpy_reference(digits, likelihood):
    # torch here; tests/parity/test_metrics.py holds TF to torch on the same weights.
    spec = SPEC.replace(likelihood=likelihood)
    model = build_model(spec, seed=1)
    x = digits.x_test[:24]
    result = iwae_nll(model, x, k=30, chunk_size=8, batch_size=10, seed=3, device="cpu")
    expected = numpy_log_px(weights.export_weights(build_model(spec, seed=1)), spec, x, 30, 3)
    np.testing.assert_allclose(result.log_px, expected, rtol=REF_RTOL)
    assert result.nll == pytest.approx(-expected.mean(), rel=REF_RTOL) and result.log_likelihood == -result.nll
    assert result.k == 30 and result.n == 24
    assert result.stderr == pytest.approx(expected.std(ddof=1) / np.sqrt(24), rel=1e-4)


def test_k1_is_the_single_sample_elbo_in_expectation(digits, trained):
    # k = 1 gives one log w = log p(x|z) + log p(z) - log q(z|x) per image, an unbiased estimate of the ELBO, as is
    # the training loss with its analytic KL. With independent noise their per-image difference has mean zero.
    x = digits.x_test
    d = iwae_nll(trained, x, k=1, seed=0, device="cpu").log_px + per_image_neg_elbo(trained, x, seed=7)
    mean, se = mean_and_stderr(d)
    assert abs(mean) < 4 * se, (mean, se)


def test_the_bound_rises_with_k_and_lies_above_the_elbo(digits, trained):
    x = np.concatenate([digits.x_train, digits.x_test])  # all 1797 digits: the 10 -> 100 gain is ~0.03 nats
    log_px = {k: iwae_nll(trained, x, k=k, seed=0, device="cpu").log_px for k in (1, 10, 100)}
    for lo, hi in ((1, 10), (10, 100)):
        mean, se = mean_and_stderr(log_px[hi] - log_px[lo])  # paired over images
        assert mean > 4 * se, (lo, hi, mean, se)
    mean, se = mean_and_stderr(log_px[100] + per_image_neg_elbo(trained, x, seed=7))
    assert mean > 4 * se, (mean, se)  # IWAE(100) above the ELBO
    assert log_px[100].mean() > -evaluate(trained, x, device="cpu")["loss"]


def test_chunks_and_batches_do_not_change_the_estimate(digits):
    model = build_model(SPEC, seed=2)
    x = digits.x_test[:30]
    a = iwae_nll(model, x, k=50, chunk_size=50, batch_size=30, seed=1, device="cpu")
    b = iwae_nll(model, x, k=50, chunk_size=7, batch_size=11, seed=1, device="cpu")
    np.testing.assert_allclose(a.log_px, b.log_px, rtol=1e-6)
    c = iwae_nll(model, x, k=50, chunk_size=7, batch_size=11, seed=2, device="cpu")
    assert not np.allclose(a.log_px, c.log_px, rtol=1e-6)  # the seed does matter


def test_noise_is_per_image_and_reproducible():
    full = iwae_noise(5, 0, 10, 7, 3)  # (10, 7, 3)
    assert full.shape == (10, 7, 3) and full.dtype == np.float32
    np.testing.assert_array_equal(full[4:9], iwae_noise(5, 4, 9, 7, 3))  # independent of the batch boundaries
    assert not np.array_equal(full, iwae_noise(6, 0, 10, 7, 3))
    assert abs(float(iwae_noise(0, 0, 200, 100, 5).std()) - 1.0) < 0.01


# ---------------------------------------------------------------- IWAE on a model whose log p(x) is known


def linear_gaussian(backend: str, shift: float = 0.0, widen: float = 1.0):
    """A 6-pixel, 2-latent VAE with no hidden layers and a Gaussian decoder: decoder(z) = W z + b, so
    p(x) = N(x; b, W W^T + I). W has orthogonal columns, so the exact posterior is diagonal and the linear
    encoder can hold it: q = N(S W^T (x - b), S), S = (I + W^T W)^-1. `shift` moves q's mean and `widen`
    multiplies its variance, to make q inexact. Returns (model, b, covariance)."""
    spec = VAESpec(input_dim=6, hidden_dims=(), latent_dim=2, likelihood="gaussian")
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 2)))
    w = q * np.array([2.0, 0.7])  # (D, L): columns orthogonal, norms 2 and 0.7
    b = np.linspace(-1.0, 1.0, 6)  # (D,)
    s = 1.0 / (1.0 + (w**2).sum(axis=0))  # (L,) posterior variances
    a = w * s  # (D, L): mu = (x - b) @ a
    neutral = {"decoder.out.kernel": w.T, "decoder.out.bias": b,
               "encoder.mu.kernel": a, "encoder.mu.bias": -b @ a + shift,
               "encoder.log_var.kernel": np.zeros((6, 2)), "encoder.log_var.bias": np.log(s * widen)}
    model = build(backend, spec, seed=0)
    from vae_core.registry import backend_module
    backend_module(backend).weights.import_weights(model, {k: v.astype(np.float32) for k, v in neutral.items()})
    return model, b, w @ w.T + np.eye(6)


def test_with_the_exact_posterior_every_sample_gives_log_px(backend):
    model, b, cov = linear_gaussian(backend)
    x = np.random.default_rng(1).multivariate_normal(b, cov, size=50).astype(np.float32)
    exact = multivariate_normal(b, cov).logpdf(x.astype(np.float64))  # (50,)
    for k in (1, 5):  # w = p(x, z) / p(z | x) = p(x) for every z: no Monte Carlo error at all
        np.testing.assert_allclose(iwae_nll(model, x, k=k, device="cpu").log_px, exact, rtol=0, atol=2e-5)


def test_with_an_inexact_posterior_large_k_converges_to_log_px(backend):
    model, b, cov = linear_gaussian(backend, shift=0.5, widen=2.0)
    x = np.random.default_rng(2).multivariate_normal(b, cov, size=200).astype(np.float32)
    exact = multivariate_normal(b, cov).logpdf(x.astype(np.float64))  # (200,)
    gap1, se1 = mean_and_stderr(exact - iwae_nll(model, x, k=1, device="cpu").log_px)
    gap, se = mean_and_stderr(exact - iwae_nll(model, x, k=2000, chunk_size=500, device="cpu").log_px)
    # The k = 2000 estimate differs from log p(x) by Monte Carlo error (its standard error over the images is
    # `se`) plus a bias of ~Var(w / p(x)) / (2k) >= 0, well below 1e-3 for this q (wider than the posterior).
    assert abs(gap) < 4 * se + 1e-3, (gap, se)
    assert gap1 > 50 * (4 * se + 1e-3) and gap1 > 4 * se1, (gap1, se1)  # the ELBO is far off: the test can fail


# ---------------------------------------------------------------- active units


def test_count_active_units_on_known_variances():
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(1000, 1))
    mu = np.hstack([0.2 * signs, 0.05 * signs, np.full((1000, 1), 3.0), rng.standard_normal((1000, 1))])  # (N, 4)
    result = count_active_units(mu.astype(np.float32))
    np.testing.assert_allclose(result.variances, [0.04, 0.0025, 0.0, 1.0], rtol=0.1, atol=1e-12)
    assert result.count == 2 and result.threshold == 0.01
    assert count_active_units(mu, threshold=0.001).count == 3
    assert count_active_units(mu, threshold=0.0).count == 3  # a constant unit is never active


def test_active_units_of_a_model_with_collapsed_units(digits, backend):
    # A linear encoder (no hidden layers): mu = x @ K + c exactly, so the variances are known in closed form.
    spec = VAESpec(input_dim=64, hidden_dims=(), latent_dim=5)
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((64, 5)).astype(np.float32) * np.float32(0.3)
    kernel[:, 1] = 0.0  # collapsed
    kernel[:, 3] = 0.0  # collapsed, with a constant offset below
    x = digits.x_test
    kernel[:, 2] *= np.float32(np.sqrt(0.005 / np.var(x @ kernel[:, 2])))  # variance 0.005: below the threshold
    from vae_core.registry import backend_module
    model = build(backend, spec, seed=0)
    neutral = weights.export_weights(build_model(spec, seed=0))
    neutral.update({"encoder.mu.kernel": kernel, "encoder.mu.bias": np.array([0, 0, 0, 2.5, 0], np.float32)})
    backend_module(backend).weights.import_weights(model, neutral)
    result = active_units(model, x, batch_size=100, device="cpu")
    expected = np.var(x.astype(np.float64) @ kernel.astype(np.float64), axis=0)
    np.testing.assert_allclose(result.variances, expected, rtol=1e-5, atol=1e-12)
    assert result.variances[1] == result.variances[3] == 0.0 and result.count == 2  # units 0 and 4; not 2
    mu = posterior_means(model, x, 64, device="cpu")
    assert mu.shape == (len(x), 5) and mu.dtype == np.float32 and np.all(mu[:, 3] == np.float32(2.5))


def test_active_units_of_a_trained_model_with_zeroed_heads(digits, trained):
    n_before = active_units(trained, digits.x_test, device="cpu").count
    model = build_model(SPEC, seed=0)
    w = weights.export_weights(trained)
    w["encoder.mu.kernel"][:, 0] = 0.0
    w["encoder.mu.bias"][0] = 0.0
    weights.import_weights(model, w)
    result = active_units(model, digits.x_test, device="cpu")
    assert result.variances[0] == 0.0 and result.count == n_before - 1 and n_before >= 2


# ---------------------------------------------------------------- API: signatures and bad inputs


def test_the_front_door_takes_the_parameters_of_each_backends_metrics(backend):
    """vae_core.metrics' functions take what `backends.<name>.metrics`' do (that the backends' metrics modules, with
    log_weights, have the same functions and parameters is tests/conformance/test_backend_surface.py's check)."""
    from vae_core import metrics
    from vae_core.registry import backend_module

    def shape(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    for name in ("iwae_nll", "posterior_means", "active_units"):
        assert shape(getattr(metrics, name)) == shape(getattr(backend_module(backend).metrics, name)), name


@pytest.mark.parametrize("kwargs, error, match", [
    ({"k": 0}, ValueError, r"iwae_nll\.k must be an int >= 1; got 0\. Pass the number of importance samples"),
    ({"k": 2.5}, ValueError, r"iwae_nll\.k must be an int >= 1; got 2\.5"),
    ({"chunk_size": 0}, ValueError, r"iwae_nll\.chunk_size must be an int >= 1; got 0\. Pass"),
    ({"batch_size": 0}, ValueError, r"iwae_nll\.batch_size must be an int >= 1"),
    ({"seed": -1}, ValueError, r"iwae_nll\.seed must be an int >= 0"),
    ({"progress": "yes"}, ValueError, r"iwae_nll\.progress must be True or False"),
    ({"device": "tpu"}, ValueError, r"device must be one of"),
])
def test_bad_iwae_arguments_are_named(digits, backend, kwargs, error, match):
    with pytest.raises(error, match=match):
        iwae_nll(build(backend, SPEC, seed=0), digits.x_test[:4], **kwargs)


def test_bad_data_and_models_are_named(digits, backend):
    model = build(backend, SPEC, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 64\).*got \(4, 63\)"):
        iwae_nll(model, digits.x_test[:4, :63])
    with pytest.raises(ValueError, match=r"x must have shape \(N, 64\)"):
        active_units(model, digits.x_test[0])
    with pytest.raises(TypeError, match=r"x must be a NumPy array"):
        iwae_nll(model, digits.x_test[:4].tolist())
    with pytest.raises(ValueError, match=r"active_units\.threshold must be a number in \[0\.0, inf\)"):
        active_units(model, digits.x_test, threshold=-0.1)
    with pytest.raises(ValueError, match=r"posterior_means\.batch_size must be an int >= 1"):
        posterior_means(model, digits.x_test, 0)
    with pytest.raises(TypeError, match=r"model must be a vae_core model"):
        iwae_nll(object(), digits.x_test)
    with pytest.raises(ValueError, match=r"count_active_units: mu must be"):
        count_active_units(np.zeros(5))


def test_progress_bar_reports_to_stderr(digits, capsys):
    iwae_nll(build_model(SPEC, seed=0), digits.x_test[:20], k=5, batch_size=10, progress=True, device="cpu")
    assert "IWAE k=5" in capsys.readouterr().err


def test_result_types_are_frozen(digits):
    r = iwae_nll(build_model(SPEC, seed=0), digits.x_test[:3], k=2, device="cpu")
    with pytest.raises(AttributeError):
        r.nll = 0.0  # type: ignore[misc]
    assert isinstance(active_units(build_model(SPEC, seed=0), digits.x_test), ActiveUnits)


# ---------------------------------------------------------------- dynamic binarization


def test_epoch_binarized_is_fresh_per_epoch_binary_and_reproducible(digits):
    x = digits.x_train  # (1437, 64) grey levels in [0, 1]
    a, b = epoch_binarized(x, 0, 0), epoch_binarized(x, 0, 1)
    assert a.dtype == np.float32 and a.shape == x.shape and set(np.unique(a)) <= {0.0, 1.0}
    assert not np.array_equal(a, b) and not np.array_equal(a, epoch_binarized(x, 1, 0))
    np.testing.assert_array_equal(a, epoch_binarized(x, 0, 0))
    assert abs(a.mean() - x.mean()) < 5 * 0.5 / np.sqrt(x.size)  # each pixel is 1 with probability x
    assert np.all(a[x == 0.0] == 0.0) and np.all(a[x == 1.0] == 1.0)


def test_config_field_is_validated_and_serialised(tmp_path):
    with pytest.raises(ValueError, match=r"TrainConfig\.dynamic_binarization must be True or False; got 1"):
        TrainConfig(dynamic_binarization=1)
    config = TrainConfig(dynamic_binarization=True)
    assert config.to_dict()["dynamic_binarization"] is True and TrainConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k != "dynamic_binarization"}  # a checkpoint from before
    assert TrainConfig.from_dict(old).dynamic_binarization is False


def test_fit_trains_on_the_binarized_sample_of_each_epoch(digits):
    # lr 1e-12: the weights barely move, so each epoch's train loss is the initial model's loss on that epoch's
    # batches: the 0/1 sample epoch_binarized(x, seed, epoch), in epoch_permutation order, with epoch_noise.
    x, seed = digits.x_train[:300], 4
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-12, seed=seed, dynamic_binarization=True)
    history = fit(build_model(SPEC, seed=0), x, None, config, shared_noise=True, progress=False, device="cpu")
    model = build_model(SPEC, seed=0)
    for epoch in (0, 1):
        data = epoch_binarized(x, seed, epoch)[epoch_permutation(seed, epoch, len(x))]
        with torch.no_grad():
            out, mu, log_var = model(torch.from_numpy(data), torch.from_numpy(epoch_noise(seed, epoch, len(x), 4)))
        expected = ref.negative_elbo(data, out.numpy(), mu.numpy(), log_var.numpy()).total
        assert history["train_loss"][epoch] == pytest.approx(expected, rel=1e-6)
    grey = fit(build_model(SPEC, seed=0), x, None, config.replace(dynamic_binarization=False), shared_noise=True,
               progress=False, device="cpu")
    # Without the option the loss is that of the grey levels: off by ~5e-4 relative, 500x the tolerance above.
    assert grey["train_loss"][0] != pytest.approx(history["train_loss"][0], rel=1e-4)


def test_resume_with_dynamic_binarization_is_bit_identical(digits, tmp_path):
    config = TrainConfig(epochs=3, batch_size=64, seed=3, dynamic_binarization=True)
    x, val = digits.x_train[:400], digits.x_test[:100]
    full = build_model(SPEC, seed=0)
    full_history = fit(full, x, val, config, out_dir=tmp_path / "full", progress=False, device="cpu")
    fit(build_model(SPEC, seed=0), x, val, config.replace(epochs=1), out_dir=tmp_path / "part", progress=False,
        device="cpu")
    resumed = build_model(SPEC, seed=99)
    history = fit(resumed, x, val, config, resume_from=tmp_path / "part" / "last.safetensors", progress=False,
                  device="cpu")
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert drop(history) == drop(full_history)
    a, b = weights.export_weights(resumed), weights.export_weights(full)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert read_checkpoint(tmp_path / "full" / "last.safetensors").train_config.dynamic_binarization is True


def test_dynamic_binarization_needs_data_in_0_1(digits):
    spec = SPEC.replace(likelihood="gaussian")
    with pytest.raises(ValueError, match=r"train must lie in \[0, 1\] with TrainConfig\.dynamic_binarization"):
        fit(build_model(spec, seed=0), 2.0 * digits.x_train, None, TrainConfig(dynamic_binarization=True),
            progress=False)


# ---------------------------------------------------------------- the results script


def test_eval_results_script_smoke_and_checkpoint_reuse(tmp_path):
    from scripts import eval_results as script
    common = ["--quick", "--datasets", "digits", "--device", "cpu", "--no-progress", "--runs", str(tmp_path / "runs")]
    trained = script.main([*common, "--backends", "torch", "--out", str(tmp_path / "a")])
    ckpt = tmp_path / "runs" / "digits" / "torch" / "last.safetensors"
    reused = script.main([*common, "--checkpoints", f"torch={ckpt}", "--out", str(tmp_path / "b")])
    a, b = trained["rows"][0], reused["rows"][0]
    assert (a["iwae_k"], a["iwae_images"], a["train_images"], a["epochs"]) == (20, 100, 512, 1)
    for key in ("test_neg_elbo", "iwae_nll", "iwae_stderr", "active_units"):  # the same model, evaluated again
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
    assert a["iwae_nll"] < a["test_neg_elbo"]
    text = (tmp_path / "a" / "eval_results.md").read_text()
    assert text.startswith("# Evaluation results")
    assert "Command: `.venv/bin/python -m scripts.eval_results --quick" in text
    assert "86.76" in text and "not comparable" in text
