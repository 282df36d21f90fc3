"""User-facing behaviours that both backends share, one test body each, run for torch and for tf."""
import numpy as np
import pytest

from vae_core import VAESpec, build

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=3, image_shape=(8, 8))
BACKENDS = [pytest.param("torch", id="torch"), pytest.param("tf", id="tf")]


def _model(backend: str, spec: VAESpec = SPEC):
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[backend])
    return build(backend, spec, seed=0)


def _decoded_mean(model, z: np.ndarray) -> np.ndarray:
    """The mean of p(x|z) through the model's own decoder: what `sample` must return for that z."""
    if model.backend_name == "torch":
        import torch
        with torch.no_grad():
            out = model.decode(torch.from_numpy(z)).numpy()
    else:
        out = model.decode(z).numpy()
    if model.spec.likelihood == "bernoulli":
        return 1.0 / (1.0 + np.exp(-out.astype(np.float64)))
    return out[:, :model.spec.input_dim]


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_learned"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_with_a_seed_decodes_numpys_standard_normal(backend, likelihood):
    """sample(n, seed=s) decodes z = np.random.default_rng(s).standard_normal((n, L)): the same z, so the same
    samples up to float32 rounding, in every backend (tests/parity checks that the decoders agree)."""
    model = _model(backend, SPEC.replace(likelihood=likelihood))
    z = np.random.default_rng(7).standard_normal((5, SPEC.latent_dim), dtype=np.float32)  # (5, L)
    got = np.asarray(model.sample(5, seed=7))
    assert got.shape == (5, SPEC.input_dim)
    np.testing.assert_allclose(got, _decoded_mean(model, z), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, np.asarray(model.sample(5, seed=7)))
    assert not np.array_equal(got, np.asarray(model.sample(5, seed=8)))
