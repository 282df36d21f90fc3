"""vae-core: one variational autoencoder, defined once, run identically in PyTorch and TensorFlow/Keras.

This package is backend-neutral and imports with NumPy alone; `build(backend=...)` imports the framework.
"""
import sys

from vae_core.checkpoint import (AdamState, Checkpoint, CheckpointError, load_checkpoint, read_checkpoint,
                                 save_checkpoint, write_checkpoint)
from vae_core.config import TrainConfig
from vae_core.init import init_weights
from vae_core.registry import BACKENDS, build, evaluate, fit
from vae_core.spec import LIKELIHOODS, VAESpec
from vae_core.triton_guard import preload_triton

if "tensorflow" in sys.modules:  # imported before vae_core: load triton now, before torch loads it unsafely
    preload_triton()

__version__ = "0.1.0"

__all__ = [
    "AdamState", "BACKENDS", "Checkpoint", "CheckpointError", "LIKELIHOODS", "TrainConfig", "VAESpec",
    "build", "evaluate", "fit", "init_weights", "load_checkpoint", "read_checkpoint", "save_checkpoint", "write_checkpoint",
]
