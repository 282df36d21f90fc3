"""Backends by name, imported only when asked for, and `build`."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from vae_core.spec import VAESpec

# backend name -> (module, the frameworks it imports, the pip extra that installs them)
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "torch": ("backends.torch", ("torch",), "torch"),
    "tf": ("backends.tf", ("tensorflow", "keras", "tf_keras"), "tf"),
}


def _check_name(backend: Any) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}; got {backend!r}")


def backend_module(backend: str) -> ModuleType:
    """The backend's package (`backends.torch` or `backends.tf`), importing its framework now."""
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
        raise TypeError(f"model must be a vae_core model built by build('torch'|'tf', ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")
    return name, backend_module(name)


def build(backend: str, spec: VAESpec | None = None, *, seed: int | None = None, **overrides: Any) -> Any:
    """Build the VAE of `spec` in `backend` and return that framework's native model.

    `overrides` change spec fields (`build("tf", latent_dim=2)`). The same `seed` gives the same initial
    weights in every backend; `seed=None` draws fresh ones.
    """
    _check_name(backend)
    if spec is None:
        spec = VAESpec()
    elif not isinstance(spec, VAESpec):
        raise TypeError(f"spec must be a vae_core.VAESpec or None; got {type(spec).__name__}. "
                        f"Build one with VAESpec(...) or VAESpec.from_dict(d)")
    if overrides:
        spec = spec.replace(**overrides)
    return backend_module(backend).build_model(spec, seed=seed)


def fit(model: Any, train: Any, val: Any = None, config: Any = None, **kwargs: Any) -> dict[str, list[float]]:
    """Train a model of either backend: forwards to `backends.<name>.fit` (see its keyword arguments)."""
    from vae_core.config import TrainConfig

    return backend_of(model)[1].fit(model, train, val, TrainConfig() if config is None else config, **kwargs)


def evaluate(model: Any, x: Any, **kwargs: Any) -> dict[str, float]:
    """Test -ELBO, recon and KL (exact means over `x`) for a model of either backend."""
    return backend_of(model)[1].evaluate(model, x, **kwargs)
