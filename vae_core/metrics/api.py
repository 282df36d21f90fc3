"""The metrics for a model of any backend: each function hands the model to its backend's `metrics` module, which
has the same functions with the same signatures (the network math per chunk), on top of `estimators`. `score` is
`iwae_nll`'s per-example estimate, negated: the one estimator, read per example."""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         SCORE_K, ActiveUnits, IWAEResult, check_iwae_args)
from vae_core.registry import backend_of


def iwae_nll(model: Any, x: np.ndarray, *, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK_SIZE,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, progress: bool = False,
             device: str = "auto") -> IWAEResult:
    """IWAE negative log-likelihood NLL = −log p̂(x) (nats, mean over the images of x) for either backend.

    x: (N, D) float32/float64 or uint8 images, or what `fit` reads a batch at a time (a .npy map, a map-style
    dataset, an iterable of batches), read here a batch at a time too. k: samples per image; chunk_size: samples per
    decoder pass; batch_size: images per batch; seed: the noise (see `iwae_noise`); progress: a tqdm bar.
    """
    return backend_of(model)[1].metrics.iwae_nll(model, x, k=k, chunk_size=chunk_size, batch_size=batch_size,
                                                 seed=seed, progress=progress, device=device)


def score(model: Any, x: Any, *, k: int = SCORE_K, seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE,
          chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False, device: str = "auto") -> np.ndarray:
    """Per-example scores of x for a model of either backend: (N,) float64, −log p̂(x) in nats, higher = less likely.

    The importance-weighted estimate of `iwae_nll` for each example (k = 1: the one-sample negative ELBO, with the
    KL term sampled at the same z), so `score(...).mean()` is `iwae_nll(...).nll` for the same k and seed. The
    noise comes from NumPy, seeded per example (`iwae_noise`), so both backends give the same scores for the same
    weights and seed.
    x: what `fit` accepts: (N, D) rows or images, float32/float64 or uint8 (read as x / 255); a `.npy` map
    (`np.load(path, mmap_mode="r")`, `load_images`' `MappedRows`), a map-style dataset, or an iterable of batches,
    read a batch at a time and never held whole. k: samples per example; chunk_size: samples per decoder pass;
    batch_size: examples per batch; progress: a tqdm bar.
    A score is a poor outlier test on its own: a VAE can give simpler images of another dataset higher
    likelihoods than its own test set (docs: Scores for new data).
    """
    check_iwae_args(k, chunk_size, batch_size, seed, progress, owner="score")
    result = backend_of(model)[1].metrics.iwae_nll(model, x, k=k, chunk_size=chunk_size, batch_size=batch_size,
                                                   seed=seed, progress=progress, device=device)
    return -result.log_px  # (N,)


def posterior_means(model: Any, x: np.ndarray, batch_size: int = 1000, *, device: str = "auto") -> np.ndarray:
    """E_q[z|x] = the encoder's mu for every image of x: (N, latent_dim) float32, for either backend."""
    return backend_of(model)[1].metrics.posterior_means(model, x, batch_size, device=device)


def active_units(model: Any, x: np.ndarray, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 device: str = "auto") -> ActiveUnits:
    """Active latent units of a model of either backend on x (see `count_active_units`)."""
    return backend_of(model)[1].metrics.active_units(model, x, threshold=threshold, batch_size=batch_size, device=device)
