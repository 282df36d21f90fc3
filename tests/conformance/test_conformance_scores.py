"""`vae_core.score`: per-example scores (−log p̂(x), nats), one test body per behaviour, run for every backend.

A 64-32-4 model trained for two epochs on the 8x8 digits (torch, one checkpoint) is loaded in each backend; k and
the number of examples are small, so the module takes seconds. The estimator itself (IWAE against a float64
reference, the bound rising with k, a model whose log p(x) is known) is tested in tests/unit/test_metrics.py and
tests/parity/test_metrics.py; here, that `score` is that estimator per example, for every input `fit` accepts.
"""
from __future__ import annotations

import numpy as np
import pytest

import vae_core
from vae_core import TrainConfig, VAESpec
from vae_core.data import load_dataset, load_images
from vae_core.data.mapped import MappedRows
from vae_core.metrics import iwae_nll, iwae_noise, log_diag_normal, log_standard_normal
from vae_core.model import losses as ref

from tests.parity.drivers import forward
from tests.unit.test_metrics import REF_RTOL, numpy_log_px

SPEC = VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=4)
RTOL = 1e-5  # across backends, and against the float64 reference: float32 sums of ~66 terms (tests/unit/test_metrics)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    """best.safetensors of a two-epoch torch run on the digits: a model whose posterior is not the prior."""
    out = tmp_path_factory.mktemp("scores") / "run"
    vae_core.fit(vae_core.build("torch", SPEC, seed=0), digits.x_train, digits.x_test,
                 TrainConfig(epochs=2, batch_size=64), out_dir=out, progress=False, device="cpu")
    return out / "best.safetensors"


def test_scores_are_the_same_in_every_backend_and_match_a_float64_reference(backend, checkpoint, digits):
    x = digits.x_test[:40]
    got = vae_core.score(vae_core.load_checkpoint(checkpoint, backend), x, k=16, seed=3, batch_size=16,
                         chunk_size=5, device="cpu")
    assert got.shape == (40,) and got.dtype == np.float64
    torch_scores = vae_core.score(vae_core.load_checkpoint(checkpoint, "torch"), x, k=16, seed=3, device="cpu")
    np.testing.assert_allclose(got, torch_scores, rtol=RTOL)  # the same weights and seed: the same scores
    expected = -numpy_log_px(vae_core.read_checkpoint(checkpoint).weights, SPEC, x, 16, 3)
    np.testing.assert_allclose(got, expected, rtol=REF_RTOL)
    other_seed = vae_core.score(vae_core.load_checkpoint(checkpoint, backend), x, k=16, seed=4, device="cpu")
    assert not np.allclose(got, other_seed, rtol=RTOL)  # the seed is the noise: the check can fail


def test_k1_is_the_one_sample_negative_elbo_under_the_same_noise(backend, checkpoint, digits):
    # k = 1: one z = mu + sigma * eps per example, eps = iwae_noise(seed, ...), and the score is
    # -log p(x|z) - log p(z) + log q(z|x): the negative ELBO with its KL term sampled at that z.
    model = vae_core.load_checkpoint(checkpoint, backend)
    x = digits.x_test[:50]
    eps = iwae_noise(7, 0, len(x), 1, SPEC.latent_dim)[:, 0]  # (N, L): example i's one sample
    out = forward(backend, model, x, eps)  # the model's own forward pass at z = mu + sigma * eps
    mu, log_var = out["mu"].astype(np.float64), out["log_var"].astype(np.float64)  # (N, L)
    z = mu + np.exp(0.5 * log_var) * eps  # (N, L)
    recon = ref.reconstruction_nll(x, out["decoder_out"], SPEC.likelihood)  # (N,)
    neg_elbo = recon - log_standard_normal(z) + log_diag_normal(z, mu, log_var)  # (N,)
    np.testing.assert_allclose(vae_core.score(model, x, k=1, seed=7, device="cpu"), neg_elbo, rtol=RTOL)


def test_scores_are_iwae_nll_per_example(backend, checkpoint, digits):
    model = vae_core.load_checkpoint(checkpoint, backend)
    x = digits.x_test[:60]
    scores = vae_core.score(model, x, k=20, seed=1, device="cpu")
    result = iwae_nll(model, x, k=20, seed=1, device="cpu")
    np.testing.assert_array_equal(scores, -result.log_px)  # one estimator, read per example
    assert scores.mean() == pytest.approx(result.nll, rel=1e-12)  # the mean score is the IWAE NLL


class _Items:
    """A map-style dataset of (uint8 image (8, 8), label) items."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], 0


class _Batches:
    """A re-iterable of batches of 7 uint8 images (the scorer's batches are its own)."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __iter__(self):
        return (self.images[lo:lo + 7] for lo in range(0, len(self.images), 7))


def test_every_input_fit_accepts_gives_the_same_scores_and_a_map_is_read_a_batch_at_a_time(
        backend, checkpoint, digits, tmp_path, monkeypatch):
    model = vae_core.load_checkpoint(checkpoint, backend)
    images = np.round(digits.x_test[:45] * 255).astype(np.uint8).reshape(-1, 8, 8)  # (45, 8, 8) uint8
    options = dict(k=8, seed=2, batch_size=10, device="cpu")
    expected = vae_core.score(model, images.reshape(45, 64).astype(np.float32) / np.float32(255), **options)
    np.save(tmp_path / "x.npy", images)
    reads: list[int] = []
    take = MappedRows.take
    monkeypatch.setattr(MappedRows, "take", lambda self, p: (reads.append(len(p)), take(self, p))[1])
    mapped = vae_core.score(model, np.load(tmp_path / "x.npy", mmap_mode="r"), **options)  # a .npy map
    np.testing.assert_array_equal(mapped, expected)
    assert reads and max(reads) <= 10, reads  # read a batch at a time, never whole
    split = load_images(tmp_path / "x.npy", test_fraction=0.2)  # x_train: MappedRows of the rows left in the file
    rows = np.sort(np.random.default_rng(0).permutation(45)[9:])  # load_images' training rows, in file order
    assert isinstance(split.x_train, MappedRows)  # noise is per position in the set scored: score those rows
    np.testing.assert_array_equal(vae_core.score(model, split.x_train, **options),
                                  vae_core.score(model, images[rows], **options))
    for x in (images, images[..., None], _Items(images), _Batches(images)):  # uint8 images, a dataset, a stream
        np.testing.assert_array_equal(vae_core.score(model, x, **options), expected)


def test_bad_arguments_name_score(checkpoint, digits):
    model = vae_core.load_checkpoint(checkpoint, "torch")
    with pytest.raises(ValueError, match=r"score\.k must be an int >= 1; got 0"):
        vae_core.score(model, digits.x_test[:4], k=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 64\)"):
        vae_core.score(model, digits.x_test[:4, :50])
