"""The model's forward pass in float64 NumPy from neutral weights: the reference every backend and every exported
artifact is compared with.

Written from `spec.layers()` and the geometry of `vae_core.model.architecture` alone (explicit zero padding, "valid"
stride-2 convolutions, transposed convolutions cropped by the same amounts), so it pins what the backends must compute
without either framework's conv. The parity suite (`tests/parity`) checks both backends' `forward` against
`reference_forward`; `vae_core.deploy` checks exported files against `reference_encode` and `reference_decode`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from vae_core.model.architecture import CONV, CONV_TRANSPOSE
from vae_core.model.spec import VAESpec

HEADS = ("encoder.mu", "encoder.log_var")  # the two encoder layers that read the last hidden layer side by side


def conv2d(h: np.ndarray, kernel: np.ndarray, pad) -> np.ndarray:
    """Stride-2 cross-correlation of (B, h, w, in) zero-padded by ((top, bottom), (left, right)) with a
    (k, k, in, out) kernel: (B, h', w', out)."""
    from numpy.lib.stride_tricks import sliding_window_view

    k, n_in, n_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    padded = np.pad(h, ((0, 0), *pad, (0, 0)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::2, ::2]  # (B, h', w', in, k, k)
    b, ho, wo = windows.shape[:3]
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, k * k * n_in)  # rows (y, x, in)
    return (patches @ kernel.reshape(k * k * n_in, n_out)).reshape(b, ho, wo, n_out)


def conv2d_transpose(h: np.ndarray, kernel: np.ndarray, crop, size: tuple[int, int]) -> np.ndarray:
    """The transpose of `conv2d`: (B, m_h, m_w, in) with a (k, k, out, in) kernel -> the full stride-2 output,
    cropped by ((top, bottom), (left, right)) to `size`: (B, H, W, out)."""
    b, mh, mw, _ = h.shape
    k, out = kernel.shape[0], kernel.shape[2]
    full = np.zeros((b, (mh - 1) * 2 + k, (mw - 1) * 2 + k, out))
    for y in range(k):
        for x in range(k):
            full[:, y:y + 2 * mh - 1:2, x:x + 2 * mw - 1:2] += np.einsum("bhwi,oi->bhwo", h, kernel[y, x])
    (top, _), (left, _) = crop
    return full[:, top:top + size[0], left:left + size[1]]


def _apply(spec: VAESpec, weights: Mapping[str, np.ndarray], name: str, h: np.ndarray) -> np.ndarray:
    """One planned layer (dense, conv or transposed conv, then its ReLU) on float64 activations."""
    layer = next(layer for layer in spec.layers() if layer.name == name)
    kernel = np.asarray(weights[f"{name}.kernel"], dtype=np.float64)
    bias = np.asarray(weights[f"{name}.bias"], dtype=np.float64)
    if layer.kind == CONV:
        out = conv2d(h, kernel, layer.level.pad) + bias  # (B, h', w', out)
    elif layer.kind == CONV_TRANSPOSE:
        out = conv2d_transpose(h, kernel, layer.level.pad, layer.level.in_size) + bias  # (B, h, w, out)
    else:
        out = h.reshape(len(h), -1) @ kernel + bias  # (B, out)
        if layer.writes_map is not None:
            out = out.reshape(len(h), *layer.writes_map)  # (B, h, w, c)
    return np.maximum(out, 0.0) if layer.relu else out


def reference_encode(spec: VAESpec, weights: Mapping[str, np.ndarray], x: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """q(z|x)'s parameters in float64: x (B, D) channels-last rows -> (mu, log_var), (B, L) each."""
    h = np.asarray(x, dtype=np.float64)
    if spec.architecture == "conv":
        h = h.reshape(len(h), *(*spec.image_shape, 1)[:3])  # (B, H, W, C)
    for layer in spec.layers():
        if layer.name.startswith("encoder.") and layer.name not in HEADS:
            h = _apply(spec, weights, layer.name, h)
    return _apply(spec, weights, "encoder.mu", h), _apply(spec, weights, "encoder.log_var", h)


def reference_decode(spec: VAESpec, weights: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """The decoder's output in float64: z (B, L) -> (B, D) logits or means, or (B, 2D) means then log-variances,
    as channels-last rows (the layout of both backends' `decode`)."""
    h = np.asarray(z, dtype=np.float64)
    for layer in spec.layers():
        if layer.name.startswith("decoder."):
            h = _apply(spec, weights, layer.name, h)
    if spec.architecture == "conv":  # (B, H, W, C or 2C) -> channels-last rows, means then log-variances
        c = spec.channels
        h = np.concatenate([h[..., :c].reshape(len(h), -1), h[..., c:].reshape(len(h), -1)], axis=1)
    return h


def reference_forward(spec: VAESpec, weights: Mapping[str, np.ndarray], x: np.ndarray, eps: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's forward pass for the noise `eps` (B, L): (decoder_out (B, D|2D), mu (B, L), log_var (B, L))."""
    mu, log_var = reference_encode(spec, weights, x)
    z = mu + np.exp(0.5 * log_var) * np.asarray(eps, dtype=np.float64)  # (B, L)
    return reference_decode(spec, weights, z), mu, log_var


def decoder_mean(spec: VAESpec, decoder_out: np.ndarray) -> tuple[np.ndarray, ...]:
    """The decoder's mean in data space, from `reference_decode`'s output: (probabilities,) for Bernoulli (a stable
    sigmoid of the logits), (means,) for "gaussian", (means, log_var) for "gaussian_learned"; (B, D) each."""
    out = np.asarray(decoder_out, dtype=np.float64)
    d = spec.input_dim
    if spec.likelihood == "bernoulli":
        return (np.exp(-np.logaddexp(0.0, -out)),)  # sigmoid, without overflow for large |logits|
    if spec.likelihood == "gaussian_learned":
        return out[:, :d], out[:, d:]
    return (out,)
