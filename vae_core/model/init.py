"""Initial weights, drawn once in NumPy so that a seed gives the same model in every backend."""
from __future__ import annotations

import numpy as np

from vae_core.model.spec import VAESpec


def init_weights(spec: VAESpec, seed: int | None = None) -> dict[str, np.ndarray]:
    """Neutral float32 weights with PyTorch's default for nn.Linear, nn.Conv2d and nn.ConvTranspose2d: kernel and
    bias ~ U(-1/sqrt(fan_in), +), with each layer's `fan_in` as torch computes it (`vae_core.model.architecture.Layer`).

    That is the scheme of the seed's PyTorch model, whose 20-epoch results are our baseline.
    `seed=None` draws fresh entropy, like a framework's own initialisers.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in spec.layers():
        bound = 1.0 / np.sqrt(layer.fan_in)  # a bias shares its layer's fan-in
        weights[f"{layer.name}.kernel"] = rng.uniform(-bound, bound, size=layer.kernel_shape).astype(np.float32)
        weights[f"{layer.name}.bias"] = rng.uniform(-bound, bound, size=(layer.n_out,)).astype(np.float32)
    return weights
