"""Model behaviours every backend shares (shapes, the forward pass at fixed noise, reconstruct and interpolate, the
shared initial weights, neutral weights in and out, checkpoints), one test body each, run for every registered
backend (tests/conftest.py).

The model is fed through its backend's `device.inference` (NumPy in, the framework's own input out), so no test
here names a framework; what only one framework has (torch's autograd and global RNG, Keras layers and optimizers)
is in tests/backends/torch/test_torch_model.py and tests/backends/tf/test_tf_model.py.
"""
import numpy as np
import pytest

from vae_core import (CheckpointError, VAESpec, build, init_weights, load_checkpoint, read_checkpoint,
                      save_checkpoint)
from vae_core.registry import backend_module

LIKELIHOODS = ["bernoulli", "gaussian", "gaussian_learned"]
SMALL = VAESpec(input_dim=12, hidden_dims=(9, 7), latent_dim=3)


def _rows(n: int, d: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)  # (n, d)


def _weights(model) -> dict[str, np.ndarray]:
    return backend_module(model.backend_name).weights.export_weights(model)


def _forward(model, x: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, ...]:
    """(decoder_out, mu, log_var) at fixed noise, as NumPy."""
    with backend_module(model.backend_name).device.inference(model) as native:
        return tuple(np.asarray(t) for t in model(native(x), native(eps)))


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("hidden", [(), (7,), (16, 8, 4)], ids=["no-hidden", "7", "16-8-4"])
def test_shapes_for_every_likelihood_and_depth(backend, likelihood, hidden):
    spec = VAESpec(input_dim=20, hidden_dims=hidden, latent_dim=3, likelihood=likelihood)
    model = build(backend, spec, seed=0)
    assert isinstance(model, backend_module(backend).VAE) and model.backend_name == backend and model.spec == spec
    assert spec.output_dim == (40 if likelihood == "gaussian_learned" else 20)
    x = _rows(4, 20)
    with backend_module(backend).device.inference(model) as native:
        out, mu, log_var = model(native(x))
        assert tuple(out.shape) == (4, spec.output_dim) and tuple(mu.shape) == tuple(log_var.shape) == (4, 3)
        assert tuple(model.decode(mu).shape) == (4, spec.output_dim)
        assert tuple(model.reparameterize(mu, log_var).shape) == (4, 3)
    for got, rows in ((model.sample(5, seed=0), 5), (model.reconstruct(x), 4), (model.interpolate(x[0], x[1], 6), 6)):
        got = np.asarray(got)
        assert got.shape == (rows, 20) and got.dtype == np.float32
    exported = _weights(model)
    assert {k: v.shape for k, v in exported.items()} == spec.weight_shapes()
    assert sum(v.size for v in exported.values()) == spec.num_params


def test_fixed_eps_makes_the_forward_pass_deterministic_and_matches_the_reparameterisation(backend):
    model = build(backend, SMALL.replace(likelihood="gaussian"), seed=1)
    x, eps = _rows(6), np.random.default_rng(2).standard_normal((6, 3), dtype=np.float32)  # (6, 12), (6, 3)
    with backend_module(backend).device.inference(model) as native:
        first, second = model(native(x), native(eps)), model(native(x), native(eps))
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        mu, log_var = model.encode(native(x))
        np.testing.assert_array_equal(np.asarray(first[0]),
                                      np.asarray(model.decode(model.reparameterize(mu, log_var, native(eps)))))
        z = np.asarray(mu) + np.exp(0.5 * np.asarray(log_var)) * eps  # NumPy's exp may differ in the last bit
        np.testing.assert_allclose(np.asarray(first[0]), np.asarray(model.decode(native(z))), rtol=1e-5, atol=1e-6)
        # without eps the two forward passes draw different noise
        assert not np.array_equal(np.asarray(model(native(x))[0]), np.asarray(model(native(x))[0]))


def test_reconstruct_decodes_the_encoder_mean(backend):
    model = build(backend, SMALL, seed=2)
    x = _rows(3)
    got = np.asarray(model.reconstruct(x))
    with backend_module(backend).device.inference(model) as native:
        mu, _ = model.encode(native(x))
        np.testing.assert_array_equal(got, np.asarray(model.mean_of(model.decode(mu))))
    assert ((got > 0) & (got < 1)).all()  # Bernoulli means: probabilities
    assert np.asarray(model.reconstruct(x[0])).shape == (1, 12)  # one example
    with pytest.raises(ValueError, match=r"reconstruct: x must have shape \(N, 12\).*got \(2, 13\)"):
        model.reconstruct(np.zeros((2, 13), np.float32))


