"""What kind of data source a user handed over, when it is not an array: a map-style dataset, an iterable of
batches, or something `fit` cannot read (and then a TypeError whose hint is true for that kind).

- map-style (`__len__` and `__getitem__`: a torch `Dataset`, `Subset`, a torchvision dataset) -> `ItemRows`, read
  by index in the trainer's order;
- re-iterable (`__iter__` starts a new pass: a torch `DataLoader`, a `tf.data.Dataset`, a class of yours) ->
  `BatchStream`, read front to back in its own order; for data read whole (`val`, `evaluate`), one pass of it in
  memory;
- refused, each with its own fix: a path, a dict, a list or tensor (convert it), a torch `IterableDataset` (it
  yields examples, not batches: wrap it in a DataLoader), and a one-shot iterator or generator (fit reads one
  pass per epoch).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from vae_core.data.items import ItemRows
from vae_core.data.stream import BatchStream, read_stream
from vae_core.model.spec import VAESpec

ACCEPTED = ("a NumPy array of shape {layouts}, a .npy map (np.load(path, mmap_mode='r'), or "
            "vae_core.data.load_images), a map-style dataset (__len__ and __getitem__, such as a torch Dataset) of "
            "examples or (example, label, ...) items, or a re-iterable of batches (a torch DataLoader, a "
            "tf.data.Dataset)")


def as_source(x: Any, spec: VAESpec, argument: str, layouts: str, *, stream: bool
              ) -> ItemRows | BatchStream | np.ndarray:
    """`x` as `ItemRows` (a map-style dataset) or, for an iterable of batches, a `BatchStream` when `stream` (a
    training set read a batch at a time) or its one pass as an array; otherwise the TypeError that names the kinds
    accepted and what to do with this one."""
    if isinstance(x, (ItemRows, BatchStream)):
        x = x.dataset if isinstance(x, ItemRows) else x.stream
    kind = type(x)
    name = kind.__name__
    array_like = any(hasattr(x, a) for a in ("__array__", "__array_interface__", "__array_struct__"))
    iterable_dataset = any(c.__name__ == "IterableDataset" for c in kind.__mro__)
    plain = not (array_like or iterable_dataset or isinstance(x, (str, bytes, Mapping, list, tuple)))
    if plain and hasattr(kind, "__len__") and hasattr(kind, "__getitem__"):
        return ItemRows(x, spec, argument)
    if plain and hasattr(kind, "__iter__") and not hasattr(kind, "__next__"):
        return BatchStream(x, spec, argument) if stream else read_stream(x, spec, argument)
    if isinstance(x, (str, bytes, os.PathLike)):
        found = (f"got {name} {str(x)[:80]!r}, a path? Load a .npy, .npz or a folder of images with "
                 f"vae_core.data.load_images(path)")
    elif isinstance(x, Mapping):
        found = f"got a {name} with keys {list(x)[:5]}: pass the array of examples it holds, e.g. {argument}['x']"
    elif isinstance(x, (list, tuple)) or array_like:
        found = f"got {name}: convert it with np.asarray(...) (a torch tensor: x.cpu().numpy())"
    elif iterable_dataset:
        found = (f"got {name}, an IterableDataset, which yields examples one at a time: wrap it in "
                 f"torch.utils.data.DataLoader({argument}, batch_size=...) to give batches")
    elif hasattr(kind, "__next__"):
        found = (f"got {name}, an iterator (a generator?), which can be read once: fit reads one pass per epoch. "
                 f"Pass an object whose __iter__ starts a new pass (a DataLoader, a tf.data.Dataset, or a class "
                 f"with __iter__ yielding the batches)")
    else:
        found = f"got {name}, which has neither __len__ and __getitem__ nor __iter__"
    raise TypeError(f"{argument} must be {ACCEPTED.format(layouts=layouts)}; {found}")
