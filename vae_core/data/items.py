"""A map-style dataset (`__len__` and `__getitem__`: a torch `Dataset`, `TensorDataset`, `Subset`, a torchvision
dataset, or any class of yours) seen as (N, D) rows that a trainer reads by position.

`ItemRows(dataset, spec, argument)` is a `vae_core.data.lazy.LazyRows`: `take(positions)` reads the items at those
positions, in that order, and returns their examples as one (len(positions), D) array, channels last. The trainer
keeps choosing the order and the noise, so a dataset trains exactly as the same rows given as an array.

An item is an example, or a tuple or list whose first element is the example (`(image, label)`, a
`TensorDataset`'s `(x,)`); the example is anything `np.asarray` reads: a NumPy array, a CPU torch tensor, a TF
tensor, a PIL image. Its shape is a row (D,), an image (H, W, C) (or (H, W) for one channel) of the spec's
image_shape, or a channels-first image (C, H, W) with C of 1 or 3, which becomes channels last. Its dtype is
uint8 (kept, read as x / 255) or float32/float64 (float32); the first item decides which, and every item must
agree.

Nothing is scanned up front (a transform may be expensive): item 0 is read once to learn the dtype, and each item
is checked as it is read. A bad item (shape, dtype, NaN or inf, a value outside [0, 1] for a Bernoulli decoder, an
item that raises) and a dataset whose length changes while it is read are one error that names the argument, the
index, what was expected and what was found.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from vae_core.data.lazy import LazyRows
from vae_core.model.spec import VAESpec

ITEM_DTYPES = (np.uint8, np.float32, np.float64)
ACCEPTED = ("a NumPy array of shape {layouts}, a .npy map (np.load(path, mmap_mode='r'), or "
            "vae_core.data.load_images), or a map-style dataset (__len__ and __getitem__, such as a torch Dataset) "
            "whose items are examples or (example, label, ...) tuples")


class ItemRows(LazyRows):
    """The examples of `dataset`'s items as (N, D) rows, checked as they are read; `argument` names it in errors."""

    def __init__(self, dataset: Any, spec: VAESpec, argument: str = "train"):
        self.dataset, self.argument = dataset, argument
        self.n = self._length()
        if self.n == 0:
            raise ValueError(f"{argument} is empty (len({argument}) is 0); pass at least one example")
        self.d = spec.input_dim
        self.image = None if spec.image_shape is None else (*spec.image_shape, 1)[:3]  # (H, W, C)
        self.unit_range = spec.likelihood == "bernoulli"
        self.shape = (self.n, self.d)
        self.dtype = None  # set by the first read: uint8 or float32
        self._row(0)  # item 0 decides the dtype, and a dataset of the wrong kind fails here, before training

    def __repr__(self) -> str:
        return f"ItemRows({type(self.dataset).__name__} of {self.n} items as ({self.n}, {self.d}) {self.dtype} rows)"

    def _length(self) -> int:
        try:
            n = len(self.dataset)
        except Exception as e:
            raise TypeError(f"len({self.argument}) raised {type(e).__name__}: {e}; a map-style dataset needs a "
                            f"length") from e
        return int(n)

    def _check_length(self) -> None:
        now = self._length()
        if now != self.n:
            raise ValueError(f"{self.argument} changed length while fit read it: len({self.argument}) was {self.n} "
                             f"when fit started, and is now {now}. fit reads items by index in its own order; keep "
                             f"the dataset's items (and its length) fixed while it trains")

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The examples of the items at `positions`, in that order: (len(positions), D). An item asked for twice
        (the padding of a last block) is read once."""
        positions = np.asarray(positions, np.int64).reshape(-1).tolist()
        self._check_length()
        slot: dict[int, int] = {}  # position -> its row, in first-read order
        for p in positions:
            slot.setdefault(p, len(slot))
        rows = np.empty((len(slot), self.d), self.dtype)  # (k, D)
        for p, k in slot.items():
            if not 0 <= p < self.n:
                raise IndexError(f"{self.argument}: position {p} is outside [0, {self.n})")
            rows[k] = self._row(p)
        self._check_length()
        return rows if len(slot) == len(positions) else rows[[slot[p] for p in positions]]

    def _row(self, i: int) -> np.ndarray:
        """Item i's example as a (D,) row of `self.dtype`, checked."""
        where = f"{self.argument}[{i}]"
        try:
            item = self.dataset[i]
        except Exception as e:
            raise ValueError(f"{where} raised {type(e).__name__}: {e}. Every index in [0, {self.n}) (its len) "
                             f"must give an example; fix or drop that item") from e
        example = item[0] if isinstance(item, (tuple, list)) and len(item) else item
        if isinstance(example, Mapping):
            raise TypeError(f"{where} is a {type(example).__name__} with keys {list(example)[:5]}; expected an "
                            f"example or an (example, label, ...) tuple. Return the example's array from "
                            f"__getitem__ (or wrap the dataset in one that does)")
        try:
            x = np.asarray(example)
        except Exception as e:
            raise TypeError(f"{where}: its example, a {type(example).__name__}, cannot be read as an array "
                            f"({type(e).__name__}: {e}); return a NumPy array or a CPU tensor without gradients "
                            f"(x.detach().cpu())") from e
        if x.dtype not in ITEM_DTYPES:
            raise TypeError(f"{where} has dtype {x.dtype} ({type(example).__name__}); expected float32, float64 "
                            f"or uint8 (read as x / 255). Convert it in the dataset, e.g. x.float() / 255")
        if self.dtype is None:
            self.dtype = np.dtype(np.uint8) if x.dtype == np.uint8 else np.dtype(np.float32)
        elif (x.dtype == np.uint8) != (self.dtype == np.uint8):
            raise TypeError(f"{where} has dtype {x.dtype}, but {self.argument}[0] is "
                            f"{'uint8' if self.dtype == np.uint8 else 'a float'}: every item must be uint8 images, "
                            f"or every item floats")
        row = self._as_row(x, where)
        if x.dtype != np.uint8:
            row = row.astype(np.float32, copy=False)  # the values an array's rows get (float64 is rounded first)
            if not np.isfinite(row).all():
                raise ValueError(f"{where} holds NaN or inf values ({int((~np.isfinite(row)).sum())} of "
                                 f"{self.d}); clean or drop that example")
            if self.unit_range and (row.min() < 0.0 or row.max() > 1.0):
                raise ValueError(f"{where} must lie in [0, 1] for a Bernoulli decoder; got values in "
                                 f"[{row.min():.4g}, {row.max():.4g}]. Scale pixels to [0, 1] (torchvision's "
                                 f"ToTensor does) or use likelihood='gaussian'")
        return row

    def _as_row(self, x: np.ndarray, where: str) -> np.ndarray:
        """An example (D,), (H, W, C), (H, W) when C is 1, or (C, H, W) when C is 1 or 3, as a (D,) row."""
        shape = x.shape
        if shape == (self.d,):
            return x
        if self.image is not None:
            h, w, c = self.image
            if shape == (h, w, c) or (c == 1 and shape == (h, w)):
                return x.reshape(self.d)
            if c in (1, 3) and shape == (c, h, w):
                return x.transpose(1, 2, 0).reshape(self.d)  # channels first (torch) -> channels last
        image_shape = None if self.image is None else self.image[:2] if self.image[2] == 1 else self.image
        fix = ("Give the spec an image_shape" if self.image is None and len(shape) > 1 else
               "Build the model with a VAESpec whose input_dim and image_shape match the data")
        raise ValueError(f"{where} has shape {shape}; expected an example of shape {item_layouts(self.d, self.image)} "
                         f"to match the spec (input_dim={self.d}, image_shape={image_shape}). {fix}")


