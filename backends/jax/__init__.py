"""The JAX backend of vae_core: `VAE` (a Flax NNX module), `build_model`, `fit`, `evaluate`.

Modules, as in the torch and TF backends: `model` (the VAE), `losses` (the objective on arrays), `weights`
(neutral NumPy <-> the model's parameters and Adam's state), `optim` (Adam as an optax transformation with torch's
update rule), `steps` (the compiled block of steps), `train` (the trainer), `metrics`, `device`, `distributed`
(a `jax.sharding` mesh) and `export`. `vae_core.build("jax", ...)` calls `build_model`.

JAX computes in float32 unless `jax_enable_x64` is on, a process-wide switch this package never sets: the few
float64 ops of the loss turn it on for themselves alone while they are traced (`backends.jax.losses`), and
`fit(precision="fp64")` for its run alone (`backends.jax.train`).
"""
from __future__ import annotations

from backends.jax import device, distributed, export, losses, metrics, optim, steps, train, weights
from backends.jax.model import VAE
from backends.jax.train import evaluate, fit
from vae_core.model.spec import VAESpec


def build_model(spec: VAESpec, seed: int | None = None) -> VAE:
    """The VAE of `spec` with the weights `vae_core.init_weights(spec, seed)`, on JAX's default device."""
    return VAE(spec, seed=seed)


__all__ = ["VAE", "build_model", "evaluate", "fit", "device", "distributed", "export", "losses", "metrics", "optim",
           "steps", "train", "weights"]
