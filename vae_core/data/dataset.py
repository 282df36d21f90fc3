"""`Dataset` (a train/test split), Bernoulli binarization, and the import of the data extra's optional packages."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from vae_core.checks import fail
from vae_core.data.mapped import MappedRows

DATA_EXTRA = "pip install 'vae-core[data]'"

# Class names, label by label: what the plots and `vae compare` show instead of 0-9.
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                          "Sneaker", "Bag", "Ankle boot")

@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split; pixels are float32 in [0, 1] (or uint8 0-255, read as x / 255), labels int64.

    `x_train` is (N, D) rows in memory, rows that stay in a .npy (`MappedRows`), or a map-style dataset (a
    torchvision dataset: `__len__` and `__getitem__` giving (image, label) items) that `fit` reads item by item.
    `class_names[y]` names label y, when the labels are classes with names.
    """

    name: str
    x_train: np.ndarray | MappedRows | Any  # (N, D) float32 in [0, 1] or uint8; a .npy's map; a map-style dataset
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, D) float32 in [0, 1], or uint8
    y_test: np.ndarray  # (M,) int64
    image_shape: tuple[int, ...]  # (H, W), or (H, W, C) for colour
    class_names: tuple[str, ...] | None = None  # the name of each label, in label order; None: unnamed labels
    # each example's image file, relative to the folder read (`load_images` of a folder), in row order; else None
    files_train: tuple[str, ...] | None = None
    files_test: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for split, files, labels in (("train", self.files_train, self.y_train), ("test", self.files_test, self.y_test)):
            if files is not None and (not isinstance(files, tuple) or len(files) != len(labels)):
                fail("Dataset", f"files_{split}", f"None or a tuple of {len(labels)} file names (one per example)",
                     f"{type(files).__name__} of {len(files) if hasattr(files, '__len__') else '?'} names")
        names = self.class_names
        if names is None:
            return
        if not (isinstance(names, tuple) and names and all(isinstance(n, str) and n for n in names)):
            fail("Dataset", "class_names", "None or a non-empty tuple of non-empty str", names)
        top = max((int(y.max()) for y in (self.y_train, self.y_test) if len(y)), default=0)
        if top >= len(names):
            fail("Dataset", "class_names", f"a name for every label (labels go up to {top})",
                 f"{len(names)} names")

    @property
    def input_dim(self) -> int:
        shape = getattr(self.x_train, "shape", None)  # a map-style dataset has none: its images have image_shape
        return int(shape[1]) if shape is not None else int(np.prod(self.image_shape))

    def __repr__(self) -> str:
        train = getattr(self.x_train, "shape", None) or f"{type(self.x_train).__name__} of {len(self.x_train)} items"
        return (f"Dataset(name={self.name!r}, x_train={train}, "
                f"x_test={self.x_test.shape}, image_shape={self.image_shape})")

def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli sample per pixel: 1 with probability x. Returns float32 0/1."""
    if not isinstance(rng, np.random.Generator):
        fail("binarize", "rng", "a numpy.random.Generator", rng, "Pass np.random.default_rng(seed).")
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        fail("binarize", "x", "a numeric array of probabilities in [0, 1]", f"dtype {x.dtype}")
    finite = np.isfinite(x)
    if not finite.all():  # named first: a range of the finite values would hide the NaN
        where = np.argwhere(~finite)
        fail("binarize", "x", "finite values in [0, 1]", f"NaN or inf at {len(where)} position(s), the first at "
             f"index {tuple(int(i) for i in where[0])}", "Clean or drop those examples first.")
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        fail("binarize", "x", "finite values in [0, 1]", f"values in [{x.min()}, {x.max()}]",
             "Scale pixels to [0, 1] first.")
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)

def import_optional(module: str, purpose: str, extra: str = DATA_EXTRA) -> Any:
    """`module`, or an ImportError naming `purpose` and the extra that installs it (`extra`, a pip command)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the optional package {module.split('.')[0]!r}; "
                          f"install it with: {extra}") from exc
