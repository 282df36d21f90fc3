"""Neutral NumPy weights and Adam state <-> the Flax NNX VAE and its optax Adam state.

Flax's kernels and NHWC maps are the neutral layouts (`backends.jax.model`), so nothing is permuted: this module
is the one place where arrays cross between NumPy and the model's `nnx.Param`s, checked against the spec on the
way in (`vae_core.io.checkpoint.validate_weights`: every name, shape, dtype and value). Adam's state is
`backends.jax.optim.AdamState`'s pytree (count, m, v) keyed by neutral name, the same moments as torch's
exp_avg / exp_avg_sq, so it moves between backends unchanged.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from backends.jax.optim import TorchAdamState
from vae_core.io.checkpoint import AdamState, validate_weights


def native_parameters(model) -> dict[str, nnx.Param]:
    """Neutral weight name -> the model's own `nnx.Param`, in the order of `spec.weight_shapes()`. Flax's layouts
    are the neutral ones (module docstring)."""
    if getattr(model, "backend_name", None) != "jax" or not hasattr(model, "neutral_layers"):
        raise TypeError(f"model must be a vae_core JAX model (backends.jax.VAE); got {type(model).__name__}")
    out = {}
    for prefix, layer in model.neutral_layers().items():
        out[f"{prefix}.kernel"] = layer.kernel  # (in, out), (kh, kw, in, out) or (kh, kw, out, in)
        out[f"{prefix}.bias"] = layer.bias  # (out,)
    return out


def native_to_neutral(model, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays in the layouts of `native_parameters(model)` (gradients, say), by neutral name -> neutral layouts:
    the same layouts, as NumPy copies."""
    native_parameters(model)  # the same model check as the other backends'
    return {name: np.array(a) for name, a in arrays.items()}


def neutral_to_native(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Neutral arrays by name -> the layouts of `native_parameters(model)`: the same (copies)."""
    native_parameters(model)
    return {name: np.array(a) for name, a in arrays.items()}


def export_weights(model) -> dict[str, np.ndarray]:
    """The model's weights as neutral float32 arrays (copies)."""
    return {name: np.array(p.get_value(), dtype=np.float32) for name, p in native_parameters(model).items()}


def import_weights(model, weights: dict[str, np.ndarray]):
    """Copy neutral weights into the model after checking names, shapes, dtype and finiteness. Returns model."""
    validate_weights(model.spec, weights, what="weights")
    for name, p in native_parameters(model).items():
        p.set_value(jnp.asarray(np.asarray(weights[name]), dtype=p.get_value().dtype))  # a device copy, never the caller's
    return model


def export_adam(model, optimizer: TorchAdamState) -> AdamState:
    """Adam's step count and moments in neutral names and layouts (`optimizer`: the `TorchAdamState` of
    `backends.jax.optim.make_optimizer(...).init(params)`, or one a training run returned)."""
    if not isinstance(optimizer, TorchAdamState):
        raise TypeError(f"optimizer must be a backends.jax.optim.TorchAdamState (make_optimizer(...).init(params)); "
                        f"got {type(optimizer).__name__}")
    names = native_parameters(model)
    m, v = _by_name(optimizer.mu, names), _by_name(optimizer.nu, names)
    return AdamState(step=int(optimizer.count),
                     m={n: np.array(a, dtype=np.float32) for n, a in m.items()},
                     v={n: np.array(a, dtype=np.float32) for n, a in v.items()})


def import_adam(model, optimizer: TorchAdamState, state: AdamState) -> TorchAdamState:
    """Adam's step count and moments from neutral arrays, as a new `TorchAdamState` shaped as `optimizer` (JAX
    state is immutable: the caller keeps the returned one)."""
    if not isinstance(state, AdamState):
        raise TypeError(f"state must be a vae_core.AdamState; got {type(state).__name__}")
    validate_weights(model.spec, state.m, what="Adam first moments")
    validate_weights(model.spec, state.v, what="Adam second moments")
    if isinstance(state.step, bool) or not isinstance(state.step, (int, np.integer)) or state.step < 0:
        raise ValueError(f"Adam state step must be an int >= 0; got {state.step!r}")
    if not isinstance(optimizer, TorchAdamState):
        raise TypeError(f"optimizer must be a backends.jax.optim.TorchAdamState; got {type(optimizer).__name__}")
    params = native_parameters(model)
    dtype = {name: p.get_value().dtype for name, p in params.items()}
    return TorchAdamState(count=jnp.asarray(int(state.step), jnp.int32),
                          mu={n: jnp.asarray(state.m[n], dtype[n]) for n in params},
                          nu={n: jnp.asarray(state.v[n], dtype[n]) for n in params})


def params_of(model) -> dict[str, jax.Array]:
    """The model's weights as a pytree of arrays by neutral name (what the compiled steps and optax work on)."""
    return {name: p.get_value() for name, p in native_parameters(model).items()}


def set_params(model, params: dict[str, jax.Array]) -> None:
    """Put a pytree of arrays by neutral name (as `params_of` gives) back into the model's `nnx.Param`s."""
    for name, p in native_parameters(model).items():
        p.set_value(params[name])


def _by_name(tree: Any, names: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(tree, dict) or set(tree) != set(names):
        raise ValueError(f"optimizer state is not keyed by this model's neutral weight names; build it with "
                         f"make_optimizer(model, config).init(params_of(model))")
    return tree
