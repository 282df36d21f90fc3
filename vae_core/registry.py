"""Backends by name, imported only when asked for: the one place where the NumPy core reaches a framework.

`build`, `fit`, `evaluate`, `save_checkpoint` and `load_checkpoint` take a backend name or a native model and hand
off to that backend's package (`backends.<name>`), whose modules have the same names and signatures in every
backend (`model`, `train`, `weights`, `metrics`, `device`, ...).
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from vae_core.checks import caller_stacklevel, check_seed
from vae_core.config import TrainConfig
from vae_core.io.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from vae_core.model.spec import VAESpec
from vae_core.system.memory import check_training_memory

# backend name -> (its package, the frameworks it imports (the first one is the framework), the pip extra that
# installs them). Adding a backend is one line here and one folder backends/<name>/ with the contract below.
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "torch": ("backends.torch", ("torch",), "torch"),
    "tf": ("backends.tf", ("tensorflow", "keras", "tf_keras"), "tf"),
    "jax": ("backends.jax", ("jax", "flax", "optax"), "jax"),
}

# The contract of a backend package: these modules, each with the same public functions and signatures in every
# backend (tests/conformance/test_backend_surface.py checks it), and these functions at the package's top level. Its
# `train.Trainer` is a `vae_core.train.backend.TrainerBackend`, driven by the one training loop.
BACKEND_MODULES = ("model", "device", "losses", "weights", "optim", "steps", "train", "metrics", "distributed",
                   "export")
BACKEND_FUNCTIONS = ("build_model", "fit", "evaluate")


def _check_name(backend: Any) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}; got {backend!r}")


def backend_module(backend: str) -> ModuleType:
    """The backend's package (`backends.<name>`), importing its framework now."""
    _check_name(backend)
    module_name, frameworks, extra = BACKENDS[backend]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in frameworks:
            raise ImportError(f"backend {backend!r} needs {e.name!r}, which is not installed; "
                              f"install it with: pip install 'vae-core[{extra}]'") from e
        raise


def backend_of(model: Any) -> tuple[str, ModuleType]:
    """The name and module of the backend a native model belongs to."""
    name = getattr(model, "backend_name", None)
    if name not in BACKENDS:
        raise TypeError(f"model must be a vae_core model built by build({'|'.join(map(repr, BACKENDS))}, ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")
    return name, backend_module(name)


def build(backend: str, spec: VAESpec | None = None, *, seed: int | None = None, check_memory: bool = True,
          **overrides: Any) -> Any:
    """Build the VAE of `spec` in `backend` and return that framework's native model.

    `overrides` change spec fields (`build("tf", latent_dim=2)`). The same `seed` gives the same initial
    weights in every backend; `seed=None` draws fresh ones. Before anything is allocated, the memory that training
    the model needs (at `TrainConfig`'s default batch size) is estimated: above what this process can have, a
    `MemoryLimitError` says so and how to shrink the model (`check_memory=False` skips the check); a model that
    will take much of the machine, or an MLP on large images, gets a warning (`vae_core.system.memory`).
    """
    _check_name(backend)
    seed = check_seed("build", seed)
    if spec is None:
        spec = VAESpec()
    elif not isinstance(spec, VAESpec):
        raise TypeError(f"spec must be a vae_core.VAESpec or None; got {type(spec).__name__}. "
                        f"Build one with VAESpec(...) or VAESpec.from_dict(d)")
    if overrides:
        spec = spec.replace(**overrides)
    if check_memory:
        _check_memory(spec, TrainConfig().batch_size, backend)
    return backend_module(backend).build_model(spec, seed=seed)


def _check_memory(spec: VAESpec, batch_size: int, backend: str) -> None:
    """Refuse a model whose training cannot fit in memory; warn of one that takes much of it."""
    _, notes = check_training_memory(spec, batch_size=batch_size, backend=backend)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=caller_stacklevel())


def fit(model: Any, train: Any, val: Any = None, config: Any = None, **kwargs: Any) -> dict[str, list[float]]:
    """Train a model of any backend: forwards to `backends.<name>.fit` (see its keyword arguments)."""
    return backend_of(model)[1].fit(model, train, val, TrainConfig() if config is None else config, **kwargs)


def evaluate(model: Any, x: Any, **kwargs: Any) -> dict[str, float]:
    """Test -ELBO, recon and KL (exact means over `x`) for a model of any backend."""
    return backend_of(model)[1].evaluate(model, x, **kwargs)


def save_checkpoint(path: str | os.PathLike, model: Any, *, train_config: TrainConfig | None = None,
                    epoch: int = 0, history: dict[str, list[float]] | None = None, optimizer: Any = None,
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Save a backend model (and optionally its Adam optimizer) as a checkpoint of the current schema."""
    name, module = backend_of(model)
    adam = None if optimizer is None else module.weights.export_adam(model, optimizer)
    ckpt = Checkpoint(spec=model.spec, weights=module.weights.export_weights(model), train_config=train_config,
                      epoch=epoch, history=history or {}, adam=adam, trainer_state=trainer_state or {},
                      backend=name)
    return write_checkpoint(path, ckpt)


def load_checkpoint(path: str | os.PathLike, backend: str, *, check_memory: bool = True) -> Any:
    """Rebuild the model a checkpoint describes in `backend` (a name of `BACKENDS`), with its weights loaded.

    Memory is checked as `build` does, at the checkpoint's own batch size, before the model is built."""
    module = backend_module(backend)
    ckpt = read_checkpoint(path)
    if check_memory:
        config = ckpt.train_config or TrainConfig()
        _check_memory(ckpt.spec, config.batch_size, backend)
    model = module.build_model(ckpt.spec, seed=0)
    module.weights.import_weights(model, ckpt.weights)
    return model
