"""The VAE objective on TensorFlow tensors: the same math and reduction as `vae_core.model.losses`.

Reduction: sum over features (pixels, latent dims), mean over the batch. The per-example functions have the
names of `vae_core.model.losses` and return (B,) tensors; `negative_elbo` returns scalar tensors (total, recon, kl).
Inputs may be NumPy arrays or tensors; they are computed in the decoder output's float dtype (float32 for
bfloat16/float16 outputs, so mixed precision keeps a float32 loss).
"""
from __future__ import annotations

import functools
import math

import tensorflow as tf

from vae_core.model.spec import LIKELIHOODS

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _dtype_of(t) -> tf.DType:
    dtype = getattr(t, "dtype", None)
    dtype = tf.as_dtype(dtype) if dtype is not None else tf.float32
    return tf.float64 if dtype == tf.float64 else tf.float32


def _cast(dtype: tf.DType, *tensors):
    return tuple(tf.cast(tf.convert_to_tensor(t), dtype) for t in tensors)


def bernoulli_nll(x, logits) -> tf.Tensor:
    """-log Bernoulli(x | sigmoid(logits)) summed over features: (B, D) -> (B,).

    `tf.nn.sigmoid_cross_entropy_with_logits` computes max(l, 0) - x * l + log1p(exp(-|l|)) per pixel:
    exact for saturated logits (no sigmoid, no clipping).
    """
    x, logits = _cast(_dtype_of(logits), x, logits)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=-1)  # (B,)


def gaussian_nll(x, mean) -> tf.Tensor:
    """-log N(x | mean, 1) summed over features: (B, D) -> (B,). Keeps 0.5 * log(2 pi) per pixel."""
    x, mean = _cast(_dtype_of(mean), x, mean)
    d = tf.cast(tf.shape(x)[-1], x.dtype)
    return 0.5 * tf.reduce_sum(tf.square(x - mean), axis=-1) + d * HALF_LOG_2PI  # (B,)


def gaussian_learned_nll(x, mean, log_var) -> tf.Tensor:
    """-log N(x | mean, exp(log_var)) summed over features: (B, D) -> (B,)."""
    x, mean, log_var = _cast(_dtype_of(mean), x, mean, log_var)
    d = tf.cast(tf.shape(x)[-1], x.dtype)
    per_pixel = log_var + tf.square(x - mean) * tf.exp(-log_var)  # (B, D)
    return 0.5 * tf.reduce_sum(per_pixel, axis=-1) + d * HALF_LOG_2PI  # (B,)


def reconstruction_nll(x, decoder_out, likelihood: str) -> tf.Tensor:
    """Per-example reconstruction NLL for a decoder output in the spec's layout: (B,).

    For "gaussian_learned", decoder_out is (B, 2D): means, then log-variances.
    """
    if likelihood == "bernoulli":
        return bernoulli_nll(x, decoder_out)
    if likelihood == "gaussian":
        return gaussian_nll(x, decoder_out)
    if likelihood == "gaussian_learned":
        x = tf.convert_to_tensor(x)
        d = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        return gaussian_learned_nll(x, decoder_out[..., :d], decoder_out[..., d:])  # means (B, D), log-vars (B, D)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def kl_to_standard_normal(mu, log_var) -> tf.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) summed over latent dims: (B, L) -> (B,).

    Per dim: 0.5 * (mu^2 + (expm1(log_var) - log_var)), the reference's expm1 form, as the torch backend computes
    it. The difference expm1(v) - v (~v^2/2, between two numbers ~v) is taken in float64: in float32 it loses most
    of its digits for the small |v| of inactive latent units. It is a (B, L) tensor, small next to the decoder's
    (B, D) work.
    """
    mu, log_var = _cast(_dtype_of(mu), mu, log_var)
    wide = tf.cast(log_var, tf.float64)  # (B, L)
    excess = tf.cast(tf.math.expm1(wide) - wide, log_var.dtype)  # (B, L): exp(v) - 1 - v >= 0
    return tf.reduce_sum(0.5 * (tf.square(mu) + excess), axis=-1)  # (B,)


def per_example(x, decoder_out, mu, log_var, *, likelihood: str = "bernoulli") -> tuple[tf.Tensor, tf.Tensor]:
    """(recon (B,), kl (B,)) in the decoder output's float dtype (float32 for bfloat16/float16 outputs)."""
    x = tf.convert_to_tensor(x)
    recon = reconstruction_nll(x, decoder_out, likelihood)  # (B,)
    return recon, tf.cast(kl_to_standard_normal(mu, log_var), recon.dtype)  # (B,) each


def negative_elbo(x, decoder_out, mu, log_var, *, likelihood: str = "bernoulli", beta: float = 1.0,
                  rows=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(total, recon, kl) scalar tensors: batch means of recon + beta * kl, recon and kl.

    Shapes: x (B, D), decoder_out (B, D) or (B, 2D), mu and log_var (B, L).
    rows: None, or a () int tensor: only the first `rows` examples count (a batch padded to a fixed shape); the
        means are over those, and the padding rows get exactly zero gradient.
    """
    recon, kl = per_example(x, decoder_out, mu, log_var, likelihood=likelihood)  # (B,) each
    mean = functools.partial(_batch_mean, rows=rows)
    return mean(recon + beta * kl), mean(recon), mean(kl)  # () each


def _batch_mean(per_example: tf.Tensor, rows=None) -> tf.Tensor:
    """Mean over the batch (over its first `rows` examples if given), accumulated in float64.

    Besides the extra precision, the float64 cast stops XLA from merging this reduction with the sum over
    pixels into one float32 reduction over B*D terms, which loses accuracy on CPU. With rows = B the result and
    its gradient are those of the plain mean, bit for bit.
    """
    values = tf.cast(per_example, tf.float64)  # (B,)
    if rows is None:
        return tf.cast(tf.reduce_mean(values), per_example.dtype)  # ()
    keep = tf.range(tf.shape(values)[0]) < tf.cast(rows, tf.int32)  # (B,)
    total = tf.reduce_sum(tf.where(keep, values, tf.zeros_like(values)))  # ()
    return tf.cast(total / tf.cast(rows, tf.float64), per_example.dtype)  # ()
