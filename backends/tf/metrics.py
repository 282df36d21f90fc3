"""IWAE negative log-likelihood and active units for the TF/Keras VAE.

The torch backend's `metrics` module has the same functions and signatures. This module holds the network math
of one chunk of samples (XLA-compiled, once per model and input shape); the checks, the noise, the loop over
images and chunks and the reductions are `vae_core.metrics`' (see its docstring for the estimator). Float32
network, float64 log-sum-exp, inference mode.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import tensorflow as tf

from backends.tf.device import exact_fp32, resolve_device
from backends.tf.losses import HALF_LOG_2PI, reconstruction_nll
from backends.tf.model import check_model
from vae_core.data.rows import check_data
from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         ActiveUnits, IWAEResult, check_active_args, check_batch_size, check_iwae_args,
                                         count_active_units, run_iwae)

_COMPILED: "weakref.WeakKeyDictionary[Any, tuple[Any, Any]]" = weakref.WeakKeyDictionary()
# On a CPU, a conv model decodes a chunk of samples in groups of images of at most this many decoder rows (or one
# image, for chunk_size above it): XLA's CPU convolutions hold a large buffer per decoder row, so a whole default
# chunk (100 images x 100 samples) would take far more memory than the model (README, "Conv models"). The MLP's
# rows are small, and a GPU's memory is another budget: they decode a chunk at once.
CONV_DECODER_ROWS = 2000


def log_weights(model, x: tf.Tensor, mu: tf.Tensor, log_var: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """log w = log p(x|z) + log N(z; 0, I) − log q(z|x) at z = mu + exp(log_var / 2) * eps: (B, c) float32.

    x (B, D), mu and log_var (B, L), eps (B, c, L). Every density is normalised (½·log 2π per dim kept).
    log q(z|x) uses eps = (z − mu) / std directly: −½·Σ(eps² + log_var) − L·½·log 2π.
    """
    b, c, latent = tf.shape(eps)[0], tf.shape(eps)[1], model.spec.latent_dim
    z = mu[:, None, :] + tf.exp(0.5 * log_var)[:, None, :] * eps  # (B, c, L)
    out = tf.reshape(model.decode(tf.reshape(z, (-1, latent))), (b, c, -1))  # (B, c, D) or (B, c, 2D)
    xs = tf.broadcast_to(x[:, None, :], (b, c, model.spec.input_dim))  # (B, c, D): x for each sample
    log_px_z = -reconstruction_nll(xs, out, model.spec.likelihood)  # (B, c)
    log_pz = -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - latent * HALF_LOG_2PI  # (B, c)
    log_qz = -0.5 * tf.reduce_sum(tf.square(eps) + log_var[:, None, :], axis=-1) - latent * HALF_LOG_2PI  # (B, c)
    return log_px_z + log_pz - log_qz  # (B, c)


def _compiled(model) -> tuple[Any, Any]:
    """(encode: x (B, D) -> mu, log_var; chunk: x, mu, log_var, eps (B, c, L) -> log Σ_c w (B,) float64)."""
    fns = _COMPILED.get(model)
    if fns is None:
        @tf.function(jit_compile=True, reduce_retracing=True)
        def encode(x):
            return model.encode(x)  # (B, L), (B, L)

        @tf.function(jit_compile=True, reduce_retracing=True)
        def chunk(x, mu, log_var, eps):
            return tf.reduce_logsumexp(tf.cast(log_weights(model, x, mu, log_var, eps), tf.float64), axis=1)  # (B,)

        fns = _COMPILED[model] = (encode, chunk)
    return fns


def iwae_nll(model, x: np.ndarray, *, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK_SIZE,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, progress: bool = False,
             device: str = "auto") -> IWAEResult:
    """IWAE NLL = −log p̂(x), mean over the images of x (N, D), in nats; see `vae_core.metrics.iwae_nll`."""
    check_model(model, "iwae_nll")
    x = check_data(x, model.spec, "x", stream=True)  # a .npy map, a dataset, a stream: read a batch at a time
    check_iwae_args(k, chunk_size, batch_size, seed, progress)
    encode_fn, chunk_fn = _compiled(model)

    def encode(xb: np.ndarray) -> tuple[tf.Tensor, ...]:
        xt = tf.constant(xb)  # (B, D)
        return (xt, *encode_fn(xt))  # x (B, D), mu (B, L), log_var (B, L)

    device_name = resolve_device(device)
    grouped = model.spec.architecture == "conv" and "CPU" in device_name.upper()

    def chunk_logsumexp(state: tuple[tf.Tensor, ...], eps: np.ndarray) -> np.ndarray:
        group = max(1, CONV_DECODER_ROWS // eps.shape[1]) if grouped else len(eps)  # images per decoder pass
        return np.concatenate([chunk_fn(*(t[s:s + group] for t in state), tf.constant(eps[s:s + group])).numpy()
                               for s in range(0, len(eps), group)])  # (B,)

    with tf.device(device_name), exact_fp32(device_name):
        return run_iwae(x, model.spec.latent_dim, k=k, chunk_size=chunk_size, batch_size=batch_size, seed=seed,
                        progress=progress, encode=encode, chunk_logsumexp=chunk_logsumexp)


def posterior_means(model, x: np.ndarray, batch_size: int = 1000, *, device: str = "auto") -> np.ndarray:
    """E_q[z|x], the encoder's mu, for every image of x (N, D): (N, L) float32."""
    check_model(model, "posterior_means")
    x = check_data(x, model.spec, "x")
    check_batch_size("posterior_means", batch_size)
    encode_fn = _compiled(model)[0]
    device_name = resolve_device(device)
    with tf.device(device_name), exact_fp32(device_name):
        mus = [encode_fn(tf.constant(x[s:s + batch_size]))[0].numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(mus)  # (N, L)


def active_units(model, x: np.ndarray, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000,
                 device: str = "auto") -> ActiveUnits:
    """Units whose Var_x(E_q[z|x]) over the images of x exceeds `threshold` (Burda et al. 2015: 0.01)."""
    check_active_args(threshold, batch_size)
    return count_active_units(posterior_means(model, x, batch_size, device=device), threshold)
