"""The optimizer `backends.jax.fit` trains with: Adam as an optax transformation, with torch's update rule.

optax.adam adds eps to sqrt(v / (1 - b2^t)); torch.optim.Adam to sqrt(v) / sqrt(1 - b2^t): the same placement
(after the bias correction, not Keras' "epsilon hat"), rounded differently. `torch_adam` computes the update in
the operation order of the Adam the torch backend uses, `torch.optim.Adam(fused=True)` on the CPU, float32
(aten/src/ATen/native/cpu/FusedAdamKernel.cpp), as the TF backend's `TorchAdam` does:

    m <- fma(1 - b1, g - m, m)                      # exp_avg.lerp_(grad, 1 - b1)
    v <- fma((1 - b2) * g, g, v * b2)
    denom = sqrt(v) / sqrt(1 - b2^t) + eps          # the bias correction in float64, rounded once to float32
    update = (-(lr / (1 - b1^t)) * m) / denom       # the step size in float64 from the float64 learning rate

XLA's CPU and GPU code generators contract `a * b + c` into one fma with the product written first, so both
moment lines are written in that form (as in TF). The two per-step scalars are computed in float64 on the host by
`step_scalars` (in Python floats, as torch computes them) and passed in as float32 values: a float32 learning rate
inside the program would move some updates by one ulp, and JAX computes in float64 only under `jax_enable_x64`.
So the update takes them as optax's extra arguments (`optax.GradientTransformationExtraArgs`):

    tx = make_optimizer(model, config)
    state = tx.init(params)                                   # params: a pytree, e.g. weights.params_of(model)
    step_size, bias2_sqrt = step_scalars(config.learning_rate, config, step=1)
    updates, state = tx.update(grads, state, step_size=step_size, bias2_sqrt=bias2_sqrt)
    params = optax.apply_updates(params, updates)             # param + update, torch's last rounding

Given the same weights, moments and gradients, the updated weights, m and v equal torch's fused CPU Adam bit for
bit (tests/parity, test_optimizer_update_agrees_given_the_same_gradients). Gradient clipping
(`config.grad_clip_norm`) is the training step's, as in torch (`backends.jax.steps`).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_core.config import TrainConfig


class TorchAdamState(NamedTuple):
    """Adam's state: the step count t and the moments, pytrees shaped as the parameters."""

    count: jax.Array  # () int32: steps taken
    mu: Any  # first moments m (torch's exp_avg)
    nu: Any  # second moments v (torch's exp_avg_sq)


def torch_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformationExtraArgs:
    """Adam with torch's update rule and rounding order (module docstring). `update(grads, state, params=None, *,
    step_size, bias2_sqrt)` takes the step's float32 scalars from `step_scalars`."""

    def init(params: Any) -> TorchAdamState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return TorchAdamState(count=jnp.zeros((), jnp.int32), mu=zeros, nu=jax.tree.map(jnp.zeros_like, params))

    def update(grads: Any, state: TorchAdamState, params: Any = None, *, step_size: Any, bias2_sqrt: Any,
               **extra: Any) -> tuple[Any, TorchAdamState]:
        del params, extra

        def moments(g, m, v):
            c1, c2, beta2 = (jnp.asarray(c, g.dtype) for c in (1.0 - b1, 1.0 - b2, b2))
            m = c1 * (g - m) + m  # fma(c1, g - m, m)
            v = (c2 * g) * g + v * beta2  # fma(c2 * g, g, v * b2)
            return m, v

        pairs = jax.tree.map(moments, grads, state.mu, state.nu)
        mu = jax.tree.map(lambda _, p: p[0], grads, pairs)
        nu = jax.tree.map(lambda _, p: p[1], grads, pairs)

        def step(m, v):
            denom = jnp.sqrt(v) / jnp.asarray(bias2_sqrt, v.dtype) + jnp.asarray(eps, v.dtype)
            return (jnp.asarray(step_size, m.dtype) * m) / denom

        updates = jax.tree.map(step, mu, nu)
        return updates, TorchAdamState(count=state.count + 1, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init, update)


def step_scalars(learning_rate: float, config: TrainConfig, step: int | np.ndarray,
                 dtype: Any = np.float32) -> tuple[Any, Any]:
    """The step size -(lr / (1 - b1^t)) and sqrt(1 - b2^t) of Adam's step t (1-based; an int, or an array of them),
    computed in float64 from the float64 learning rate as torch computes them, then rounded once to the weights'
    `dtype` (float32; float64 for a float64 model, which takes them as they are)."""
    steps = np.atleast_1d(np.asarray(step, np.int64))
    size = np.array([-(learning_rate / (1.0 - config.adam_beta1 ** int(t))) for t in steps], np.float64)
    bias2 = np.array([math.sqrt(1.0 - config.adam_beta2 ** int(t)) for t in steps], np.float64)
    size, bias2 = size.astype(dtype), bias2.astype(dtype)
    return (size[0], bias2[0]) if np.ndim(step) == 0 else (size, bias2)


def make_optimizer(model: Any, config: TrainConfig) -> optax.GradientTransformationExtraArgs:
    """`torch_adam` with the config's betas and eps; the learning rate comes in through `step_scalars` at each
    step, so it can change between calls. `model` is unused (an optax transformation is initialised on the
    parameters' pytree); it is there to mirror the torch backend's signature."""
    del model
    return torch_adam(b1=config.adam_beta1, b2=config.adam_beta2, eps=config.adam_eps)
