"""The model, defined once: the spec, its layer plan, initial weights and the reference loss math (NumPy only)."""
from vae_core.model.init import init_weights
from vae_core.model.spec import ARCHITECTURES, LIKELIHOODS, VAESpec

__all__ = ["ARCHITECTURES", "LIKELIHOODS", "VAESpec", "init_weights"]
