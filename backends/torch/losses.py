"""The VAE objective on torch tensors: the math and reduction of `vae_core.model.losses`, op for op.

Sum over features, mean over the batch. Per-example functions return (B,) tensors; `negative_elbo`
returns scalar tensors (total, recon, kl). Gaussian terms keep 0.5 * log(2 pi) per pixel.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vae_core.model.spec import LIKELIHOODS

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class NegativeELBO(NamedTuple):
    total: torch.Tensor  # () mean over the batch of recon + beta * kl
    recon: torch.Tensor  # () mean over the batch of the per-example reconstruction NLL
    kl: torch.Tensor  # () mean over the batch of the per-example KL


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x | sigmoid(logits)), summed over features: (B, D) -> (B,). Stable for any finite logit.

    Per pixel max(l, 0) - x * l + log1p(exp(-|l|)), the formula of vae_core.model.losses and of TF's
    sigmoid_cross_entropy_with_logits. F.binary_cross_entropy_with_logits takes log(1 + exp(-|l|)) instead, which
    loses the small term in float32 when the loss is small (x = 0 with a large negative logit).
    """
    return _BernoulliNLL.apply(x, logits)  # (B,)


class _BernoulliNLL(torch.autograd.Function):
    """bernoulli_nll with a one-line backward: d/dl = sigmoid(l) - x and d/dx = -l, per pixel.

    Autograd through the forward formula would run several more elementwise kernels on (B, D) for the backward;
    this one runs 3, which makes a CPU training step faster (scripts/bench_torch.py).
    Gradients broadcast back to each input's shape (IWAE passes x (B, 1, D) with logits (B, K, D)). Once
    differentiable: no double backward, and no torch.func transforms (grad, vmap) through it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, logits)
        with torch.no_grad():  # (max(l, 0) - x * l) + log1p(exp(-|l|)), in that order: exact for small losses
            per_pixel = torch.sub(logits.clamp(min=0), x * logits)  # (..., D), x and logits broadcast
            per_pixel.add_(logits.abs().neg_().exp_().log1p_())
        return per_pixel.sum(-1)  # (...,)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, logits = ctx.saved_tensors
        g = grad.unsqueeze(-1)  # (B, 1)
        grad_x = -logits * g if ctx.needs_input_grad[0] else None  # (B, D)
        grad_logits = (torch.sigmoid(logits) - x).mul_(g) if ctx.needs_input_grad[1] else None  # (B, D)
        return grad_x, grad_logits


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """-log N(x | mean, 1), summed over features: (B, D) -> (B,)."""
    return (0.5 * (x - mean).square() + HALF_LOG_2PI).sum(-1)  # (B,)


def gaussian_learned_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """-log N(x | mean, exp(log_var)), summed over features: (B, D) -> (B,)."""
    return (0.5 * (log_var + (x - mean).square() * torch.exp(-log_var)) + HALF_LOG_2PI).sum(-1)  # (B,)


def reconstruction_nll(x: torch.Tensor, decoder_out: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-example reconstruction NLL for the spec's decoder layout: (B,). decoder_out is (B, 2D) if learned."""
    if likelihood == "bernoulli":
        return bernoulli_nll(x, decoder_out)
    if likelihood == "gaussian":
        return gaussian_nll(x, decoder_out)
    if likelihood == "gaussian_learned":
        d = x.shape[-1]
        return gaussian_learned_nll(x, decoder_out[..., :d], decoder_out[..., d:])
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) summed over latent dims: (B, L) -> (B,).

    Per dim: 0.5 * (mu^2 + (expm1(log_var) - log_var)), the reference's expm1 form. The difference
    expm1(v) - v (~v^2/2, between two numbers ~v) is taken in float64 as in the reference: in float32 it
    would lose most of its digits for small |v| (10% off at |v| = 1e-6). It is a (B, L) tensor, small next to
    the decoder's (B, D) work; the result is >= 0 and within ~1e-7 relative of the reference.
    """
    wide = log_var.double()  # (B, L)
    excess = (torch.expm1(wide) - wide).to(log_var.dtype)  # (B, L): exp(v) - 1 - v >= 0
    return (0.5 * (mu.square() + excess)).sum(-1)  # (B,)


def per_example(x: torch.Tensor, decoder_out: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                *, likelihood: str = "bernoulli") -> tuple[torch.Tensor, torch.Tensor]:
    """(recon (B,), kl (B,)), computed in at least float32 even when the inputs come from a bf16 autocast region."""
    recon = reconstruction_nll(_wide(x), _wide(decoder_out), likelihood)  # (B,)
    kl = kl_to_standard_normal(_wide(mu), _wide(log_var))  # (B,)
    return recon, kl


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors as float32; float32 and float64 unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def negative_elbo(x: torch.Tensor, decoder_out: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                  *, likelihood: str = "bernoulli", beta: float = 1.0, rows: int | None = None) -> NegativeELBO:
    """The training loss: mean over the batch of (recon + beta * KL), with both terms (scalar tensors).

    Shapes: x (B, D), decoder_out (B, D) or (B, 2D), mu and log_var (B, L).
    rows: None, or the number of leading examples that count (a batch padded to a fixed shape); the means are over
        those, and the padding rows get zero gradient.
    """
    recon, kl = per_example(x, decoder_out, mu, log_var, likelihood=likelihood)  # (B,) each
    if rows is not None:
        recon, kl = recon[:rows], kl[:rows]  # (rows,) each
    return NegativeELBO((recon + beta * kl).mean(), recon.mean(), kl.mean())
