"""Examples that stay in a memory-mapped file and are read a batch at a time: a training set larger than memory.

`MappedRows(source, index)` is rows `index` of a memory-mapped array (`np.load(path, mmap_mode="r")`), like
torch's `Subset` of a map-style dataset: nothing is read until `take` asks for a batch, and the pages the OS
caches are file pages it can drop again. `vae_core.data.load_images` returns the training split of a `.npy` as
one; a backend's `fit` streams it (and any `np.memmap` it is given) batch by batch instead of copying it to the
device, and `iwae_nll` and `score` read it a batch at a time too. Other consumers (`evaluate`,
`posterior_means`) read it whole through `np.asarray`. It is a `vae_core.data.lazy.LazyRows`, the interface both
trainers stream.
"""
from __future__ import annotations

import mmap
from typing import Any, Iterator

import numpy as np

from vae_core.data.lazy import LazyRows

STORED_DTYPES = (np.uint8, np.float32, np.float64)  # what a map may hold; float64 is delivered as float32
CHUNK_BYTES = 64 << 20  # `chunks` reads at most this much at a time


class MappedRows(LazyRows):
    """Rows `index` (sorted, unique) of `source`, an (N_source, ...) array that is usually a `np.memmap`.

    shape is (len(index), *source.shape[1:]); dtype is uint8 or float32 (a float64 source is cast per read).
    `take(positions)` reads the rows at those positions, in that order, as one ndarray: the only read a trainer
    makes. Indexing with an int, a slice or an int array does the same; `np.asarray` reads every row.
    """

    def __init__(self, source: np.ndarray, index: np.ndarray | None = None):
        if not isinstance(source, np.ndarray) or source.ndim < 2 or source.dtype not in STORED_DTYPES:
            raise TypeError(f"MappedRows: source must be an array of uint8, float32 or float64 examples with at "
                            f"least 2 dimensions (N, ...); got {type(source).__name__} "
                            f"{getattr(source, 'dtype', '')} {getattr(source, 'shape', '')}. Open the file with "
                            f"np.load(path, mmap_mode='r') and pass that")
        index = np.arange(len(source), dtype=np.int64) if index is None else np.asarray(index, np.int64)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= len(source)
                                               or np.any(np.diff(index) <= 0))):
            raise ValueError(f"MappedRows: index must be sorted, unique row numbers in [0, {len(source)}); "
                             f"got {index.size} values in [{index.min() if index.size else '-'}, "
                             f"{index.max() if index.size else '-'}]. Pass np.unique(index) of rows that exist")
        self.source, self.index = source, index
        self.dtype = np.dtype(np.float32) if source.dtype == np.float64 else source.dtype
        self._mapping, self._start = _mapping_of(source)

    def _will_need(self, rows: np.ndarray) -> None:
        """Ask the OS to read these source rows' pages now, all at once (madvise WILLNEED, one call per run of
        adjacent pages): the row copy that follows then waits on reads already under way, instead of one page
        fault after another."""
        if self._mapping is None or len(rows) == 0:
            return
        page = mmap.PAGESIZE
        starts = self._start + np.sort(rows) * self.source.strides[0]  # (k,) byte offsets in the mapping
        first, last = starts // page, (starts + self.source[0].nbytes - 1) // page  # (k,) each row's pages
        # merge the rows' page ranges into runs: a new run where a range starts past every earlier one's end + 1
        new_run = np.concatenate([[True], first[1:] > np.maximum.accumulate(last)[:-1] + 1])
        run_first, run_last = first[new_run], np.maximum.reduceat(last, np.flatnonzero(new_run))
        for lo, hi in zip(run_first.tolist(), run_last.tolist()):
            self._mapping.madvise(mmap.MADV_WILLNEED, lo * page, (hi - lo + 1) * page)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.source.shape[1:])

    @property
    def ndim(self) -> int:
        return self.source.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"MappedRows(shape={self.shape}, dtype={self.dtype}, source={type(self.source).__name__})"

    def reshape(self, *shape: Any) -> "MappedRows":
        """The same rows with each example reshaped (the first dimension stays): (N, H, W, C) -> (N, H*W*C)."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        if not shape or shape[0] not in (len(self), -1):
            raise ValueError(f"MappedRows.reshape keeps the number of rows {len(self)}; got shape {shape}")
        return MappedRows(self.source.reshape(len(self.source), *shape[1:]), self.index)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The rows at `positions` (0 <= p < len(self)), in that order: (len(positions), *shape[1:])."""
        file_rows = self.index[np.asarray(positions, np.int64)]
        self._will_need(file_rows)
        rows = self.source[file_rows]
        return rows.astype(np.float32) if rows.dtype == np.float64 else np.asarray(rows)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row as stored (a float64 row is read before it is cast)."""
        return int(np.prod(self.shape[1:])) * self.source.dtype.itemsize

    def chunks(self) -> Iterator[np.ndarray]:
        """Every row in file order, at most CHUNK_BYTES at a time: a scan that never holds the whole set."""
        return self.chunks_of(CHUNK_BYTES)


def is_mapped(x: Any) -> bool:
    """Whether x is a C-contiguous view of a file memory map: what `fit` streams. A copy of a np.memmap keeps the
    type but no map, and a Fortran-order or strided view would need a copy to become rows."""
    return isinstance(x, np.memmap) and getattr(x, "_mmap", None) is not None and x.flags.c_contiguous \
        and x.ndim >= 2 and x.dtype in STORED_DTYPES


def _mapping_of(source: np.ndarray) -> tuple[mmap.mmap | None, int]:
    """The mmap.mmap behind a mapped `source` (`is_mapped`) and where its data starts in it, set to random access;
    (None, 0) for anything else. Batches read scattered rows: with the kernel's default read-ahead, each page fault
    reads far more than the row it needs, and an epoch of a file larger than memory reads the file many times over
    (docs: data, streaming)."""
    mapping = getattr(source, "_mmap", None)
    if not is_mapped(source) or not hasattr(mmap, "MADV_WILLNEED"):
        return None, 0
    mapping.madvise(mmap.MADV_RANDOM)
    base = np.frombuffer(mapping, np.uint8).__array_interface__["data"][0]
    return mapping, source.__array_interface__["data"][0] - base
