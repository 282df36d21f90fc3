"""Neutral NumPy weights and Adam state <-> the torch VAE and torch.optim.Adam.

Neutral layout: `spec.weight_shapes()` names, float32, kernels (in, out), i.e. torch's Linear.weight
transposed. Adam's moments use the same names and layouts.
"""
from __future__ import annotations

import numpy as np
import torch

from vae_core.checkpoint import AdamState, validate_weights


def _parameters(model) -> dict[str, tuple[torch.nn.Parameter, bool]]:
    """Neutral name -> (parameter, is_kernel), in the order of `spec.weight_shapes()`."""
    params = {}
    for name, layer in model.neutral_layers().items():
        params[f"{name}.kernel"] = (layer.weight, True)
        params[f"{name}.bias"] = (layer.bias, False)
    return params


def native_parameters(model) -> dict[str, torch.nn.Parameter]:
    """Neutral weight name -> the model's own parameter, in the order of `spec.weight_shapes()`. torch keeps Linear
    weights (out, in): the transpose of the neutral layout."""
    return {name: p for name, (p, _) in _parameters(model).items()}


def _to_neutral(t: torch.Tensor, is_kernel: bool) -> np.ndarray:
    """A float32 C-contiguous copy (never a view of the live tensor); kernel: (out, in) -> (in, out)."""
    t = t.detach().to(device="cpu", dtype=torch.float32)
    return np.array((t.T if is_kernel else t).numpy(), dtype=np.float32, order="C", copy=True)


def _to_torch(a: np.ndarray, is_kernel: bool, like: torch.Tensor) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a.T if is_kernel else a))  # kernel: (in, out) -> (out, in)
    # A copy even when device and dtype already match: Adam updates its state in place, and must not write
    # into the caller's arrays.
    return t.to(device=like.device, dtype=like.dtype, copy=True)


def export_weights(model) -> dict[str, np.ndarray]:
    """The model's weights as neutral float32 arrays (copies)."""
    return {name: _to_neutral(p, is_kernel) for name, (p, is_kernel) in _parameters(model).items()}


def import_weights(model, weights: dict[str, np.ndarray]):
    """Copy neutral weights into the model after checking names, shapes, dtype and finiteness. Returns model."""
    validate_weights(model.spec, weights, what="weights")
    with torch.no_grad():
        for name, (p, is_kernel) in _parameters(model).items():
            p.copy_(_to_torch(weights[name], is_kernel, p))
    return model


def export_adam(model, optimizer: torch.optim.Adam) -> AdamState:
    """Adam's step count and moments in neutral names and layouts (zeros before the first step)."""
    step, m, v = 0, {}, {}
    for name, (p, is_kernel) in _parameters(model).items():
        state = optimizer.state.get(p, {})
        if "step" in state:
            step = int(state["step"])
            m[name] = _to_neutral(state["exp_avg"], is_kernel)
            v[name] = _to_neutral(state["exp_avg_sq"], is_kernel)
        else:
            m[name] = v[name] = np.zeros(model.spec.weight_shapes()[name], np.float32)
    return AdamState(step=step, m=m, v=v)


def import_adam(model, optimizer: torch.optim.Adam, state: AdamState):
    """Set Adam's step count and moments from neutral arrays. Returns the optimizer."""
    validate_weights(model.spec, state.m, what="Adam first moments")
    validate_weights(model.spec, state.v, what="Adam second moments")
    if isinstance(state.step, bool) or not isinstance(state.step, (int, np.integer)) or state.step < 0:
        raise ValueError(f"Adam state step must be an int >= 0; got {state.step!r}")
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}
    for name, (p, is_kernel) in _parameters(model).items():
        if p not in group_of:
            raise ValueError(f"the optimizer does not hold the model's parameter {name!r}; "
                             f"build it with torch.optim.Adam(model.parameters(), ...)")
        group = group_of[p]
        # Where torch.optim.Adam keeps `step`: on the parameter's device when fused/capturable, else on the CPU.
        on_device = group.get("fused") or group.get("capturable")
        optimizer.state[p] = {
            "step": torch.tensor(float(state.step), dtype=torch.float32, device=p.device if on_device else "cpu"),
            "exp_avg": _to_torch(state.m[name], is_kernel, p),
            "exp_avg_sq": _to_torch(state.v[name], is_kernel, p),
        }
    return optimizer