def test_interpolate_runs_between_the_encoder_means(backend):
    model = build(backend, SMALL, seed=2)
    x1, x2 = _rows(2, seed=1)
    path = np.asarray(model.interpolate(x1, x2[None], steps=5))
    assert path.shape == (5, 12)
    np.testing.assert_allclose(path[0], np.asarray(model.reconstruct(x1))[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[-1], np.asarray(model.reconstruct(x2))[0], rtol=1e-5, atol=1e-6)
    with backend_module(backend).device.inference(model) as native:
        mu1, mu2 = (np.asarray(model.encode(native(x[None]))[0]) for x in (x1, x2))  # (1, L) each
        mid = np.asarray(model.mean_of(model.decode(native(0.5 * mu1 + 0.5 * mu2))))[0]
    np.testing.assert_allclose(path[2], mid, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"interpolate\W+steps\W.*int >= \d; got 0"):
        model.interpolate(x1, x2, steps=0)
    with pytest.raises(ValueError, match="x2 must be one example"):
        model.interpolate(x1, np.stack([x1, x2]), steps=3)


# ---------------------------------------------------------------- weights and checkpoints


def test_build_holds_init_weights_and_the_weights_round_trip(backend):
    """build(spec, seed=s) holds vae_core.init_weights(spec, s), exported as float32 C-contiguous arrays in the
    spec's order; another seed, other weights and outputs; importing them makes the outputs equal."""
    spec = VAESpec(input_dim=12, hidden_dims=(6, 5), latent_dim=3, likelihood="gaussian_learned")
    model = build(backend, spec, seed=7)
    exported, expected = _weights(model), init_weights(spec, 7)
    assert list(exported) == list(spec.weight_shapes())
    for name, array in expected.items():
        assert exported[name].dtype == np.float32 and exported[name].flags.c_contiguous, name
        np.testing.assert_array_equal(exported[name], array, err_msg=name)
    other = build(backend, spec, seed=8)
    assert not np.array_equal(_weights(other)["encoder.0.kernel"], exported["encoder.0.kernel"])
    x, eps = _rows(4), np.zeros((4, 3), np.float32)
    assert not np.array_equal(_forward(other, x, eps)[0], _forward(model, x, eps)[0])
    backend_module(backend).weights.import_weights(other, exported)
    for got, want in zip(_forward(other, x, eps), _forward(model, x, eps), strict=True):
        np.testing.assert_array_equal(got, want)


def test_import_weights_validates_before_touching_the_model(backend):
    weights = backend_module(backend).weights
    model = build(backend, SMALL, seed=1)
    before = _weights(model)
    w = init_weights(SMALL, 0)
    w["encoder.0.kernel"] = w["encoder.0.kernel"].T.copy()
    with pytest.raises(CheckpointError, match=r"'encoder.0.kernel': expected shape \(12, 9\) float32, found shape "
                                              r"\(9, 12\)"):
        weights.import_weights(model, w)
    w = init_weights(SMALL, 0)
    w["decoder.out.bias"] = np.full_like(w["decoder.out.bias"], np.nan)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        weights.import_weights(model, w)
    del w["decoder.out.bias"]
    with pytest.raises(CheckpointError, match=r"missing \['decoder.out.bias'\]"):
        weights.import_weights(model, w)
    after = _weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing was loaded
    weights.import_weights(model, init_weights(SMALL, 0))
    np.testing.assert_array_equal(np.asarray(model.reconstruct(_rows(4))),
                                  np.asarray(build(backend, SMALL, seed=0).reconstruct(_rows(4))))


def test_a_checkpoint_round_trip_gives_identical_outputs(backend, tmp_path):
    spec = SMALL.replace(likelihood="gaussian")
    model = build(backend, spec, seed=4)
    path = save_checkpoint(tmp_path / "m.safetensors", model, epoch=3, trainer_state={"lr": 1e-3})
    back = load_checkpoint(path, backend)
    assert type(back) is type(model) and back.spec == spec
    x, eps = _rows(5), np.random.default_rng(1).standard_normal((5, 3), dtype=np.float32)
    for got, want in zip(_forward(back, x, eps), _forward(model, x, eps), strict=True):
        np.testing.assert_array_equal(got, want)
    ckpt = read_checkpoint(path)
    assert (ckpt.backend, ckpt.epoch, ckpt.adam, ckpt.trainer_state) == (backend, 3, None, {"lr": 1e-3})
