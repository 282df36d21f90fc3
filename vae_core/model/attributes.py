"""Attributes every backend's model derives from its spec, written once: both `VAE` classes inherit them."""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.model.spec import VAESpec


class SpecAttributes:
    """The seed's model attributes (`model.latent_dim`, `model.input_dim`), read from `self.spec`."""

    spec: VAESpec

    @property
    def input_dim(self) -> int:
        """D, the width of a flattened example (`spec.input_dim`)."""
        return self.spec.input_dim

    @property
    def latent_dim(self) -> int:
        """L, the width of z (`spec.latent_dim`)."""
        return self.spec.latent_dim


def check_count(method: str, name: str, value: Any) -> None:
    """A count a model method takes (`sample`'s n, `interpolate`'s steps): an int >= 1, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{method}: {name} must be an int >= 1; got {value!r}")


def check_draw_seed(method: str, seed: Any) -> None:
    """The seed of a model method's draws (`sample(seed=)`): an int >= 0, else a ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{method}: seed must be None or an int >= 0; got {seed!r}")
