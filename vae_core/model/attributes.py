"""Attributes every backend's model derives from its spec, written once: both `VAE` classes inherit them."""
from __future__ import annotations

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
