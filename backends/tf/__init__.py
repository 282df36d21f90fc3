"""TensorFlow/Keras 3 backend of vae-core: `VAE`, `Sampling`, `build_model`, `fit`, `evaluate`.

Keras 3 can run on several frameworks; this backend needs it on TensorFlow. Keras picks its backend once,
when it is first imported, from the `KERAS_BACKEND` environment variable (or ~/.keras/keras.json). So:

- if Keras is not imported yet, this package sets `KERAS_BACKEND=tensorflow` before importing it (with a
  warning if the variable asked for another backend);
- if Keras is already imported on another backend, importing this package raises ImportError saying how to fix it.

Before TensorFlow is imported, `vae_core.triton_guard.preload_triton()` loads triton (when installed) so that
torch can still use it in this process: TensorFlow's global LLVM crashes a triton loaded after it.
"""
from __future__ import annotations

import os
import sys
import warnings

from vae_core.triton_guard import preload_triton

_WANTED = "tensorflow"


def _ensure_keras_on_tensorflow() -> None:
    if "keras" not in sys.modules:
        requested = os.environ.get("KERAS_BACKEND")
        if requested and requested != _WANTED:
            warnings.warn(f"KERAS_BACKEND={requested!r} was set, but the vae_core 'tf' backend needs Keras on "
                          f"TensorFlow; setting KERAS_BACKEND='tensorflow' for this process before Keras is imported",
                          RuntimeWarning, stacklevel=3)
        os.environ["KERAS_BACKEND"] = _WANTED
    import keras

    active = keras.backend.backend()
    if active != _WANTED:
        raise ImportError(
            f"the vae_core 'tf' backend needs Keras running on TensorFlow, but Keras was already imported on "
            f"{active!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}). Keras chooses its backend once, at "
            f"first import: set KERAS_BACKEND=tensorflow before starting Python (or import backends.tf / "
            f"vae_core.build('tf') before anything imports keras), or use vae_core.build('torch')")


preload_triton()
_ensure_keras_on_tensorflow()

from backends.tf import device, distributed, export, losses, metrics, optim, train, weights  # noqa: E402
from backends.tf.model import VAE, Sampling  # noqa: E402
from backends.tf.optim import TorchAdam  # noqa: E402
from backends.tf.train import evaluate, fit  # noqa: E402


def build_model(spec, seed: int | None = None) -> VAE:
    """A built `VAE` of `spec` holding `vae_core.init_weights(spec, seed)`: the same seed gives the same
    weights as the torch backend. `seed` also seeds the model's sampling noise (None: fresh entropy)."""
    return VAE(spec, seed=seed)


__all__ = ["VAE", "Sampling", "TorchAdam", "build_model", "evaluate", "fit", "device", "distributed", "export", "losses", "metrics", "optim",
           "train", "weights"]
