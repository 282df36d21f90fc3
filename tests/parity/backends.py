"""Thin drivers so that each parity check is written once for both backends."""
from __future__ import annotations

import numpy as np
import pytest

BACKENDS = ("torch", "tf")


def backend(name: str):
    """The backend package, or a skip when its framework is not installed."""
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[name])
    from vae_core.registry import backend_module

    return backend_module(name)


def to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def negative_elbo(name: str, arrays: dict[str, np.ndarray], likelihood: str, beta: float):
    """The backend's loss on float32 framework tensors: (total, recon, kl) as Python floats."""
    mod = backend(name)
    if name == "torch":
        import torch
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    else:
        import tensorflow as tf
        t = {k: tf.constant(v) for k, v in arrays.items()}
    out = mod.losses.negative_elbo(t["x"], t["decoder_out"], t["mu"], t["log_var"], likelihood=likelihood, beta=beta)
    return tuple(float(to_numpy(v)) for v in out)


def per_example(name: str, arrays: dict[str, np.ndarray], likelihood: str) -> tuple[np.ndarray, np.ndarray]:
    """The backend's per-example (recon, kl), (B,) each."""
    mod = backend(name)
    if name == "torch":
        import torch
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    else:
        import tensorflow as tf
        t = {k: tf.constant(v) for k, v in arrays.items()}
    recon = mod.losses.reconstruction_nll(t["x"], t["decoder_out"], likelihood)
    kl = mod.losses.kl_to_standard_normal(t["mu"], t["log_var"])
    return to_numpy(recon), to_numpy(kl)


def build_shared(name: str, spec, seed: int = 0):
    """The backend's model holding `vae_core.init_weights(spec, seed)`: the same numbers in both backends."""
    backend(name)
    from vae_core import build

    return build(name, spec, seed=seed)


def forward(name: str, model, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """forward(x, eps) as NumPy: {"decoder_out", "mu", "log_var"}."""
    if name == "torch":
        import torch
        with torch.no_grad():
            out = model(torch.from_numpy(x), torch.from_numpy(eps))
    else:
        out = model(x, eps=eps)
    return dict(zip(("decoder_out", "mu", "log_var"), (to_numpy(t) for t in out)))


def gradients(name: str, model, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """d(negative ELBO)/d(weight) for every weight, in the neutral names and layouts (kernels (in, out))."""
    mod, spec = backend(name), model.spec
    if name == "torch":
        import torch
        model.zero_grad()
        out, mu, log_var = model(torch.from_numpy(x), torch.from_numpy(eps))
        total, _, _ = mod.losses.negative_elbo(torch.from_numpy(x), out, mu, log_var,
                                               likelihood=spec.likelihood, beta=spec.beta)
        total.backward()
        grads = {}
        for layer_name, layer in model.linear_layers().items():
            grads[f"{layer_name}.kernel"] = to_numpy(layer.weight.grad.T)
            grads[f"{layer_name}.bias"] = to_numpy(layer.bias.grad)
        return grads
    import tensorflow as tf
    variables = model.neutral_variables()
    with tf.GradientTape() as tape:
        out, mu, log_var = model(x, eps=eps)
        total, _, _ = mod.losses.negative_elbo(tf.constant(x), out, mu, log_var,
                                               likelihood=spec.likelihood, beta=spec.beta)
    return {n: g.numpy() for n, g in zip(variables, tape.gradient(total, list(variables.values())))}
