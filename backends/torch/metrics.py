"""IWAE negative log-likelihood and active units for the torch VAE.

The TF backend's `metrics` module has the same functions and signatures. This module holds the network math
of one chunk of samples; the checks, the noise, the loop over images and chunks and the reductions are
`vae_core.metrics`' (see its docstring for the estimator). Float32 network, float64 log-sum-exp, no gradients,
eval mode; the model is moved to `device`.
"""
from __future__ import annotations

import numpy as np
import torch

from backends.torch.device import exact_fp32, resolve_device, to_device
from backends.torch.losses import HALF_LOG_2PI, reconstruction_nll
from backends.torch.model import VAE, check_model, eval_mode
from vae_core.data.rows import check_data
from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         ActiveUnits, IWAEResult, check_active_args, check_batch_size, check_iwae_args,
                                         count_active_units, run_iwae)


def log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
    """log w = log p(x|z) + log N(z; 0, I) − log q(z|x) at z = mu + exp(log_var / 2) * eps: (B, c) float32.

    x (B, D), mu and log_var (B, L), eps (B, c, L). Every density is normalised (½·log 2π per dim kept).
    log q(z|x) uses eps = (z − mu) / std directly: −½·Σ(eps² + log_var) − L·½·log 2π.
    """
    b, c, latent = eps.shape
    z = mu[:, None, :] + torch.exp(0.5 * log_var)[:, None, :] * eps  # (B, c, L)
    out = model.decode(z.reshape(b * c, latent)).reshape(b, c, -1)  # (B, c, D) or (B, c, 2D)
    log_px_z = -reconstruction_nll(x[:, None, :], out, model.spec.likelihood)  # (B, c): x broadcast over samples
    log_pz = -0.5 * z.square().sum(-1) - latent * HALF_LOG_2PI  # (B, c)
    log_qz = -0.5 * (eps.square() + log_var[:, None, :]).sum(-1) - latent * HALF_LOG_2PI  # (B, c)
    return log_px_z + log_pz - log_qz  # (B, c)


def iwae_nll(model: VAE, x: np.ndarray, *, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK_SIZE,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, progress: bool = False,
             device: str = "auto") -> IWAEResult:
    """IWAE NLL = −log p̂(x), mean over the images of x (N, D), in nats; see `vae_core.metrics.iwae_nll`."""
    check_model(model, "iwae_nll")
    x = check_data(x, model.spec, "x", stream=True)  # a .npy map, a dataset, a stream: read a batch at a time
    check_iwae_args(k, chunk_size, batch_size, seed, progress)
    dev = resolve_device(device)

    def encode(xb: np.ndarray) -> tuple[torch.Tensor, ...]:
        xt = to_device(xb, dev)  # (B, D)
        return (xt, *model.encode(xt))  # x (B, D), mu (B, L), log_var (B, L)

    def chunk_logsumexp(state: tuple[torch.Tensor, ...], eps: np.ndarray) -> np.ndarray:
        lw = log_weights(model, *state, torch.from_numpy(eps).to(dev))  # (B, c)
        return torch.logsumexp(lw.double(), dim=1).cpu().numpy()  # (B,)

    with exact_fp32(dev), eval_mode(model):
        model.to(dev)
        return run_iwae(x, model.spec.latent_dim, k=k, chunk_size=chunk_size, batch_size=batch_size, seed=seed,
                        progress=progress, encode=encode, chunk_logsumexp=chunk_logsumexp)


def posterior_means(model: VAE, x: np.ndarray, batch_size: int = 1000, *, device: str = "auto") -> np.ndarray:
    """E_q[z|x], the encoder's mu, for every image of x (N, D): (N, L) float32."""
    check_model(model, "posterior_means")
    x = check_data(x, model.spec, "x")
    check_batch_size("posterior_means", batch_size)
    dev = resolve_device(device)
    with exact_fp32(dev), eval_mode(model):
        model.to(dev)
        mus = [model.encode(to_device(x[s:s + batch_size], dev))[0].cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(mus).numpy()  # (N, L)


def active_units(model: VAE, x: np.ndarray, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 device: str = "auto") -> ActiveUnits:
    """Units whose Var_x(E_q[z|x]) over the images of x exceeds `threshold` (Burda et al. 2015: 0.01)."""
    check_active_args(threshold, batch_size)
    return count_active_units(posterior_means(model, x, batch_size, device=device), threshold)
