"""Where the JAX backend computes: device names, exact float32 on GPUs, and NumPy -> arrays on a device.

The torch and TF backends' `device` modules have the same functions and signatures.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from vae_core.checks import check_int
from vae_core.system.threads import ThreadPolicy, check_threads
from vae_core.train.arguments import check_device_name


def _gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib (the CPU build), or none found
        return []


def resolve_device(device: Any, argument: str = "device") -> jax.Device:
    """'auto' -> the first GPU JAX sees, else the CPU; 'cpu'; 'cuda' or 'cuda:N' (ValueError when JAX sees no
    such GPU)."""
    device = check_device_name(device, argument)
    gpus = _gpus()
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= len(gpus):
            raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but JAX "
                             f"{jax.__version__} sees {len(gpus)} GPU(s) (the CPU jaxlib, or no CUDA device); "
                             f"pass {argument}='cpu' or 'auto'")
        return gpus[index]
    return gpus[0] if gpus and device == "auto" else jax.devices("cpu")[0]


@contextlib.contextmanager
def exact_fp32(device: jax.Device) -> Iterator[None]:
    """float32 matmuls and convolutions in full float32 on GPUs while the block runs (JAX's default precision
    there is TF32, as torch's and TensorFlow's are), restoring the caller's setting. The CPU is always exact."""
    if device.platform == "cpu":
        yield
        return
    with jax.default_matmul_precision("highest"):
        yield


@contextlib.contextmanager
def cpu_threads(threads: int | None, argument: str = "threads") -> Iterator[ThreadPolicy]:
    """JAX's CPU threads: None keeps XLA's own pool (sized when JAX starts, from the CPUs this process may use; it
    keeps its speed beside a busy process, as TensorFlow's does). A count is refused (`set_threads`)."""
    threads = check_threads(threads, argument)
    if threads is not None:
        set_threads(threads, argument)
    yield ThreadPolicy(threads)  # not followed: XLA's pool is not resized while it runs


def follow_threads(policy: ThreadPolicy) -> None:
    """Between steps: nothing to follow (XLA's CPU pool is fixed once JAX runs)."""


def set_threads(threads: int, argument: str = "threads") -> None:
    """Refused with a ValueError: JAX has no setting for its CPU threads. XLA sizes its pool when JAX starts, from
    the CPUs the process may run on, so the way to give it fewer is to start the process on fewer
    (`taskset -c 0-3 python ...`)."""
    threads = check_int("set_threads", argument, threads, minimum=1)
    raise ValueError(f"{argument}={threads}: the JAX backend cannot set its CPU threads: XLA sizes its pool when JAX "
                     f"starts, from the CPUs the process may run on; start the process on {threads} CPU(s) "
                     f"(taskset -c 0-{threads - 1} ...), or leave {argument} at its default")


def to_device(x: np.ndarray, device: jax.Device, dtype: Any = "float32") -> jax.Array:
    """A copy of the array `x` on `device`, in `dtype` (a name such as "float64", or a NumPy/JAX dtype)."""
    return jax.device_put(np.asarray(x, dtype=jnp.dtype(dtype)), device)


def model_device(model: Any) -> str:
    """The device name the model's weights are on ("cpu", "cuda:0"): where the plots compute with it."""
    device = next(iter(model.out.kernel.get_value().devices()))
    return "cpu" if device.platform == "cpu" else f"cuda:{_gpus().index(device)}"


@contextlib.contextmanager
def inference(model: Any) -> Iterator[Callable[[np.ndarray], jax.Array]]:
    """Yields the function that puts a NumPy batch where `model` computes (JAX records gradients only inside
    `jax.grad`, so there is nothing to switch off)."""
    device = next(iter(model.out.kernel.get_value().devices()))
    yield lambda a: jax.device_put(np.ascontiguousarray(a, dtype=np.float32), device)
