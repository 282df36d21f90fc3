"""The metrics for a model of any backend: each function hands the model to its backend's `metrics` module, which
has the same functions with the same signatures (the network math per chunk), on top of `estimators`."""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         ActiveUnits, IWAEResult)
from vae_core.registry import backend_of


def iwae_nll(model: Any, x: np.ndarray, *, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK_SIZE,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, progress: bool = False,
             device: str = "auto") -> IWAEResult:
    """IWAE negative log-likelihood NLL = −log p̂(x) (nats, mean over the images of x) for either backend.

    x: (N, D) float32/float64 or uint8 images. k: samples per image; chunk_size: samples per decoder pass;
    batch_size: images per batch; seed: the noise (see `iwae_noise`); progress: a tqdm bar.
    """
    return backend_of(model)[1].metrics.iwae_nll(model, x, k=k, chunk_size=chunk_size, batch_size=batch_size,
                                                 seed=seed, progress=progress, device=device)


def posterior_means(model: Any, x: np.ndarray, batch_size: int = 1000, *, device: str = "auto") -> np.ndarray:
    """E_q[z|x] = the encoder's mu for every image of x: (N, latent_dim) float32, for either backend."""
    return backend_of(model)[1].metrics.posterior_means(model, x, batch_size, device=device)


def active_units(model: Any, x: np.ndarray, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 device: str = "auto") -> ActiveUnits:
    """Active latent units of a model of either backend on x (see `count_active_units`)."""
    return backend_of(model)[1].metrics.active_units(model, x, threshold=threshold, batch_size=batch_size, device=device)
