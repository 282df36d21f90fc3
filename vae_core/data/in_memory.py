"""Map-style datasets whose items are rows of one in-memory array, read a batch at a time: torchvision's MNIST
family (MNIST, FashionMNIST, KMNIST, EMNIST) and CIFAR-10/100 without a transform, and a torch `Subset` of one.

Their `__getitem__` turns `data[i]` into a PIL image per item (about 25 µs each, more than the training step spends
on an example); the pixels are those of `data[i]`, value for value. `batch_reader(dataset)` returns a function
positions -> `data[positions]`, one gather per batch, or None for any other dataset, which `ItemRows` then reads
item by item. A dataset is recognised by its class's `__getitem__` being torchvision's own (a subclass that
overrides it is read item by item, as it asks), its `transform` being None, and its `data` holding one row per
item; torchvision is never imported here.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

# (module, qualified name) of the `__getitem__`s that return PIL.Image.fromarray(data[i]) (with its label)
_IN_MEMORY_GETITEMS = {("torchvision.datasets.mnist", "MNIST.__getitem__"),
                       ("torchvision.datasets.cifar", "CIFAR10.__getitem__")}


def batch_reader(dataset: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """positions -> the examples of those items as one array, for the datasets above; else None."""
    kind = type(dataset)
    if kind.__name__ == "Subset" and kind.__module__.startswith("torch.utils.data"):
        inner = batch_reader(dataset.dataset)
        if inner is None:
            return None
        indices = np.asarray(dataset.indices, np.int64)  # (len(subset),)
        return lambda positions: inner(indices[positions])
    getitem = getattr(kind, "__getitem__", None)
    if (getattr(getitem, "__module__", None), getattr(getitem, "__qualname__", None)) not in _IN_MEMORY_GETITEMS:
        return None
    data = getattr(dataset, "data", None)
    if getattr(dataset, "transform", None) is not None or data is None or len(data) != len(dataset):
        return None
    pixels = np.asarray(data)  # a CPU torch tensor's memory, not a copy: (N, H, W) or (N, H, W, C) uint8
    if pixels.dtype != np.uint8:
        return None
    return lambda positions: pixels[positions]
