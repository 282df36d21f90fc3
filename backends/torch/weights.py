"""Neutral NumPy weights and Adam state <-> the torch VAE and torch.optim.Adam.

Neutral layout (`vae_core.model.architecture`): `spec.weight_shapes()` names, float32, dense kernels (in, out), conv
kernels (kh, kw, in, out), transposed-conv kernels (kh, kw, out, in), flattened conv maps in (h, w, c) order.
Every conversion to and from torch's layouts is in `_Layout`, here and nowhere else:
- Linear.weight is (out, in): the neutral kernel transposed;
- Conv2d.weight is (out, in, kh, kw) and ConvTranspose2d.weight (in, out, kh, kw): both the neutral kernel
  permuted by (3, 2, 0, 1);
- torch flattens an NCHW map as (c, h, w): the dense layer that reads the last conv map has its kernel rows, and
  the one that writes it its kernel columns and bias, reordered between (h, w, c) and (c, h, w).
Adam's moments use the same names and layouts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vae_core.io.checkpoint import AdamState, validate_weights
from vae_core.model.architecture import CONV, CONV_TRANSPOSE

_TO_TORCH_CONV, _TO_NEUTRAL_CONV = (3, 2, 0, 1), (2, 3, 1, 0)  # neutral (kh, kw, a, b) <-> torch (b, a, kh, kw)


@dataclass(frozen=True)
class _Layout:
    """How one neutral tensor maps onto its torch parameter."""

    kind: str  # "bias", "dense" or "conv" (a conv or transposed-conv kernel)
    reads_map: tuple[int, int, int] | None = None  # dense kernel rows are a flattened (h, w, c) map
    writes_map: tuple[int, int, int] | None = None  # dense kernel columns (or the bias) are a flattened map

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        if self.kind == "conv":
            return a.transpose(_TO_TORCH_CONV)
        if self.writes_map is not None:  # columns (or bias) (h, w, c) -> (c, h, w)
            h, w, c = self.writes_map
            a = a.reshape(*a.shape[:-1], h, w, c)
            a = np.moveaxis(a, -1, -3).reshape(*a.shape[:-3], h * w * c)
        if self.reads_map is not None:  # rows (h, w, c) -> (c, h, w)
            h, w, c = self.reads_map
            a = a.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        return a.T if self.kind == "dense" else a  # (in, out) -> (out, in)

    def to_neutral(self, a: np.ndarray) -> np.ndarray:
        if self.kind == "conv":
            return a.transpose(_TO_NEUTRAL_CONV)
        if self.kind == "dense":
            a = a.T  # (out, in) -> (in, out)
        if self.reads_map is not None:  # rows (c, h, w) -> (h, w, c)
            h, w, c = self.reads_map
            a = a.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
        if self.writes_map is not None:  # columns (or bias) (c, h, w) -> (h, w, c)
            h, w, c = self.writes_map
            a = a.reshape(*a.shape[:-1], c, h, w)
            a = np.moveaxis(a, -3, -1).reshape(*a.shape[:-3], h * w * c)
        return a


def _parameters(model) -> dict[str, tuple[torch.nn.Parameter, _Layout]]:
    """Neutral name -> (parameter, its layout), in the order of `spec.weight_shapes()`."""
    modules = model.neutral_layers()
    params = {}
    for layer in model.spec.layers():
        module = modules[layer.name]
        conv = layer.kind in (CONV, CONV_TRANSPOSE)
        params[f"{layer.name}.kernel"] = (module.weight, _Layout("conv" if conv else "dense", layer.reads_map,
                                                                 layer.writes_map))
        params[f"{layer.name}.bias"] = (module.bias, _Layout("bias", None, layer.writes_map))
    return params


def native_parameters(model) -> dict[str, torch.nn.Parameter]:
    """Neutral weight name -> the model's own parameter, in the order of `spec.weight_shapes()`. torch keeps Linear
    weights (out, in) and conv weights channels first: see the module docstring for the layouts."""
    return {name: p for name, (p, _) in _parameters(model).items()}


def _to_neutral(t: torch.Tensor, layout: _Layout) -> np.ndarray:
    """A float32 C-contiguous copy in the neutral layout (never a view of the live tensor)."""
    t = t.detach().to(device="cpu", dtype=torch.float32)
    return np.array(layout.to_neutral(t.numpy()), dtype=np.float32, order="C", copy=True)


def _to_torch(a: np.ndarray, layout: _Layout, like: torch.Tensor) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(layout.to_torch(a)))
    # A copy even when device and dtype already match: Adam updates its state in place, and must not write
    # into the caller's arrays.
    return t.to(device=like.device, dtype=like.dtype, copy=True)


def native_to_neutral(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays in the layouts of `native_parameters(model)` (gradients, say), by neutral name -> neutral layouts."""
    params = _parameters(model)
    return {name: np.ascontiguousarray(params[name][1].to_neutral(np.asarray(a))) for name, a in arrays.items()}


def neutral_to_native(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Neutral arrays by name -> the layouts of `native_parameters(model)`."""
    params = _parameters(model)
    return {name: np.ascontiguousarray(params[name][1].to_torch(np.asarray(a))) for name, a in arrays.items()}


def export_weights(model) -> dict[str, np.ndarray]:
    """The model's weights as neutral float32 arrays (copies)."""
    return {name: _to_neutral(p, layout) for name, (p, layout) in _parameters(model).items()}


def import_weights(model, weights: dict[str, np.ndarray]):
    """Copy neutral weights into the model after checking names, shapes, dtype and finiteness. Returns model."""
    validate_weights(model.spec, weights, what="weights")
    with torch.no_grad():
        for name, (p, layout) in _parameters(model).items():
            p.copy_(_to_torch(weights[name], layout, p))
    return model


def export_adam(model, optimizer: torch.optim.Adam) -> AdamState:
    """Adam's step count and moments in neutral names and layouts (zeros before the first step)."""
    step, m, v = 0, {}, {}
    for name, (p, layout) in _parameters(model).items():
        state = optimizer.state.get(p, {})
        if "step" in state:
            step = int(state["step"])
            m[name] = _to_neutral(state["exp_avg"], layout)
            v[name] = _to_neutral(state["exp_avg_sq"], layout)
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
    for name, (p, layout) in _parameters(model).items():
        if p not in group_of:
            raise ValueError(f"the optimizer does not hold the model's parameter {name!r}; "
                             f"build it with torch.optim.Adam(model.parameters(), ...)")
        group = group_of[p]
        # Where torch.optim.Adam keeps `step`: on the parameter's device when fused/capturable, else on the CPU.
        on_device = group.get("fused") or group.get("capturable")
        optimizer.state[p] = {
            "step": torch.tensor(float(state.step), dtype=torch.float32, device=p.device if on_device else "cpu"),
            "exp_avg": _to_torch(state.m[name], layout, p),
            "exp_avg_sq": _to_torch(state.v[name], layout, p),
        }
    return optimizer
