"""Where the TF backend computes: device names, exact float32 on CUDA, and NumPy -> tensors on a device.

The torch backend's `device` module has the same functions and signatures.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from vae_core.checks import check_int
from vae_core.system.threads import ThreadPolicy, check_threads
from vae_core.train.arguments import check_device_name


def resolve_device(device: Any, argument: str = "device") -> str:
    """The tf.device name: 'auto' -> the first GPU if TensorFlow sees one, else the CPU; 'cpu'; 'cuda' or
    'cuda:N' (ValueError when TensorFlow sees no such GPU)."""
    device = check_device_name(device, argument)
    gpus = tf.config.list_logical_devices("GPU")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= len(gpus):
            raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but TensorFlow "
                             f"{tf.__version__} sees {len(gpus)} GPU(s) (a CPU-only build, or no CUDA device); "
                             f"pass {argument}='cpu' or 'auto'")
        return f"/GPU:{index}"
    return "/GPU:0" if gpus and device == "auto" else "/CPU:0"


@contextlib.contextmanager
def exact_fp32(device: str) -> Iterator[None]:
    """TF32 off on GPUs while the block runs (float32 matmuls stay float32), restoring the caller's setting.
    TensorFlow, like torch, runs float32 matmuls in TF32 on Ampere and later GPUs unless told not to."""
    if not device.startswith("/GPU"):
        yield
        return
    saved = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(saved)


@contextlib.contextmanager
def cpu_threads(threads: int | None, argument: str = "threads") -> Iterator[ThreadPolicy]:
    """TensorFlow's CPU threads: `threads` for its intra-op and inter-op pools, or with None its own default (its
    pool keeps its speed beside a busy process: scripts/results/bench_threads.md). TensorFlow fixes its pools when
    its runtime starts, so a count is set then and refused afterwards unless it is the one in force (the CLI sets
    --threads before TensorFlow starts)."""
    threads = check_threads(threads, argument)
    if threads is not None:
        set_threads(threads, argument)
    yield ThreadPolicy(threads)  # not followed: TF's pools are not resized while it runs


def follow_threads(policy: ThreadPolicy) -> None:
    """Between steps: nothing to follow (TensorFlow's pools are fixed once it runs)."""


def set_threads(threads: int, argument: str = "threads") -> None:
    """TensorFlow's intra-op and inter-op threads, set before its runtime starts; once it has started, a
    ValueError unless `threads` is the count in force."""
    threads = check_int("set_threads", argument, threads, minimum=1)
    in_force = (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads())
    if in_force == (threads, threads):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:
        raise ValueError(f"{argument}={threads}: TensorFlow has started with {in_force[0] or 'its default'} intra-op "
                         f"threads and cannot change them in this process; call "
                         f"backends.tf.device.set_threads({threads}) before TensorFlow runs anything (before "
                         f"building a model), or leave {argument} at its default") from e


def to_device(x: np.ndarray, device: str, dtype: Any = "float32") -> tf.Tensor:
    """A copy of the array `x` on `device`, in `dtype` (a name such as "float64", or a tf.DType)."""
    with tf.device(device):
        return tf.identity(tf.convert_to_tensor(x, dtype=dtype))


def model_device(model: Any) -> str:
    """The device name the plots compute the model on: "auto", TensorFlow's default placement."""
    return "auto"


@contextlib.contextmanager
def inference(model: Any) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """Yields the function that puts a NumPy batch where `model` computes (a Keras model takes float32 arrays;
    nothing records gradients outside a GradientTape)."""
    yield lambda a: np.ascontiguousarray(a, dtype=np.float32)
