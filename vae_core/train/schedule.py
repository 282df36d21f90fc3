"""What each epoch sees, as functions of (seed, epoch) alone: the order, the noise, the binarized pixels.

Every backend draws these from NumPy, so the backends see the same numbers and a resumed run repeats an
uninterrupted one.
"""
from __future__ import annotations

import numpy as np

from vae_core.data.dataset import binarize


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training examples in `epoch` (0-based): a function of (seed, epoch) alone.

    Both backends use it, so they see the same batches, and a resumed run sees the same order as an
    uninterrupted one.
    """
    return np.random.default_rng([seed, epoch]).permutation(n)

def epoch_binarized(x: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Dynamic binarization: the training set of `epoch` (0-based) as one fresh Bernoulli sample per pixel.

    x: (N, D) float32 probabilities in [0, 1], or uint8 images (probability x / 255); returns (N, D) 0/1 in
    float32, or for uint8 images in uint8 as 0/255 (what the per-batch x / 255 turns into exactly 0 and 1): row i
    for example i (the epoch's order is applied after). A function of (seed, epoch) alone, so both backends train
    on the same 0/1 images and a resumed run repeats an uninterrupted one. Used by `fit` when
    `TrainConfig.dynamic_binarization` is on.
    """
    rng = np.random.default_rng([seed, epoch, 3])
    if x.dtype == np.uint8:  # the same draws as for the float32 images x / 255
        return (rng.random(x.shape, dtype=np.float32) < x.astype(np.float32) / np.float32(255.0)).astype(np.uint8) \
            * np.uint8(255)
    return binarize(x, rng)

def epoch_noise(seed: int, epoch: int, n: int, latent_dim: int) -> np.ndarray:
    """Shared reparameterisation noise for one epoch: (n, latent_dim) float32 standard normals.

    Row i is the eps of the i-th example in that epoch's order. With `fit(..., shared_noise=True)` both
    backends use it, so their training runs can be compared step by step (lockstep).
    """
    return np.random.default_rng([seed, epoch, 1]).standard_normal((n, latent_dim), dtype=np.float32)

def eval_noise(seed: int, n: int, latent_dim: int) -> np.ndarray:
    """The eps of `evaluate(seed=seed)` and of fit's validation: (n, latent_dim) float32, row i for example i.

    One NumPy stream for both backends, so they evaluate a model on the same numbers.
    """
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)
