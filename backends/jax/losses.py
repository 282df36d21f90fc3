"""The VAE objective on JAX arrays: the math and reduction of `vae_core.model.losses`, op for op.

Sum over features, mean over the batch. Per-example functions return (B,) arrays; `negative_elbo` returns scalar
arrays (total, recon, kl). Gaussian terms keep 0.5 * log(2 pi) per pixel. Every function is pure and traceable
(`jax.jit`, `jax.grad`, `jax.vmap`).

Float64 inside a float32 program: JAX computes in float64 only where `jax_enable_x64` is on, and that switch is
process-wide. The two float64 pieces here (the KL's expm1(v) - v and the batch mean) turn it on for their own
ops alone with the `jax.enable_x64(True)` context while they are traced: the traced program holds those few
float64 ops, and nothing else in the process sees the switch.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vae_core.model.spec import LIKELIHOODS

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def bernoulli_nll(x: jax.Array, logits: jax.Array) -> jax.Array:
    """-log Bernoulli(x | sigmoid(logits)), summed over features: (B, D) -> (B,). Stable for any finite logit.

    Per pixel (max(l, 0) - x * l) + log1p(exp(-|l|)), in that order: the formula of vae_core.model.losses, exact
    for small losses (x = 0 with a large negative logit), as the torch and TF backends compute it."""
    return (jnp.maximum(logits, 0) - x * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))).sum(-1)  # (B,)


def gaussian_nll(x: jax.Array, mean: jax.Array) -> jax.Array:
    """-log N(x | mean, 1), summed over features: (B, D) -> (B,)."""
    return (0.5 * jnp.square(x - mean) + HALF_LOG_2PI).sum(-1)  # (B,)


def gaussian_learned_nll(x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """-log N(x | mean, exp(log_var)), summed over features: (B, D) -> (B,)."""
    return (0.5 * (log_var + jnp.square(x - mean) * jnp.exp(-log_var)) + HALF_LOG_2PI).sum(-1)  # (B,)


def reconstruction_nll(x: jax.Array, decoder_out: jax.Array, likelihood: str) -> jax.Array:
    """Per-example reconstruction NLL for the spec's decoder layout: (B,). decoder_out is (B, 2D) if learned."""
    if likelihood == "bernoulli":
        return bernoulli_nll(x, decoder_out)
    if likelihood == "gaussian":
        return gaussian_nll(x, decoder_out)
    if likelihood == "gaussian_learned":
        d = x.shape[-1]
        return gaussian_learned_nll(x, decoder_out[..., :d], decoder_out[..., d:])
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def kl_to_standard_normal(mu: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mu, exp(log_var)) || N(0, I)) summed over latent dims: (B, L) -> (B,).

    Per dim: 0.5 * (mu^2 + (expm1(log_var) - log_var)), the reference's expm1 form. The difference expm1(v) - v
    (~v^2/2, between two numbers ~v) is taken in float64, scoped to these ops (module docstring): in float32 it
    would lose most of its digits for small |v| (10% off at |v| = 1e-6). It is a (B, L) array, small next to the
    decoder's (B, D) work.
    """
    with jax.enable_x64(True):
        wide = log_var.astype(jnp.float64)  # (B, L)
        excess = (jnp.expm1(wide) - wide).astype(log_var.dtype)  # (B, L): exp(v) - 1 - v >= 0
    return (0.5 * (jnp.square(mu) + excess)).sum(-1)  # (B,)


def per_example(x: jax.Array, decoder_out: jax.Array, mu: jax.Array, log_var: jax.Array,
                *, likelihood: str = "bernoulli") -> tuple[jax.Array, jax.Array]:
    """(recon (B,), kl (B,)), computed in at least float32 even when the inputs are bfloat16."""
    recon = reconstruction_nll(_wide(x), _wide(decoder_out), likelihood)  # (B,)
    kl = kl_to_standard_normal(_wide(mu), _wide(log_var))  # (B,)
    return recon, kl


def _wide(a: jax.Array) -> jax.Array:
    """Half-precision arrays as float32; float32 and float64 unchanged."""
    a = jnp.asarray(a)
    return a.astype(jnp.float32) if a.dtype in (jnp.bfloat16, jnp.float16) else a


def _batch_mean(values: jax.Array, rows: jax.Array | int | None = None) -> jax.Array:
    """Mean over the batch (over its first `rows` examples if given), accumulated in float64 and rounded back to
    the values' dtype, as TF's; the padding rows of a fixed-shape batch get exactly zero gradient."""
    with jax.enable_x64(True):
        wide = values.astype(jnp.float64)  # (B,)
        if rows is None:
            return jnp.mean(wide).astype(values.dtype)  # ()
        keep = jnp.arange(values.shape[0]) < rows  # (B,)
        total = jnp.sum(jnp.where(keep, wide, 0.0))  # ()
        return (total / jnp.asarray(rows, jnp.float64)).astype(values.dtype)  # ()


def negative_elbo(x: jax.Array, decoder_out: jax.Array, mu: jax.Array, log_var: jax.Array,
                  *, likelihood: str = "bernoulli", beta: float = 1.0,
                  rows: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The training loss: mean over the batch of (recon + beta * KL), with both terms: (total, recon, kl) scalars.

    Shapes: x (B, D), decoder_out (B, D) or (B, 2D), mu and log_var (B, L).
    rows: None, or the number of leading examples that count (a batch padded to a fixed shape); the means are over
        those, and the padding rows get zero gradient.
    """
    recon, kl = per_example(x, decoder_out, mu, log_var, likelihood=likelihood)  # (B,) each
    return _batch_mean(recon + beta * kl, rows), _batch_mean(recon, rows), _batch_mean(kl, rows)