def item_layouts(d: int, image: tuple[int, int, int] | None) -> str:
    """The shapes one example may take, for messages: "(D,)" and the image layouts."""
    layouts = [f"({d},)"]
    if image is not None:
        h, w, c = image
        layouts.append(f"({h}, {w}, {c})")
        if c == 1:
            layouts.append(f"({h}, {w})")
        if c in (1, 3):
            layouts.append(f"({c}, {h}, {w})")
    return " or ".join(layouts)


def as_dataset(x: Any, spec: VAESpec, argument: str, layouts: str) -> ItemRows:
    """`x` as `ItemRows` when it is a map-style dataset; otherwise the TypeError that names the kinds `fit` takes
    and what to do with this one."""
    if isinstance(x, ItemRows):
        x = x.dataset
    kind = type(x)
    array_like = any(hasattr(x, a) for a in ("__array__", "__array_interface__", "__array_struct__"))
    iterable_dataset = any(c.__name__ == "IterableDataset" for c in kind.__mro__)
    if (hasattr(kind, "__len__") and hasattr(kind, "__getitem__") and not array_like and not iterable_dataset
            and not isinstance(x, (str, bytes, Mapping, list, tuple))):
        return ItemRows(x, spec, argument)
    name = kind.__name__
    if isinstance(x, (str, bytes, os.PathLike)):
        found = (f"got {name} {str(x)[:80]!r}, a path? Load a .npy, .npz or a folder of images with "
                 f"vae_core.data.load_images(path)")
    elif isinstance(x, Mapping):
        found = f"got a {name} with keys {list(x)[:5]}: pass the array of examples it holds, e.g. {argument}['x']"
    elif isinstance(x, (list, tuple)) or array_like:
        found = f"got {name}: convert it with np.asarray(...) (a torch tensor: x.cpu().numpy())"
    elif iterable_dataset or hasattr(kind, "__iter__") or hasattr(kind, "__next__"):
        behind = f" ({argument}.dataset)" if hasattr(x, "dataset") else ""
        found = (f"got {name}, an iterable of batches or examples: fit reads examples by index, in its own order, "
                 f"so it does not take a DataLoader, a generator, an IterableDataset or a tf.data.Dataset; pass "
                 f"the map-style dataset behind it{behind}")
    else:
        found = f"got {name}, which has no __len__ and __getitem__"
    raise TypeError(f"{argument} must be {ACCEPTED.format(layouts=layouts)}; {found}")
