"""vae-core: one variational autoencoder, defined once, run identically in PyTorch and TensorFlow/Keras.

This package is backend-neutral and imports with NumPy alone; `build(backend=...)` imports the framework.
Its layers, each a subpackage: `model` (spec, layer plan, init, reference losses), `data`, `io` (checkpoints,
atomic writes, run lock), `train` (the one training loop and the backend contract), `metrics`, `system` (the
machine's memory and threads), `viz`, `callbacks`
(the hooks of `fit`, and the built-in loggers), `cli`.
"""
import sys

from vae_core import _moved, callbacks
from vae_core.config import TrainConfig
from vae_core.deploy import export
from vae_core.io.checkpoint import AdamState, Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from vae_core.io.run_files import RunExistsError
from vae_core.metrics.api import score
from vae_core.model.init import init_weights
from vae_core.model.spec import LIKELIHOODS, VAESpec
from vae_core.registry import BACKENDS, build, evaluate, fit, load_checkpoint, save_checkpoint
from vae_core.system.memory import MemoryLimitError, estimate_training_memory
from vae_core.triton_guard import preload_triton

_moved.install()
if "tensorflow" in sys.modules:  # imported before vae_core: load triton now, before torch loads it unsafely
    preload_triton()

__version__ = "0.1.0"

__all__ = [
    "AdamState", "BACKENDS", "Checkpoint", "CheckpointError", "LIKELIHOODS", "MemoryLimitError", "RunExistsError",
    "TrainConfig", "VAESpec", "build", "callbacks", "estimate_training_memory", "evaluate", "export", "fit",
    "init_weights", "load_checkpoint", "read_checkpoint", "save_checkpoint", "score", "write_checkpoint",
]
