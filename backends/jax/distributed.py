"""Data-parallel training for `backends.jax.fit` the JAX way: a `jax.sharding.Mesh` over the devices of this host.

    mesh = backends.jax.distributed.local_mesh(4)     # 4 GPUs, or the CPU split into 4 XLA devices
    with jax.set_mesh(mesh):
        vae_core.fit(model, x, ...)

Under a mesh of one axis and several devices, `fit` places the weights and Adam's state replicated on every device
and splits each block's batches along the batch axis (`batch_split`); XLA's SPMD partitioner then runs the one
compiled step on every device with the all-reduces of the gradient and of the batch means added, so the step is
the one-device step, data-parallel (equal to it to float rounding: tests/reliability/test_data_parallel.py). The
mesh's devices live in one process, so to `vae_core.train.loop` the run is one process
(`vae_core.train.world.SINGLE`), as a TF MirroredStrategy's replicas are.

Several hosts (JAX's multi-controller runtime, `jax.distributed.initialize`) are not supported: a process that a
launcher started as one of several (WORLD_SIZE > 1) is refused; train across hosts with the torch backend under
torchrun. The torch backend's `distributed` module has the same role for torch.distributed, TF's for tf.distribute.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from vae_core.checks import check_int
from vae_core.train.world import SINGLE, World, launched_world_size

BATCH_AXIS = "batch"  # the axis name `local_mesh` gives its mesh


def rank_device(device: str) -> str:
    """The device name this process trains on: `device` (a mesh's devices are placed by the mesh)."""
    return device


def join(device: Any) -> World:
    """The processes this process trains with: always `SINGLE`, as a mesh's devices live in one process. A process
    that a launcher started as one of several (torchrun's WORLD_SIZE > 1) is refused: each would train its own
    model."""
    del device
    if launched_world_size() > 1:
        raise ValueError(f"fit: this process is one of WORLD_SIZE={launched_world_size()} started by a launcher "
                         f"(torchrun), but the jax backend trains in one process: each would train a model of its "
                         f"own. Start one process and train under jax.set_mesh(backends.jax.distributed."
                         f"local_mesh(N)) to use several devices (vae train --backend jax --nproc N does)")
    return SINGLE


def local_mesh(n: int) -> Mesh:
    """A one-axis mesh ("batch") over n devices of this host: the first n GPUs when JAX sees that many, else the
    CPU split into n XLA devices (`jax_num_cpu_devices`; they share its cores), which must happen before JAX first
    runs anything in this process."""
    n = check_int("local_mesh", "n", n, minimum=1, fix="Pass the number of devices")
    if jax.config.jax_num_cpu_devices < n:  # first: looking for GPUs starts JAX, after which the CPU stays whole
        try:
            jax.config.update("jax_num_cpu_devices", n)
        except RuntimeError:  # JAX has started: the devices it has are checked below
            pass
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if len(gpus) >= n:
        return Mesh(gpus[:n], (BATCH_AXIS,), axis_types=(AxisType.Auto,))
    cpus = jax.devices("cpu")
    if len(cpus) < n:
        raise RuntimeError(f"local_mesh({n}): this host has {len(gpus)} GPU(s), and JAX's CPU can no longer be "
                           f"split into {n} devices because JAX has already started with {len(cpus)}; call it "
                           f"before any other JAX work (or set XLA_FLAGS=--xla_force_host_platform_device_count={n} "
                           f"before starting Python)")
    return Mesh(cpus[:n], (BATCH_AXIS,), axis_types=(AxisType.Auto,))


def mesh_of_context() -> Mesh | None:
    """The mesh `fit` trains under: the one `jax.set_mesh` set, if it has several devices; None otherwise. A mesh of
    more than one axis is refused (the batch is split along one)."""
    mesh = jax.sharding.get_mesh()
    if mesh is None or mesh.empty or mesh.size == 1:
        return None
    if len(mesh.axis_names) != 1:
        raise ValueError(f"fit: the mesh set by jax.set_mesh has axes {dict(mesh.shape)}, but the jax backend splits "
                         f"the batch along one axis; set a one-axis mesh (backends.jax.distributed.local_mesh(N), "
                         f"or jax.make_mesh((N,), ('batch',)))")
    return mesh


@contextlib.contextmanager
def auto_mesh(mesh: Mesh) -> Iterator[Mesh]:
    """`mesh` with its axis in Auto mode (XLA's partitioner places what the trainer does not) while the block runs:
    the trainer's programs are written for one device and split by their inputs' shardings."""
    auto = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    with jax.set_mesh(auto):
        yield auto


def replicated(mesh: Mesh) -> NamedSharding:
    """The same array on every device of the mesh (the weights, Adam's state, the data set)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_split(mesh: Mesh) -> NamedSharding:
    """A block's (steps, batch, ...) arrays split along the batch axis between the mesh's devices."""
    return NamedSharding(mesh, PartitionSpec(None, mesh.axis_names[0]))
