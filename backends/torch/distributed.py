"""torch.distributed for `backends.torch.fit`: the process group, each rank's device, and the trainer's `World`.

Under torchrun (or any launcher that sets the env:// variables WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT),
`fit` joins the process group the user's script started, or starts one itself: gloo for CPU tensors, NCCL for
CUDA. Each rank then trains on its shard of every global batch (`vae_core.train.world.shard`) inside
`DistributedDataParallel`, which averages the ranks' gradients during the backward pass.

The TF backend's `distributed` module has the same role for tf.distribute strategies.
"""
from __future__ import annotations

import atexit
import os

import numpy as np
import torch
import torch.distributed as dist

from vae_core.train.world import SINGLE, World, launched_world_size


def rank_device(device: str) -> str:
    """The device name a rank trains on: under a launcher with several processes, 'auto' and 'cuda' mean this
    rank's own GPU, cuda:LOCAL_RANK; any other name is kept. A host with fewer GPUs than local ranks is refused
    (NCCL cannot put two ranks on one GPU)."""
    if launched_world_size() > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= count:
            raise ValueError(f"fit: this is local rank {local} of a torchrun job, but this host has {count} GPU(s) "
                             f"for device={device!r}: start at most {count} processes per host "
                             f"(--nproc-per-node / vae train --nproc), or pass device='cpu'")
        return f"cuda:{local}"
    return device


def join(device: torch.device) -> World:
    """The processes this rank trains with: `SINGLE` without a launcher or process group of more than one; else
    the process group, started here through env:// if the script has not started one (gloo on the CPU, NCCL on
    CUDA) and left running for later fits, until the interpreter exits."""
    if not dist.is_available():
        return SINGLE
    if not dist.is_initialized():
        if launched_world_size() <= 1:
            return SINGLE
        backend = "nccl" if device.type == "cuda" else "gloo"
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise ValueError(f"fit: WORLD_SIZE={os.environ['WORLD_SIZE']} is set, so this process joins a "
                             f"torch.distributed group through env://, but {', '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set; launch the script with torchrun "
                             f"(torchrun --nproc-per-node N script.py), or unset WORLD_SIZE")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method="env://")
        atexit.register(_leave)
    if dist.get_world_size() == 1:
        return SINGLE
    return ProcessGroup(device)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ProcessGroup:
    """The default process group as a `vae_core.train.world.World`: its collectives run on `device` for NCCL, on the
    CPU for gloo."""

    def __init__(self, device: torch.device):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def sum(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(values, dist.ReduceOp.MAX)

    def _reduce(self, values: np.ndarray, op) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(values, np.float64), device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.cpu().numpy()
