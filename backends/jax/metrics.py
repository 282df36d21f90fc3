"""IWAE negative log-likelihood and active units for the JAX VAE.

The torch and TF backends' `metrics` modules have the same functions and signatures. This module holds the
network math of one chunk of samples (XLA-compiled, once per model and input shape); the checks, the noise, the
loop over images and chunks and the reductions are `vae_core.metrics`' (see its docstring for the estimator).
Float32 network, float64 log-sum-exp (on the host), no gradients.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from backends.jax.device import exact_fp32, resolve_device, to_device
from backends.jax.losses import HALF_LOG_2PI, reconstruction_nll
from backends.jax.model import VAE, check_model
from vae_core.data.rows import check_data
from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         ActiveUnits, IWAEResult, check_active_args, check_batch_size, check_iwae_args,
                                         count_active_units, run_iwae)

# The model is an argument of these programs (nnx.jit passes its state in), so they follow its weights as they
# change; nnx.jit compiles once per model structure and input shape.
_encode = nnx.jit(lambda model, x: model.encode(x))


def log_weights(model: VAE, x: jax.Array, mu: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
    """log w = log p(x|z) + log N(z; 0, I) − log q(z|x) at z = mu + exp(log_var / 2) * eps: (B, c) float32.

    x (B, D), mu and log_var (B, L), eps (B, c, L). Every density is normalised (½·log 2π per dim kept).
    log q(z|x) uses eps = (z − mu) / std directly: −½·Σ(eps² + log_var) − L·½·log 2π.
    """
    b, c, latent = eps.shape
    z = mu[:, None, :] + jnp.exp(0.5 * log_var)[:, None, :] * eps  # (B, c, L)
    out = model.decode(z.reshape(b * c, latent)).reshape(b, c, -1)  # (B, c, D) or (B, c, 2D)
    log_px_z = -reconstruction_nll(x[:, None, :], out, model.spec.likelihood)  # (B, c): x broadcast over samples
    log_pz = -0.5 * jnp.square(z).sum(-1) - latent * HALF_LOG_2PI  # (B, c)
    log_qz = -0.5 * (jnp.square(eps) + log_var[:, None, :]).sum(-1) - latent * HALF_LOG_2PI  # (B, c)
    return log_px_z + log_pz - log_qz  # (B, c)


_log_weights = nnx.jit(log_weights)


def iwae_nll(model: VAE, x: np.ndarray, *, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK_SIZE,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, progress: bool = False,
             device: str = "auto") -> IWAEResult:
    """IWAE NLL = −log p̂(x), mean over the images of x (N, D), in nats; see `vae_core.metrics.iwae_nll`."""
    check_model(model, "iwae_nll")
    x = check_data(x, model.spec, "x", stream=True)  # a .npy map, a dataset, a stream: read a batch at a time
    check_iwae_args(k, chunk_size, batch_size, seed, progress)
    dev = resolve_device(device)

    def encode(xb: np.ndarray) -> tuple[jax.Array, ...]:
        xt = to_device(xb, dev)  # (B, D)
        return (xt, *_encode(model, xt))  # x (B, D), mu (B, L), log_var (B, L)

    def chunk_logsumexp(state: tuple[jax.Array, ...], eps: np.ndarray) -> np.ndarray:
        lw = np.asarray(_log_weights(model, *state, to_device(eps, dev)), np.float64)  # (B, c)
        top = lw.max(axis=1, keepdims=True)  # (B, 1)
        return (top[:, 0] + np.log(np.exp(lw - top).sum(axis=1)))  # (B,) in float64

    with exact_fp32(dev):
        return run_iwae(x, model.spec.latent_dim, k=k, chunk_size=chunk_size, batch_size=batch_size, seed=seed,
                        progress=progress, encode=encode, chunk_logsumexp=chunk_logsumexp)


def posterior_means(model: VAE, x: np.ndarray, batch_size: int = 1000, *, device: str = "auto") -> np.ndarray:
    """E_q[z|x], the encoder's mu, for every image of x (N, D): (N, L) float32."""
    check_model(model, "posterior_means")
    x = check_data(x, model.spec, "x")
    check_batch_size("posterior_means", batch_size)
    dev = resolve_device(device)
    with exact_fp32(dev):
        mus = [np.asarray(_encode(model, to_device(x[s:s + batch_size], dev))[0]) for s in range(0, len(x), batch_size)]
    return np.concatenate(mus).astype(np.float32)  # (N, L)


def active_units(model: VAE, x: np.ndarray, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 device: str = "auto") -> ActiveUnits:
    """Units whose Var_x(E_q[z|x]) over the images of x exceeds `threshold` (Burda et al. 2015: 0.01)."""
    check_active_args(threshold, batch_size)
    return count_active_units(posterior_means(model, x, batch_size, device=device), threshold)
