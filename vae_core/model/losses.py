"""The VAE objective in NumPy float64: the golden reference both backends are tested against.

Reduction, everywhere in this library: **sum over features (pixels, latent dims), mean over the batch.**
The loss is the negative ELBO per example, in nats:

    recon_i = -log p(x_i | z_i)                   summed over the D pixels of example i
    kl_i    = KL(q(z | x_i) || N(0, I))           summed over the latent dims of example i
    loss    = mean_i (recon_i + beta * kl_i)

The Gaussian likelihoods keep the 0.5 * log(2 pi) constant per pixel, so they are true negative
log-likelihoods (they equal -scipy.stats.norm.logpdf summed over pixels). Dropping it would shift the
loss by 0.5 * D * log(2 pi) (720.4 nats for D = 784) and change no gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vae_core.model.spec import LIKELIHOODS

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


class NegativeELBO(NamedTuple):
    total: float  # mean over the batch of recon + beta * kl
    recon: float  # mean over the batch of the per-example reconstruction NLL
    kl: float  # mean over the batch of the per-example KL


def _f64(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def bernoulli_nll(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """-log Bernoulli(x | sigmoid(logits)), summed over features: (B, D) -> (B,).

    Per pixel: softplus(l) - x * l = max(l, 0) - x * l + log1p(exp(-|l|)), exact for any finite logit.
    """
    x, logits = _f64(x, logits)
    per_pixel = np.maximum(logits, 0.0) - x * logits + np.log1p(np.exp(-np.abs(logits)))
    return per_pixel.sum(axis=-1)


def gaussian_nll(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """-log N(x | mean, 1), summed over features: (B, D) -> (B,).

    Per pixel: 0.5 * (x - mean)^2 + 0.5 * log(2 pi).
    """
    x, mean = _f64(x, mean)
    return (0.5 * (x - mean) ** 2 + HALF_LOG_2PI).sum(axis=-1)


def gaussian_learned_nll(x: np.ndarray, mean: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """-log N(x | mean, exp(log_var)), summed over features: (B, D) -> (B,).

    Per pixel: 0.5 * (log_var + (x - mean)^2 * exp(-log_var)) + 0.5 * log(2 pi).
    """
    x, mean, log_var = _f64(x, mean, log_var)
    return (0.5 * (log_var + (x - mean) ** 2 * np.exp(-log_var)) + HALF_LOG_2PI).sum(axis=-1)


def reconstruction_nll(x: np.ndarray, decoder_out: np.ndarray, likelihood: str) -> np.ndarray:
    """Per-example reconstruction NLL for a decoder output of the spec's layout: (B, D) -> (B,).

    For "gaussian_learned", decoder_out is (B, 2D): means, then log-variances.
    """
    if likelihood == "bernoulli":
        return bernoulli_nll(x, decoder_out)
    if likelihood == "gaussian":
        return gaussian_nll(x, decoder_out)
    if likelihood == "gaussian_learned":
        d = np.shape(x)[-1]
        return gaussian_learned_nll(x, decoder_out[..., :d], decoder_out[..., d:])
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def kl_to_standard_normal(mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(log_var)) || N(0, I)), summed over latent dims: (B, L) -> (B,).

    Per dim: 0.5 * (mu^2 + exp(log_var) - 1 - log_var), written with expm1 so it stays exact
    (and >= 0) near log_var = 0.
    """
    mu, log_var = _f64(mu, log_var)
    return (0.5 * (mu**2 + np.expm1(log_var) - log_var)).sum(axis=-1)


def negative_elbo(x: np.ndarray, decoder_out: np.ndarray, mu: np.ndarray, log_var: np.ndarray,
                  *, likelihood: str = "bernoulli", beta: float = 1.0) -> NegativeELBO:
    """The training loss: mean over the batch of (recon + beta * KL), with both terms.

    Shapes: x (B, D), decoder_out (B, D) or (B, 2D), mu and log_var (B, L).
    """
    recon = reconstruction_nll(x, decoder_out, likelihood)  # (B,)
    kl = kl_to_standard_normal(mu, log_var)  # (B,)
    return NegativeELBO(float(np.mean(recon + beta * kl)), float(np.mean(recon)), float(np.mean(kl)))
