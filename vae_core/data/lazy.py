"""Examples read on demand, by position: what a trainer streams a batch at a time instead of holding in memory.

`LazyRows` is the one interface both backends' trainers read: `take(positions)` returns the examples at those
positions, in that order, as one (len(positions), ...) ndarray; `shape`, `dtype` and `len` say what it holds
without reading it. Three kinds implement it:

- `vae_core.data.mapped.MappedRows`: rows of a memory-mapped `.npy` file;
- `vae_core.data.items.ItemRows`: the items of a map-style dataset (`__len__` and `__getitem__`, such as a torch
  `Dataset`), each read and checked as it is taken;
- `vae_core.data.stream.BatchStream`: the examples of an iterable of batches (a `DataLoader`, a `tf.data.Dataset`),
  read front to back in the order it yields (`sequential`).

The rest (indexing, a chunked scan, `np.asarray`) is written here once, on top of `take`.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

CHUNK_BYTES = 64 << 20  # `chunks` reads at most this much at a time


class LazyRows:
    """(N, ...) examples read by position. Subclasses set `shape` and `dtype` and implement `take`."""

    shape: tuple[int, ...]
    dtype: np.dtype
    # True for a source read front to back only, in its own order (a stream of batches): the trainer then keeps
    # that order instead of choosing its own, and cannot resume mid-epoch
    sequential: bool = False

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The examples at `positions` (0 <= p < len(self)), in that order: (len(positions), *shape[1:])."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_bytes(self) -> int:
        """Bytes one example takes while it is read (what `chunks` budgets)."""
        return int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        return self.take(np.arange(len(self))[np.asarray(key)])

    def chunks(self) -> Iterator[np.ndarray]:
        """Every example in order, at most CHUNK_BYTES at a time: a scan that never holds the whole set."""
        return self.chunks_of(CHUNK_BYTES)

    def chunks_of(self, budget: int) -> Iterator[np.ndarray]:
        """Every example in order, at most `budget` bytes at a time (at least one example)."""
        step = max(1, budget // max(1, self.row_bytes))
        for lo in range(0, len(self), step):
            yield self.take(np.arange(lo, min(lo + step, len(self))))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:  # NumPy 2's protocol: reading the examples is always a copy
            raise ValueError(f"{type(self).__name__}: np.asarray(rows, copy=False) cannot avoid reading the rows "
                             f"into memory; use copy=None (the default) or take(positions) for a batch")
        out = np.empty(self.shape, self.dtype)
        lo = 0
        for chunk in self.chunks():
            out[lo:lo + len(chunk)] = chunk
            lo += len(chunk)
        return out if dtype is None else out.astype(dtype, copy=False)
