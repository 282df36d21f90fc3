"""IWAE with memory bounded for any k (issue 32, sizes before memory): the noise is drawn a block of chunks at a time
(`vae_core.metrics.estimators.iwae_noise_blocks`), and the estimate is the one the whole noise at once gives."""
import tracemalloc

import numpy as np
import pytest

from vae_core import VAESpec, build
from vae_core.data import load_dataset
from vae_core.metrics import estimators, iwae_nll, iwae_noise

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=3)  # the 8x8 digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_noise_blocks_join_to_the_whole_noise(monkeypatch):
    monkeypatch.setattr(estimators, "NOISE_BLOCK_VALUES", 4 * 3 * 10)  # a batch of 4 images: 10 samples a block
    seen: dict[int, list[np.ndarray]] = {}
    for start, stop, eps in estimators.iwae_noise_blocks(7, 9, 23, 3, batch_size=4, chunk_size=5):
        assert eps.dtype == np.float32 and eps.shape[0] == stop - start and eps.shape[2] == 3
        seen.setdefault(start, []).append(eps)
    assert sorted(seen) == [0, 4, 8]
    assert [b.shape[1] for b in seen[0]] == [10, 10, 3]  # whole chunks of 5, the last block what is left of k
    assert [b.shape[1] for b in seen[8]] == [23]  # one image: its 23 samples fit in one block
    for start, blocks in seen.items():
        np.testing.assert_array_equal(np.concatenate(blocks, axis=1), iwae_noise(7, start, min(start + 4, 9), 23, 3))


def test_blocks_of_noise_give_the_unchunked_estimate(backend, digits, monkeypatch):
    model = build(backend, SPEC, seed=1)
    x = digits.x_test[:12]
    whole = iwae_nll(model, x, k=60, chunk_size=60, batch_size=5, seed=3, device="cpu")  # one chunk, one block
    chunked = iwae_nll(model, x, k=60, chunk_size=7, batch_size=5, seed=3, device="cpu")  # one block, 9 chunks
    monkeypatch.setattr(estimators, "NOISE_BLOCK_VALUES", 5 * 3 * 14)  # blocks of 2 chunks: 14 samples per image
    blocked = iwae_nll(model, x, k=60, chunk_size=7, batch_size=5, seed=3, device="cpu")
    np.testing.assert_allclose(blocked.log_px, chunked.log_px, rtol=1e-12)  # the same chunks, the same sums
    np.testing.assert_allclose(blocked.log_px, whole.log_px, rtol=1e-6)  # float32 network, float64 log-sum-exp
    assert blocked.k == 60 and blocked.n == 12


def test_the_noise_of_a_huge_k_is_never_held_whole(backend):
    # k = 10**6 samples of 32 latents for one image: 128 MB of noise at once before; now two 16 MiB blocks at most
    # (NumPy's allocations are what tracemalloc sees; the framework's are the decoder's batch_size * chunk_size rows)
    model = build(backend, SPEC.replace(latent_dim=32, hidden_dims=(8,)), seed=0)
    x = np.full((1, 64), 0.5, np.float32)
    k = 10 ** 6
    iwae_nll(model, x, k=20_000, chunk_size=20_000, batch_size=1, seed=0, device="cpu")  # TF compiles the chunk here
    tracemalloc.start()
    try:
        result = iwae_nll(model, x, k=k, chunk_size=20_000, batch_size=1, seed=0, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(result.nll) and result.k == k
    whole = k * 32 * 4
    assert peak < whole / 2, f"peak {peak / 2**20:.0f} MiB of NumPy memory; the whole noise is {whole / 2**20:.0f} MiB"
