"""build(), the backend registry, the NumPy-only import, init_weights and the neutral training helpers."""
import importlib
import re
import subprocess
import sys

import numpy as np
import pytest

import vae_core
from vae_core import VAESpec, build, init_weights
from vae_core.registry import BACKENDS
from vae_core.train.history import HISTORY_KEYS, empty_history
from vae_core.data.rows import check_data
from vae_core.train.schedule import epoch_noise, epoch_permutation


def test_import_needs_numpy_alone():
    code = ("import sys, vae_core; bad = [m for m in ('torch', 'tensorflow', 'keras', 'safetensors', 'matplotlib') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_backend_lists_the_known_ones():
    known = re.escape(str(sorted(BACKENDS)))  # "['tf', 'torch']"
    with pytest.raises(ValueError, match=rf"backend must be one of {known}; got 'no-such-backend'"):
        build("no-such-backend")


@pytest.mark.parametrize("backend", list(BACKENDS))  # installed or not: the import is what fails here
def test_missing_framework_names_the_extra(monkeypatch, backend):
    _, frameworks, extra = BACKENDS[backend]

    def no_framework(name, *a, **k):
        raise ModuleNotFoundError(f"No module named '{frameworks[0]}'", name=frameworks[0])

    monkeypatch.setattr(importlib, "import_module", no_framework)
    with pytest.raises(ImportError, match=rf"pip install 'vae-core\[{extra}\]'"):
        build(backend)


def test_build_rejects_a_spec_of_the_wrong_type_and_bad_overrides():
    with pytest.raises(TypeError, match="spec must be a vae_core.VAESpec or None; got dict"):
        build("torch", {"latent_dim": 2})
    with pytest.raises(ValueError, match="VAESpec.latent_dim must be an int >= 1; got 0"):
        build("torch", latent_dim=0)


def test_save_checkpoint_rejects_foreign_models(tmp_path):
    with pytest.raises(TypeError, match="model must be a vae_core model"):
        vae_core.save_checkpoint(tmp_path / "c.safetensors", object())


def test_init_weights_is_seeded_and_follows_torch_default_bounds():
    spec = VAESpec(input_dim=100, hidden_dims=(50,), latent_dim=4)
    a, b, c = init_weights(spec, 3), init_weights(spec, 3), init_weights(spec, 4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["encoder.0.kernel"], c["encoder.0.kernel"])
    for name, arr in a.items():
        fan_in = spec.weight_shapes()[name.rsplit(".", 1)[0] + ".kernel"][0]
        assert arr.dtype == np.float32 and np.abs(arr).max() <= 1 / np.sqrt(fan_in)
    # Uniform on [-b, b] has std b / sqrt(3); 5,000 draws pin it to a few percent.
    assert a["encoder.0.kernel"].std() == pytest.approx(1 / np.sqrt(100) / np.sqrt(3), rel=0.05)


SPEC = VAESpec(input_dim=4, hidden_dims=(3,), latent_dim=2)


def test_check_data_converts_documented_dtypes():
    u8 = np.array([[0, 255, 51, 102]], dtype=np.uint8)
    np.testing.assert_allclose(check_data(u8, SPEC), [[0.0, 1.0, 0.2, 0.4]], rtol=1e-6)
    f64 = np.full((2, 4), 0.5)
    out = check_data(f64, SPEC)
    assert out.dtype == np.float32 and out.flags.c_contiguous


@pytest.mark.parametrize("x, error, message", [
    ([[0.1, 0.2, 0.3, 0.4]], TypeError, r"train must be a NumPy array of shape \(N, 4\) or .*; got list"),
    (np.zeros((2, 4), np.int64), TypeError, "train must be float32, float64 or uint8"),
    (np.zeros(4, np.float32), ValueError, r"train must have shape \(N, 4\).*got \(4,\)"),
    (np.zeros((2, 5), np.float32), ValueError, r"train must have shape \(N, 4\).*got \(2, 5\)"),
    (np.zeros((0, 4), np.float32), ValueError, "train is empty"),
    (np.array([[0.1, np.nan, 0.2, 0.3]], np.float32), ValueError, r"NaN or inf values in 1 example\(s\)"),
    (np.array([[0.1, np.inf, 0.2, 0.3]], np.float32), ValueError, "NaN or inf"),
    (np.array([[0.1, 1.5, 0.2, 0.3]], np.float32), ValueError, r"must lie in \[0, 1\] for a Bernoulli decoder"),
])
def test_check_data_rejects_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        check_data(x if isinstance(x, np.ndarray) else x, SPEC, "train")


def test_check_data_allows_any_range_for_gaussians():
    x = np.array([[-3.0, 5.0, 0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(check_data(x, SPEC.replace(likelihood="gaussian")), x)


def test_epoch_order_and_noise_depend_on_seed_and_epoch_only():
    p = epoch_permutation(0, 1, 100)
    assert sorted(p) == list(range(100))
    np.testing.assert_array_equal(p, epoch_permutation(0, 1, 100))
    assert not np.array_equal(p, epoch_permutation(0, 2, 100))
    assert not np.array_equal(p, epoch_permutation(1, 1, 100))
    e = epoch_noise(0, 1, 100, 3)
    assert e.shape == (100, 3) and e.dtype == np.float32
    np.testing.assert_array_equal(e, epoch_noise(0, 1, 100, 3))
    assert not np.array_equal(e, epoch_noise(0, 2, 100, 3))


def test_empty_history_has_every_key():
    assert list(empty_history()) == list(HISTORY_KEYS)
    assert all(v == [] for v in empty_history().values())
