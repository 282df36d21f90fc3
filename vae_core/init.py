"""Initial weights, drawn once in NumPy so that a seed gives the same model in every backend."""
from __future__ import annotations

import numpy as np

from vae_core.spec import VAESpec


def init_weights(spec: VAESpec, seed: int | None = None) -> dict[str, np.ndarray]:
    """Neutral float32 weights with PyTorch's nn.Linear default: kernel and bias ~ U(-1/sqrt(fan_in), +).

    That is the scheme of the seed's PyTorch model, whose 20-epoch results are our baseline.
    `seed=None` draws fresh entropy, like a framework's own initialisers.
    """
    rng = np.random.default_rng(seed)
    shapes = spec.weight_shapes()
    weights = {}
    for name, shape in shapes.items():
        fan_in = shapes[name.rsplit(".", 1)[0] + ".kernel"][0]  # a bias shares its layer's fan-in
        bound = 1.0 / np.sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return weights
