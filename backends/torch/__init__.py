"""The PyTorch backend of vae_core: `VAE` (a torch.nn.Module), `build_model`, `fit`, `evaluate`.

Modules: `model` (the VAE), `losses` (the objective on tensors), `weights` (neutral NumPy <-> torch,
Adam state included) and `train` (the training loop). `vae_core.build("torch", ...)` calls `build_model`.
"""
from __future__ import annotations

from backends.torch import losses, weights
from backends.torch.model import VAE
from backends.torch.train import evaluate, fit
from vae_core.spec import VAESpec


def build_model(spec: VAESpec, seed: int | None = None) -> VAE:
    """The VAE of `spec` with the weights `vae_core.init_weights(spec, seed)`, on the CPU, in train mode."""
    return VAE(spec, seed=seed)


__all__ = ["VAE", "build_model", "evaluate", "fit", "losses", "weights"]
