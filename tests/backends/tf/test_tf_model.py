"""TF/Keras backend: the Keras model (its variables, the Sampling layer, NumPy and tensor inputs), its loss, Adam state
in the neutral layout, TorchAdam, the Keras-on-TF guard and the IWAE's conv groups. What every backend's model does is
in tests/conformance/test_conformance_model.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import backends.tf as tfb  # noqa: E402  (sets KERAS_BACKEND before keras is imported)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import vae_core.model.losses as ref  # noqa: E402
from vae_core import VAESpec, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SMALL = dict(input_dim=12, latent_dim=3)


def small_spec(likelihood="bernoulli", hidden_dims=(7,), **kw):
    return VAESpec(**{**SMALL, "hidden_dims": hidden_dims, "likelihood": likelihood, **kw})


def data(n, d, seed=0):
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def test_keras_trains_exactly_the_spec_weights_and_returns_tensors():
    """Nothing outside the spec is a trainable variable, for every likelihood and depth; the conveniences return
    float32 tf.Tensors (the shapes, in every backend: tests/conformance/test_conformance_model.py)."""
    for likelihood in ("bernoulli", "gaussian", "gaussian_learned"):
        for hidden_dims in [(), (7,), (5, 9, 4)]:
            spec = small_spec(likelihood, hidden_dims)
            model = build("tf", spec, seed=0)
            assert len(model.trainable_variables) == len(spec.weight_shapes()), (likelihood, hidden_dims)
            assert model.spec is spec
    x = data(5, spec.input_dim)
    for arr in (model.sample(4, seed=0), model.reconstruct(x), model.interpolate(x[0], x[1], 3)):
        assert isinstance(arr, tf.Tensor) and arr.dtype == tf.float32


def test_the_forward_pass_takes_numpy_arrays_and_tensors_alike():
    model = build("tf", small_spec("gaussian"), seed=1)
    x = data(6, 12)
    eps = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    a, b = model(x, eps=eps), model(tf.constant(x), eps=tf.constant(eps))
    for t, u in zip(a, b):
        np.testing.assert_array_equal(t.numpy(), u.numpy())


def test_sampling_layer_with_fixed_eps_and_reseed():
    layer = tfb.Sampling(seed=3)
    mu = np.array([[0.5, -1.0]], np.float32)
    log_var = np.array([[0.2, -3.0]], np.float32)
    eps = np.array([[1.5, -0.25]], np.float32)
    z = layer((tf.constant(mu), tf.constant(log_var)), eps=eps).numpy()
    np.testing.assert_allclose(z, mu + np.exp(0.5 * log_var) * eps, rtol=1e-6)
    layer.reseed(11)
    first = layer((tf.constant(mu), tf.constant(log_var))).numpy()
    second = layer((tf.constant(mu), tf.constant(log_var))).numpy()
    layer.reseed(11)
    np.testing.assert_array_equal(layer((tf.constant(mu), tf.constant(log_var))).numpy(), first)
    assert not np.array_equal(first, second)


def test_interpolate_needs_two_steps():
    # TF's own bound: torch's interpolate accepts steps=1 (one point, x1's end)
    model = build("tf", small_spec("bernoulli"), seed=0)
    x = data(2, 12)
    with pytest.raises(ValueError, match="steps"):
        model.interpolate(x[0], x[1], 1)


def _loss_inputs(likelihood, seed=0):
    rng = np.random.default_rng(seed)
    b, d, latent = 9, 30, 4
    x = rng.random((b, d)).astype(np.float32)
    x[:3] = (x[:3] > 0.5).astype(np.float32)  # some exact 0/1 pixels
    width = 2 * d if likelihood == "gaussian_learned" else d
    out = rng.normal(0.0, 3.0, (b, width)).astype(np.float32)
    if likelihood == "bernoulli":  # saturated logits, where sigmoid + clipped BCE is wrong
        out[0, :6] = [80.0, -80.0, 500.0, -500.0, 1e4, -1e4]
        out[1, :6] = [30.0, -30.0, 17.0, -17.0, 90.0, -90.0]
    if likelihood == "gaussian_learned":
        out[0, d:d + 4] = [-8.0, 8.0, -12.0, 6.0]  # extreme log-variances
    mu = rng.normal(0.0, 2.0, (b, latent)).astype(np.float32)
    log_var = rng.normal(0.0, 1.5, (b, latent)).astype(np.float32)
    log_var[0] = [1e-7, -1e-6, 9.0, -9.0]  # expm1 matters near 0
    return x, out, mu, log_var


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_loss_matches_the_float64_reference(likelihood, beta):
    x, out, mu, log_var = _loss_inputs(likelihood)
    want = ref.negative_elbo(x, out, mu, log_var, likelihood=likelihood, beta=beta)
    got = tfb.losses.negative_elbo(x, tf.constant(out), tf.constant(mu), tf.constant(log_var),
                                   likelihood=likelihood, beta=beta)
    assert all(t.shape == () and t.dtype == tf.float32 for t in got)
    np.testing.assert_allclose([float(t) for t in got], list(want), rtol=1e-6)
    np.testing.assert_allclose(tfb.losses.reconstruction_nll(x, out, likelihood).numpy(),
                               ref.reconstruction_nll(x, out, likelihood), rtol=1e-6)
    np.testing.assert_allclose(tfb.losses.kl_to_standard_normal(mu, log_var).numpy(),
                               ref.kl_to_standard_normal(mu, log_var), rtol=1e-6, atol=1e-12)


def test_per_example_losses_and_bernoulli_with_saturated_logits():
    x, out, mu, log_var = _loss_inputs("bernoulli")
    got = tfb.losses.bernoulli_nll(x, out).numpy()
    assert got.shape == (9,)
    np.testing.assert_allclose(got, ref.bernoulli_nll(x, out), rtol=1e-6)
    # x=1 at logit -1e4 costs exactly 1e4 nats; a clipped sigmoid would cap it at -log(1e-7) = 16.1
    one = tfb.losses.bernoulli_nll(np.ones((1, 1), np.float32), np.full((1, 1), -1e4, np.float32)).numpy()
    assert one[0] == pytest.approx(1e4, rel=1e-7)
    np.testing.assert_allclose(tfb.losses.gaussian_nll(x, out).numpy(), ref.gaussian_nll(x, out), rtol=1e-6)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        tfb.losses.reconstruction_nll(x, out, "poisson")


def _adam_steps(model, optimizer, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = [tf.constant(rng.standard_normal(v.shape).astype(np.float32)) for v in model.trainable_variables]
        optimizer.apply(grads, model.trainable_variables)


@pytest.mark.parametrize("make_optimizer", [lambda: keras.optimizers.Adam(1e-2), lambda: tfb.TorchAdam(1e-2)])
def test_adam_state_round_trip(make_optimizer):
    spec = small_spec()
    model, optimizer = build("tf", spec, seed=0), make_optimizer()
    _adam_steps(model, optimizer)
    state = tfb.weights.export_adam(model, optimizer)
    assert state.step == 3 and set(state.m) == set(state.v) == set(spec.weight_shapes())
    assert all(np.abs(state.m[k]).max() > 0 and state.v[k].min() > 0 for k in state.m)
    twin, twin_opt = build("tf", spec, seed=1), make_optimizer()  # fresh, unbuilt optimizer: built on import
    tfb.weights.import_weights(twin, tfb.weights.export_weights(model))
    tfb.weights.import_adam(twin, twin_opt, state)
    back = tfb.weights.export_adam(twin, twin_opt)
    assert back.step == 3
    for k in state.m:
        np.testing.assert_array_equal(back.m[k], state.m[k])
        np.testing.assert_array_equal(back.v[k], state.v[k])
    _adam_steps(model, optimizer, 1, seed=9)  # the same next step from the restored state
    _adam_steps(twin, twin_opt, 1, seed=9)
    for k, v in tfb.weights.export_weights(model).items():
        np.testing.assert_array_equal(tfb.weights.export_weights(twin)[k], v)


def test_torch_adam_puts_epsilon_where_torch_does():
    """One variable, hand-computed: torch's update vs Keras' (eps inside vs outside the v bias correction)."""
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-3  # a large eps makes the placement visible
    g = np.array([1e-3, -2e-3, 0.5], np.float32)
    m, v, w = np.zeros(3), np.zeros(3), np.array([1.0, 2.0, 3.0])
    torch_w, keras_w = w.copy(), w.copy()
    for t in (1, 2):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        torch_w = torch_w - lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
        keras_w = keras_w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    pairs = ((tfb.TorchAdam(lr, b1, b2, eps), torch_w), (keras.optimizers.Adam(lr, b1, b2, eps), keras_w))
    for optimizer, want in pairs:
        var = keras.Variable(np.array([1.0, 2.0, 3.0], np.float32))
        for _ in range(2):
            optimizer.apply([tf.constant(g)], [var])
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-6)
    assert np.abs(torch_w - keras_w).max() > 1e-3  # the two rules differ measurably here


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def test_keras_backend_env_for_another_framework_is_overridden():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from vae_core import build, VAESpec\n"
            "m = build('tf', VAESpec(input_dim=4, hidden_dims=(), latent_dim=1), seed=0)\n"
            "import keras; print('BACKEND', keras.backend.backend(), type(m).__module__)")
    proc = _run(code, KERAS_BACKEND="jax")
    assert proc.returncode == 0, proc.stderr
    assert "BACKEND tensorflow backends.tf.model" in proc.stdout
    assert "KERAS_BACKEND='jax' was set" in proc.stderr


def test_keras_already_imported_on_another_backend_fails_clearly():
    pytest.importorskip("torch")
    code = "import keras\nimport backends.tf"
    proc = _run(code, KERAS_BACKEND="torch")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "already imported on 'torch'" in proc.stderr
    assert "set KERAS_BACKEND=tensorflow" in proc.stderr


def test_iwae_of_a_conv_model_on_cpu_decodes_in_groups_of_images_with_the_same_estimate(monkeypatch):
    """XLA's CPU convolutions hold ~150 KB per decoder row, so a conv chunk is decoded a few images at a time
    (backends.tf.metrics.CONV_DECODER_ROWS): the estimate does not change."""
    import backends.tf.metrics as tfm

    spec = VAESpec(architecture="conv", image_shape=(8, 8), conv_channels=(4, 8), hidden_dims=(16,), latent_dim=3)
    model = build("tf", spec, seed=0)
    x = np.random.default_rng(0).random((7, 64), dtype=np.float32)
    whole = tfm.iwae_nll(model, x, k=12, chunk_size=6, batch_size=7, device="cpu")
    encode, chunk = tfm._compiled(model)
    images = []
    monkeypatch.setitem(tfm._COMPILED, model, (encode, lambda *a: images.append(int(a[0].shape[0])) or chunk(*a)))
    monkeypatch.setattr(tfm, "CONV_DECODER_ROWS", 12)  # two images of 6 samples per decoder pass
    grouped = tfm.iwae_nll(model, x, k=12, chunk_size=6, batch_size=7, device="cpu")
    assert images == [2, 2, 2, 1] * 2  # 7 images in groups of 2, for each of the 2 chunks
    np.testing.assert_allclose(grouped.log_px, whole.log_px, rtol=1e-6)
