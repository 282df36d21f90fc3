"""The PyTorch backend of vae_core: `VAE` (a torch.nn.Module), `build_model`, `fit`, `evaluate`.

Modules: `model` (the VAE), `losses` (the objective on tensors), `weights` (neutral NumPy <-> torch,
Adam state included), `optim` (the Adam `fit` uses), `steps` (the train step) and `train` (the training loop).
`vae_core.build("torch", ...)` calls `build_model`.

Importing it loads triton now, if installed (`vae_core.triton_guard`): torch would import it lazily on the first
optimizer, which crashes once TensorFlow >= 2.20 is in the process.
"""
from __future__ import annotations

from vae_core.triton_guard import preload_triton

preload_triton()

from backends.torch import device, distributed, export, losses, metrics, optim, train, weights  # noqa: E402
from backends.torch.model import VAE  # noqa: E402
from backends.torch.train import evaluate, fit  # noqa: E402
from vae_core.model.spec import VAESpec


def build_model(spec: VAESpec, seed: int | None = None) -> VAE:
    """The VAE of `spec` with the weights `vae_core.init_weights(spec, seed)`, on the CPU, in train mode."""
    return VAE(spec, seed=seed)


__all__ = ["VAE", "build_model", "evaluate", "fit", "device", "distributed", "export", "losses", "metrics", "optim",
           "train", "weights"]
