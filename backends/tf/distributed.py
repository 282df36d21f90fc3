"""tf.distribute for `backends.tf.fit`: the strategy a model was built under, and MirroredStrategy over N devices.

A model built inside `strategy.scope()`, the Keras way, keeps that strategy; `backends.tf.fit` then trains it
under the strategy: Keras' `fit` splits each global batch between the replicas, the train step
(`backends.tf.steps`) weights each example by 1 / the global batch, and `TorchAdam` clips the global norm of the
summed gradient. A strategy's replicas live in one process, so to `vae_core.train.loop` the run is one process
(`vae_core.train.world.SINGLE`).

The torch backend's `distributed` module has the same role for torch.distributed.
"""
from __future__ import annotations

import tensorflow as tf

from vae_core.checks import check_int
from vae_core.train.world import SINGLE, World, launched_world_size


def rank_device(device: str) -> str:
    """The device name this process trains on: `device` (a strategy's replicas are placed by the strategy)."""
    return device


def join(device: str) -> World:
    """The processes this process trains with: always `SINGLE`, as a strategy's replicas live in one process
    (multi-worker strategies are not supported: README, "Data-parallel training"). A process that a launcher
    started as one of several (torchrun's WORLD_SIZE > 1) is refused: each would train its own model."""
    del device
    if launched_world_size() > 1:
        raise ValueError(f"fit: this process is one of WORLD_SIZE={launched_world_size()} started by a launcher "
                         f"(torchrun), but the TF backend trains in one process: each would train a model of its "
                         f"own. Start one process, and build the model under tf.distribute.MirroredStrategy() to "
                         f"use several devices (vae train --backend tf --nproc N does)")
    return SINGLE


def strategy_of(model) -> tf.distribute.Strategy | None:
    """The tf.distribute strategy `model` was built under, or None for the default (no strategy). Keras records
    it at construction; its public `distribute_strategy` falls back to the default strategy instead of None."""
    return getattr(model, "_distribute_strategy", None)


def check_strategy(model) -> tf.distribute.Strategy | None:
    """`strategy_of(model)` if `fit` trains under it: None or a MirroredStrategy (one host, any number of
    devices). Any other raises ValueError: MultiWorkerMirroredStrategy fails inside Keras 3's own fit
    (scripts/results/probe_multiworker_tf.md), and the others are untested."""
    strategy = strategy_of(model)
    if strategy is None or isinstance(strategy, tf.distribute.MirroredStrategy):
        return strategy
    why = ("Keras' fit fails under it for this model: it cannot reduce a first batch of dict inputs, nor scalar "
           "metrics (scripts/results/probe_multiworker_tf.md, keras-team/keras#20585)"
           if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else "it is untested")
    raise ValueError(f"fit: the model was built under {type(strategy).__name__}, which vae_core does not support: "
                     f"{why}. Build it under tf.distribute.MirroredStrategy (the devices of one host), or train "
                     f"across hosts with the torch backend under torchrun")


def replicas(model) -> int:
    """The replicas of one training step: the strategy's `num_replicas_in_sync`, 1 without a strategy."""
    strategy = strategy_of(model)
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def mirrored_strategy(n: int) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over n devices of this host: the first n GPUs when there are that many, else the CPU
    split into n logical devices (TF's way to run replicas on one CPU; they share its cores). The split must
    happen before TensorFlow first uses its devices."""
    n = check_int("mirrored_strategy", "n", n, minimum=1, fix="Pass the number of devices")  # np.int64 too
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= n:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(n)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    logical = tf.config.get_logical_device_configuration(cpu)
    if not logical or len(logical) < n:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            raise RuntimeError(f"mirrored_strategy({n}): this host has {len(gpus)} GPU(s), and TensorFlow's CPU "
                               f"can no longer be split into {n} logical devices because TensorFlow has already "
                               f"started; call it before any other TensorFlow work") from None
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
