"""`Dataset` (a train/test split), Bernoulli binarization, and the import of the data extra's optional packages."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from vae_core.checks import fail
from vae_core.data.mapped import MappedRows

DATA_EXTRA = "pip install 'vae-core[data]'"

@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split; pixels are float32 in [0, 1] (or uint8 0-255, read as x / 255), labels int64."""

    name: str
    x_train: np.ndarray | MappedRows  # (N, D) float32 in [0, 1], or uint8; a .npy's stays in its file
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, D) float32 in [0, 1], or uint8
    y_test: np.ndarray  # (M,) int64
    image_shape: tuple[int, ...]  # (H, W), or (H, W, C) for colour

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, image_shape={self.image_shape})")

def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli sample per pixel: 1 with probability x. Returns float32 0/1."""
    if not isinstance(rng, np.random.Generator):
        fail("binarize", "rng", "a numpy.random.Generator", rng, "Pass np.random.default_rng(seed).")
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        fail("binarize", "x", "a numeric array of probabilities in [0, 1]", f"dtype {x.dtype}")
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1):
        got = f"values in [{np.nanmin(x)}, {np.nanmax(x)}]" if np.isfinite(x).any() else "non-finite values"
        fail("binarize", "x", "finite values in [0, 1]", got, "Scale pixels to [0, 1] first.")
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)

def import_optional(module: str, purpose: str) -> Any:
    """`module`, or an ImportError naming `purpose` and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the optional package {module.split('.')[0]!r}; "
                          f"install it with: {DATA_EXTRA}") from exc
