"""Where the torch backend computes: device names, exact float32 on CUDA, and NumPy -> tensors on a device.

The TF backend's `device` module has the same functions and signatures.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import torch

from vae_core.checks import check_int
from vae_core.system.threads import ThreadPolicy, check_threads
from vae_core.train.arguments import check_device_name


def resolve_device(device: Any, argument: str = "device") -> torch.device:
    """'auto' -> CUDA when available, else the CPU; 'cpu'; 'cuda' or 'cuda:N' (ValueError without CUDA)."""
    device = check_device_name(device, argument)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but CUDA is not "
                         f"available to torch {torch.__version__}; pass {argument}='cpu' or 'auto'")
    if device.startswith("cuda:") and int(device.partition(":")[2]) >= torch.cuda.device_count():
        raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but torch "
                         f"{torch.__version__} sees {torch.cuda.device_count()} GPU(s); pass {argument}='cuda' or "
                         f"'auto'")
    return torch.device(device)


@contextlib.contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA while the block runs (float32 matmuls stay float32), restoring the caller's settings."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def flushing_denormals() -> bool:
    """Whether this thread's float unit flushes subnormal floats to zero now (probed with a NumPy product: NumPy
    computes on the same thread's FTZ/DAZ flags as torch's CPU kernels)."""
    return float(np.array([1e-40], np.float32)[0] * np.float32(1.0)) == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Subnormal floats flushed to zero while the block runs, as XLA's CPU code (the TF backend) computes: torch's
    CPU kernels slow down several times on subnormal operands, which appear in the step after a few epochs
    (docs/benchmarks.md). The caller's setting is restored after, so a user's process is left as it was."""
    before = flushing_denormals()
    if not before:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


@contextlib.contextmanager
def cpu_threads(threads: int | None, argument: str = "threads") -> Iterator[ThreadPolicy]:
    """torch's CPU threads while the block runs: `threads`, or with None as many as other processes leave idle,
    followed as they change (`vae_core.system.threads`; call `follow_threads(policy)` between steps). The caller's
    thread count is restored after."""
    policy = ThreadPolicy(check_threads(threads, argument))
    before = torch.get_num_threads()
    torch.set_num_threads(policy.first())
    try:
        yield policy
    finally:
        torch.set_num_threads(before)


def follow_threads(policy: ThreadPolicy) -> None:
    """Between steps: the policy's thread count now, if it changed (a look at the CPUs at most once a second)."""
    threads = policy.update()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def set_threads(threads: int, argument: str = "threads") -> None:
    """torch's CPU threads for this process from now on (`torch.set_num_threads`)."""
    torch.set_num_threads(check_int("set_threads", argument, threads, minimum=1))


def to_device(x: np.ndarray, device: torch.device, dtype: Any = "float32") -> torch.Tensor:
    """A copy of the array `x` on `device`, in `dtype` (a name such as "float64", or a torch.dtype)."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not x.flags.writeable:  # torch.from_numpy warns on read-only arrays; copy rather than share them
        x = x.copy()
    return torch.from_numpy(x).to(device=device, dtype=dtype)


def model_device(model: Any) -> str:
    """The device name the model's weights are on ("cpu", "cuda:0"): where the plots compute with it."""
    return str(model.device)


@contextlib.contextmanager
def inference(model: Any) -> Iterator[Callable[[np.ndarray], torch.Tensor]]:
    """Autograd off while the block runs; yields the function that puts a NumPy batch where `model` computes."""
    with torch.no_grad():
        yield lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(model.device)
