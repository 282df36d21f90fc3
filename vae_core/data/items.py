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

torchvision's in-memory datasets (the MNIST family and CIFAR without a transform) are read a batch at a time from
their `data` (`vae_core.data.in_memory`): the same pixels as their items, without a PIL image per item.

Nothing is scanned up front (a transform may be expensive): item 0 is read once to learn the dtype, and each item
is checked as it is read. A bad item (shape, dtype, NaN or inf, a value outside [0, 1] for a Bernoulli decoder, an
item that raises) and a dataset whose length changes while it is read are one error that names the argument, the
index, what was expected and what was found.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.data.examples import ExampleReader
from vae_core.data.in_memory import batch_reader
from vae_core.data.lazy import LazyRows
from vae_core.model.spec import VAESpec


class ItemRows(LazyRows):
    """The examples of `dataset`'s items as (N, D) rows, checked as they are read; `argument` names it in errors."""

    def __init__(self, dataset: Any, spec: VAESpec, argument: str = "train"):
        self.dataset, self.argument = dataset, argument
        self.n = self._length()
        if self.n == 0:
            raise ValueError(f"{argument} is empty (len({argument}) is 0); pass at least one example")
        self.d = spec.input_dim
        self.reader = ExampleReader(spec, argument)
        self.shape = (self.n, self.d)
        self._row(0)
        self._batch = batch_reader(dataset)  # torchvision's in-memory datasets: a gather per batch (in_memory)  # item 0 decides the dtype, and a dataset of the wrong kind fails here, before training

    @property
    def dtype(self) -> np.dtype:  # uint8 or float32: item 0 decides
        return self.reader.dtype

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
        """The examples of the items at `positions`, in that order: (len(positions), D). An item asked for twice is
        read once; torchvision's in-memory datasets are read with one gather (`vae_core.data.in_memory`)."""
        if self._batch is not None:
            positions = np.asarray(positions, np.int64).reshape(-1)
            if len(positions) and not (0 <= positions.min() and positions.max() < self.n):
                raise IndexError(f"{self.argument}: positions outside [0, {self.n})")
            self._check_length()
            where = f"{self.argument}[{positions[:3].tolist()}...]"
            return self.reader.rows(self._batch(positions), where, batch=True)
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
        return self.reader.rows(item, where, batch=False)


