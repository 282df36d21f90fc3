"""The optimizer `backends.torch.fit` trains with: torch.optim.Adam, fused (one kernel for all parameters).

The TF backend's `optim.make_optimizer` gives `TorchAdam`, the same update rule in Keras.
"""
from __future__ import annotations

import torch

from vae_core.config import TrainConfig


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam over the model's parameters with the config's learning rate, betas and eps (added to sqrt(v_hat)).
    Gradient clipping (`config.grad_clip_norm`) is applied by the training step, before `step()`."""
    # Fused Adam is available for float32 and float64 on CPU and CUDA and is the fastest.
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps, fused=True)
