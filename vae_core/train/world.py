"""The processes of one training run, as the neutral trainer sees them.

One process trains alone (`SINGLE`). Under torchrun (`backends.torch.distributed`) the run has one process per
rank, and the trainer keeps them in step: every rank computes the same history, the same stop decisions and the
same epoch times, and rank 0 alone writes checkpoints and shows progress. TensorFlow's MirroredStrategy runs its
replicas inside one process, so a TF run is always `SINGLE` here; its replicas are the backend's business.

What the processes split is the data: `TrainConfig.batch_size` is the global batch (the examples of one optimizer
step, over all processes), and `shard` says which of a batch's rows a process takes.
"""
from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class World(Protocol):
    """The processes of a run and the two collectives the trainer needs."""

    rank: int  # this process, 0-based; rank 0 writes checkpoints and shows progress
    size: int  # the number of processes

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Elementwise sum of `values` over the processes (float64, the same shape on every process)."""

    def max(self, values: np.ndarray) -> np.ndarray:
        """Elementwise maximum of `values` over the processes (float64)."""


class SingleProcess:
    """A run of one process: the collectives return their input."""

    rank, size = 0, 1

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64)

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64)


SINGLE = SingleProcess()


def launched_world_size() -> int:
    """The WORLD_SIZE a launcher (torchrun) set for this process; 1 when none did."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE must be an int (torchrun sets it); got "
                         f"{value!r}") from None


def launched_rank() -> int:
    """The RANK a launcher set for this process; 0 when none did."""
    return int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0


def shard(n_rows: int, size: int, rank: int) -> tuple[int, int]:
    """The rows [lo, hi) of a batch of `n_rows` that process `rank` of `size` takes: contiguous, as even as
    possible, the first n_rows % size processes one row more (np.array_split's split). A process may get none
    (a last batch smaller than the world); it still takes part in the step."""
    base, extra = divmod(n_rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def check_global_batch(batch_size: int, size: int, what: str) -> None:
    """`TrainConfig.batch_size` is the global batch: it must split evenly over `size` processes or replicas."""
    if batch_size % size:
        lower, upper = batch_size // size * size, -(-batch_size // size) * size
        options = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(f"fit: TrainConfig.batch_size must divide by the number of {what} ({size}), as it is the "
                         f"global batch (the examples of one optimizer step, over all of them); got "
                         f"batch_size={batch_size}. Use a multiple of {size}, such as {options}")
