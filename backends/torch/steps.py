"""The train step of the torch VAE: what `backends.torch.train.Trainer` calls once per batch.

Kept out of the model and the trainer, as the TF backend keeps its steps in `backends.tf.steps`. `make_step` builds
the step for one fit: forward pass and loss (under a bf16 autocast if asked, `torch.compile`d if asked), backward
pass, gradient clipping and the optimizer's update; with several torchrun ranks, on this rank's shard of the
global batch inside DistributedDataParallel.
"""
from __future__ import annotations

from typing import Callable

import torch

from backends.torch.losses import negative_elbo, per_example
from backends.torch.model import VAE


def make_step(model: VAE, net: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, *,
              grad_clip_norm: float | None, world_size: int, shard_batch: int, bf16: bool,
              compile: bool) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """One optimizer step on a batch, or on this rank's shard of one; returns the detached (3,) batch means
    (loss, recon, kl), or with several ranks the shard's sums.

    net: `model`, or its DistributedDataParallel wrapper with several ranks (`world_size` > 1). shard_batch: a
    rank's rows of a full global batch, the batches `torch.compile` compiles for. The step's third argument, with
    several ranks: world_size / the global batch's examples (unused in one process).
    """
    spec, clip = model.spec, grad_clip_norm
    sharded = world_size > 1

    def losses(xb: torch.Tensor, eb: torch.Tensor, scale: float) -> tuple[torch.Tensor, ...]:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out, mu, log_var = net(xb, eb)  # (b, output_dim), (b, latent_dim), (b, latent_dim)
        # The loss itself is float32: negative_elbo widens bf16 activations first.
        if not sharded:
            return negative_elbo(xb, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta)
        recon, kl = per_example(xb, out, mu, log_var, likelihood=spec.likelihood)  # (b,) each
        total = (recon + spec.beta * kl).sum()  # () the shard's sum: a shard may hold no example
        return total * scale, total.detach(), recon.sum().detach(), kl.sum().detach()

    # Compiled for full batches only (static shapes: one graph per fit); a partial last batch runs eagerly, as a
    # dynamic-shape recompile makes every later step slower. Dynamo keeps at most
    # torch._dynamo.config.recompile_limit graphs of this function per process; later fits run eagerly.
    compiled = torch.compile(losses, dynamic=False) if compile else losses

    def step(xb: torch.Tensor, eb: torch.Tensor, scale: float) -> torch.Tensor:
        total, *logged = (compiled if xb.shape[0] == shard_batch else losses)(xb, eb, scale)
        optimizer.zero_grad(set_to_none=True)
        total.backward()  # with DDP: the gradients are the ranks' mean when it returns
        if clip is not None:  # the same all-reduced gradient on every rank, so the same clip
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return torch.stack(logged[-3:] if sharded else [total, *logged]).detach()  # (3,)

    return step
