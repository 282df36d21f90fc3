"""Thin adapters between the Keras model/optimizer and vae_core's neutral NumPy layout.

Weights: neutral names of `spec.weight_shapes()`; Keras' kernels (Dense (in, out), Conv2D (kh, kw, in, out),
Conv2DTranspose (kh, kw, out, in)) and its NHWC maps are already the neutral layouts, so nothing is permuted.
Adam: Keras 3 keeps one "momentum" (m) and one "velocity" (v) slot per trainable variable in
`optimizer._momentums` / `optimizer._velocities`, indexed by `optimizer._get_variable_index(variable)`, and the
step count t in `optimizer.iterations`. Both are mapped here through the model variable of each neutral name.
m and v follow the same recursion as torch.optim.Adam's exp_avg / exp_avg_sq, so the state moves between backends
unchanged (see `backends.tf.optim` for where Keras puts epsilon, and `TorchAdam`, which puts it where torch does).
"""
from __future__ import annotations

import numpy as np

from vae_core.io.checkpoint import AdamState, validate_weights


def native_parameters(model) -> dict:
    """Neutral weight name -> the model's own Keras variable, in the order of `spec.weight_shapes()`. Keras' kernel
    layouts are the neutral ones (module docstring)."""
    if getattr(model, "backend_name", None) != "tf" or not hasattr(model, "neutral_layers"):
        raise TypeError(f"model must be a vae_core TF model (backends.tf.VAE); got {type(model).__name__}")
    out = {}
    for prefix, layer in model.neutral_layers().items():
        out[f"{prefix}.kernel"] = layer.kernel  # (in, out)
        out[f"{prefix}.bias"] = layer.bias  # (out,)
    return out


def native_to_neutral(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays in the layouts of `native_parameters(model)` (gradients, say), by neutral name -> neutral layouts:
    Keras' layouts are the neutral ones, so these are copies."""
    native_parameters(model)  # the same model check as torch's
    return {name: np.array(a) for name, a in arrays.items()}


def neutral_to_native(model, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Neutral arrays by name -> the layouts of `native_parameters(model)`: the same (copies)."""
    native_parameters(model)
    return {name: np.array(a) for name, a in arrays.items()}


def export_weights(model) -> dict[str, np.ndarray]:
    """Neutral name -> float32 array copy, in the order of `spec.weight_shapes()`."""
    return {name: np.array(var.numpy(), dtype=np.float32) for name, var in native_parameters(model).items()}


def import_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Load neutral weights into the model, after checking every name, shape, dtype and value against its spec."""
    validate_weights(model.spec, weights, what="weights")
    for name, var in native_parameters(model).items():
        var.assign(weights[name])


def _adam_slots(model, optimizer) -> dict[str, tuple]:
    """Neutral name -> (m variable, v variable) of a (built, if needed now) Keras Adam optimizer."""
    import keras

    if not isinstance(optimizer, keras.optimizers.Adam):
        raise TypeError(f"optimizer must be a keras.optimizers.Adam (or backends.tf.TorchAdam); "
                        f"got {type(optimizer).__name__}")
    if optimizer.amsgrad:
        raise ValueError("optimizer.amsgrad must be False to map onto vae_core.AdamState (no v_hat slot); got True")
    variables = native_parameters(model)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    slots = {}
    for name, var in variables.items():
        try:  # Keras' private slot index and lists: Keras has no public accessor for a variable's Adam slots
            index = optimizer._get_variable_index(var)
        except KeyError:
            raise ValueError(f"optimizer was built for other variables than this model's ({name!r} has no Adam slot); "
                             f"use a fresh optimizer, or the one this model was compiled with") from None
        slots[name] = (optimizer._momentums[index], optimizer._velocities[index])
    return slots


def export_adam(model, optimizer) -> AdamState:
    """Adam's step count and moments in neutral names (an unbuilt optimizer is built: step 0, zero moments)."""
    slots = _adam_slots(model, optimizer)
    return AdamState(step=int(optimizer.iterations.numpy()),
                     m={n: np.array(m.numpy(), dtype=np.float32) for n, (m, _) in slots.items()},
                     v={n: np.array(v.numpy(), dtype=np.float32) for n, (_, v) in slots.items()})


def import_adam(model, optimizer, state: AdamState) -> None:
    """Restore step count and moments into `optimizer` (built for `model.trainable_variables` if it is not)."""
    if not isinstance(state, AdamState):
        raise TypeError(f"state must be a vae_core.AdamState; got {type(state).__name__}")
    validate_weights(model.spec, state.m, what="Adam first moments")
    validate_weights(model.spec, state.v, what="Adam second moments")
    if isinstance(state.step, bool) or not isinstance(state.step, (int, np.integer)) or state.step < 0:
        raise ValueError(f"AdamState.step must be an int >= 0; got {state.step!r}")
    slots = _adam_slots(model, optimizer)
    for name, (m, v) in slots.items():
        m.assign(state.m[name])
        v.assign(state.v[name])
    optimizer.iterations.assign(int(state.step))
