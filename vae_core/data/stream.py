"""An iterable of batches (a torch `DataLoader`, a `tf.data.Dataset`, or any object that starts a new pass each time
it is iterated) seen as (N, D) rows in the order it yields them: what `fit` trains one pass per epoch.

`BatchStream(stream, spec, argument)` is a `vae_core.data.lazy.LazyRows` whose position p is the p-th example of a
pass. It is read front to back only (`sequential`): `take` from position 0 starts a new pass (`iter(stream)`),
and every other `take` continues where the last one stopped. The trainer cuts the examples into its own
`TrainConfig.batch_size` steps as they arrive, in the stream's order, so the stream's batch size does not matter
(give the loader `batch_size=config.batch_size` to make its batches the steps), and history means stay exact over
the examples.

A batch is an array-like of examples, an `(examples, labels, ...)` tuple, or a dict with an "x" key; its examples
are checked as `vae_core.data.examples.ExampleReader` reads them (the first batch decides uint8 or float). N must
be known before training: a `DataLoader` that batches a map-style dataset says it (its sampler's length, less the
last batch with drop_last); any other stream is read once before training to count (and check) its examples. Every
later pass must yield the same number of examples, or the read that finds out fails naming the pass.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator

import numpy as np

from vae_core.data.examples import ExampleReader
from vae_core.data.lazy import LazyRows
from vae_core.model.spec import VAESpec


class _Passes:
    """Passes over `stream`, one batch at a time, each batch's examples checked by one `ExampleReader`."""

    def __init__(self, stream: Any, spec: VAESpec, argument: str):
        self.stream, self.argument = stream, argument
        self.reader = ExampleReader(spec, argument)
        self.passes = 0  # passes started
        self.batches = 0  # batches read in this pass
        self.iterator: Iterator[Any] | None = None

    def start(self) -> None:
        self.iterator = None  # the last pass's iterator goes first (a DataLoader's workers shut down)
        self.passes, self.batches = self.passes + 1, 0
        try:
            self.iterator = iter(self.stream)
        except Exception as e:
            raise ValueError(f"iter({self.argument}) raised {type(e).__name__}: {e} (starting pass {self.passes}); "
                             f"fit iterates it once per epoch") from e

    def next_rows(self) -> np.ndarray | None:
        """The next batch of this pass as checked (b, D) rows, or None at the pass's end."""
        where = f"{self.argument} (batch {self.batches} of pass {self.passes}, 0-based)"
        try:
            batch = next(self.iterator)
        except StopIteration:
            return None
        except Exception as e:
            raise ValueError(f"{where} raised {type(e).__name__}: {e}; fix the data source") from e
        self.batches += 1
        # owned and writable (a TF tensor's array is read-only; torch.from_numpy warns on one)
        return np.require(self.reader.rows(batch, where, batch=True), requirements=["C", "W"])

    def whole(self) -> Iterator[np.ndarray]:
        """A new pass, batch by batch."""
        self.start()
        while (rows := self.next_rows()) is not None:
            yield rows
        self.iterator = None


class BatchStream(LazyRows):
    """The examples of `stream`'s batches as (N, D) rows, read in order, one pass at a time."""

    sequential = True  # read front to back: the trainer keeps the stream's order

    def __init__(self, stream: Any, spec: VAESpec, argument: str = "train"):
        self.stream, self.argument, self.d = stream, argument, spec.input_dim
        self._passes = _Passes(stream, spec, argument)
        self._lock = threading.Lock()
        self._next = 0  # the position the next take continues from
        self._buffer: list[np.ndarray] = []  # rows read from the stream and not taken yet, in order
        n = _loader_length(stream)
        if n is None:
            n = sum(len(rows) for rows in self._passes.whole())  # reads and checks every batch once
        else:  # a DataLoader's first batch decides the dtype; its pass is the one the first take continues
            self._passes.start()
            self._buffer.append(self._passes.next_rows())
        if n == 0 or self.dtype is None:
            raise ValueError(f"{argument} is empty: it yielded no examples; pass at least one")
        self.shape = (n, self.d)

    @property
    def dtype(self) -> np.dtype | None:  # uint8 or float32: the first batch decides
        return self._passes.reader.dtype

    @property
    def passes(self) -> int:
        """Passes over the stream started so far (the count before training is the first, for most streams)."""
        return self._passes.passes

    def __repr__(self) -> str:
        return f"BatchStream({type(self.stream).__name__} of {self.shape[0]} examples as {self.dtype} rows)"

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The examples at `positions`, consecutive and ascending: from 0 in a new pass, else from where the last
        take stopped."""
        positions = np.asarray(positions, np.int64).reshape(-1)
        if len(positions) == 0:
            return np.empty((0, self.d), self.dtype)
        first = int(positions[0])
        if not np.array_equal(positions, np.arange(first, first + len(positions))) or \
                first < 0 or first + len(positions) > len(self):
            raise ValueError(f"{self.argument} is a stream of batches, read in order: positions must be consecutive "
                             f"and inside [0, {len(self)}); got {positions[:4].tolist()}...")
        with self._lock:
            fresh = self._passes.iterator is not None and self._next == 0  # a pass started, nothing taken yet
            if first == 0 and not fresh:
                self._passes.start()
                self._next, self._buffer = 0, []
            elif first != self._next:
                raise ValueError(f"{self.argument} is a stream of batches, read in order: the next position of pass "
                                 f"{self.passes} is {self._next}, not {first}")
            rows = self._rows(len(positions))
            self._next += len(positions)
            if self._next == len(self):
                self._end()
        return rows

    def _rows(self, k: int) -> np.ndarray:
        """The next k rows of this pass."""
        have = sum(len(r) for r in self._buffer)
        while have < k:
            rows = self._passes.next_rows()
            if rows is None:
                raise ValueError(f"{self.argument} ended pass {self.passes} after {self._next + have} examples, but "
                                 f"it held {len(self)} when fit started: a stream must yield the same number of "
                                 f"examples every epoch (a DataLoader with drop_last, a fixed tf.data pipeline)")
            self._buffer.append(rows)
            have += len(rows)
        out = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer = [out[k:]] if have > k else []
        return out[:k]

    def _end(self) -> None:
        """The pass's N examples are taken: the stream must be spent."""
        extra = sum(len(r) for r in self._buffer) or self._passes.next_rows() is not None
        self._passes.iterator, self._buffer, self._next = None, [], 0
        if extra:
            raise ValueError(f"{self.argument} yielded more than {len(self)} examples in pass {self.passes}, the "
                             f"number it held when fit started: a stream must yield the same number of examples "
                             f"every epoch")


def _loader_length(stream: Any) -> int | None:
    """The examples of a torch `DataLoader` that batches a map-style dataset, from its sampler without reading a
    batch; None for any other stream."""
    if not all(hasattr(stream, a) for a in ("sampler", "batch_size", "drop_last", "dataset")):
        return None
    if stream.batch_size is None or any(c.__name__ == "IterableDataset" for c in type(stream.dataset).__mro__):
        return None  # its own batch_sampler, or an iterable dataset: count
    try:
        n = len(stream.sampler)
    except TypeError:
        return None
    return n - n % stream.batch_size if stream.drop_last else n


def read_stream(stream: Any, spec: VAESpec, argument: str) -> np.ndarray:
    """One pass of `stream` as (N, D) rows in memory, checked (uint8 kept): `val`, or `evaluate`'s `x`."""
    rows = list(_Passes(stream, spec, argument).whole())
    if not sum(len(r) for r in rows):
        raise ValueError(f"{argument} is empty: it yielded no examples; pass at least one")
    return np.concatenate(rows)
