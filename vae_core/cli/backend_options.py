"""Which backends each backend-dependent option of the `vae` commands applies to: one table, `APPLIES`.

The help text's "(backends: torch, tf)" suffix is generated from it (`applies_suffix`), and `vae train` refuses an
option on a backend it does not name (`check_applies`), before anything is read or written. An entry of None
applies to every backend of the registry (`vae_core.registry.BACKENDS`), a new one included: what it asks for is
part of the backend contract. A tuple names the backends that the command's own code serves.

tests/cli/test_backend_options.py runs every entry on every registered backend: an option said to apply to a
backend must run there, and one not said must be refused there with `check_applies`' error. So a backend added to
the registry either serves every None entry or gets its entry narrowed, and the help says which.

`DATA_PARALLEL` says how `vae train --nproc N` splits each backend's training (N processes, or N devices of one
process and the function of the backend's `distributed` module that makes them); `--nproc`'s entry is its keys.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

from vae_core.registry import BACKENDS


@dataclass(frozen=True)
class BackendOption:
    """An option whose effect depends on the backend."""

    neutral: Any  # the value that asks nothing of a backend (the default): never refused
    backends: tuple[str, ...] | None  # the backends it applies to; None: every backend of the registry


PROCESSES, IN_PROCESS = "processes", "devices"  # DataParallel.how


@dataclass(frozen=True)
class DataParallel:
    """How `vae train --nproc N` (N > 1) splits one backend's training.

    PROCESSES: `vae train` runs again as N processes under torch's launcher (vae_core.cli.launch.launch_torchrun),
    each a rank of the backend's process group. IN_PROCESS: this one process trains over N devices of the host: it
    calls `backends.<name>.distributed.<setup>(N)` before the framework starts (it may split the CPU into N
    devices), and builds the model (`during_fit`: and trains it) inside `enter(what setup returned)`."""

    how: str  # PROCESSES or IN_PROCESS
    words: str  # what --nproc's help says of this backend
    setup: str | None = None  # IN_PROCESS: the function of the backend's `distributed` module that takes N
    enter: Callable[[Any], ContextManager[Any]] | None = None  # IN_PROCESS: the context the model is built under
    during_fit: bool = False  # IN_PROCESS: fit runs inside that context too, not only the build
    holds: str = ""  # IN_PROCESS: what the devices belong to, for "trains on the strategy's devices"


def _jax_mesh(mesh: Any) -> ContextManager[Any]:
    return importlib.import_module("jax").set_mesh(mesh)  # jax is imported only for a jax run


# Every backend that serves --nproc, by name; APPLIES["--nproc"] is made from it. A backend not listed is refused
# --nproc N > 1 with check_applies' error.
DATA_PARALLEL: dict[str, DataParallel] = {
    "torch": DataParallel(PROCESSES, "N processes on this host through torch.distributed.run (gloo on the CPU, "
                                     "NCCL on GPUs)"),
    "tf": DataParallel(IN_PROCESS, "a MirroredStrategy over N devices (N GPUs, else the CPU as N logical devices)",
                       setup="mirrored_strategy", enter=lambda strategy: strategy.scope(), holds="strategy"),
    "jax": DataParallel(IN_PROCESS, "a mesh over N devices (N GPUs, else the CPU as N XLA devices)",
                        setup="local_mesh", enter=_jax_mesh, during_fit=True, holds="mesh"),
}


def data_parallel(backend: str) -> DataParallel | None:
    """How --nproc N > 1 trains `backend` (DATA_PARALLEL), or None when it cannot (a registered backend only)."""
    return DATA_PARALLEL.get(backend) if backend in BACKENDS else None


def nproc_help() -> str:
    """--nproc's help, each registered backend of DATA_PARALLEL in the registry's order, without the suffix."""
    ways = "; ".join(f"{name}, {DATA_PARALLEL[name].words}" for name in backends_of("--nproc"))
    return f"data-parallel over N: {ways}. --batch-size stays the global batch (default 1)"


APPLIES: dict[str, BackendOption] = {
    # fit(precision=) of every backend (vae_core.train.arguments.PRECISIONS): bf16 is torch.autocast in torch,
    # Keras' mixed_bfloat16 policy in tf, with float32 weights, loss and Adam in both
    "--precision": BackendOption("fp32", None),
    # each backend's device.resolve_device (vae_core.train.arguments.DEVICES)
    "--device": BackendOption("auto", None),
    # N > 1: vae_core/cli/train.py splits the training as DATA_PARALLEL says (torch.distributed.run for torch, a
    # MirroredStrategy for tf, a mesh for jax); it has no way to split another backend's training
    "--nproc": BackendOption(1, tuple(DATA_PARALLEL)),
    # fit(threads=) of the backends that can set their CPU threads (vae_core.system.threads); None: auto. JAX cannot:
    # XLA sizes its CPU pool when JAX starts, from the CPUs the process may run on (jax-ml/jax#1539: taskset is the
    # way), so backends.jax.device.set_threads refuses a count with that fix
    "--threads": BackendOption(None, ("torch", "tf")),
}


def backends_of(flag: str) -> tuple[str, ...]:
    """The registered backends `flag` applies to, in the registry's order."""
    names = APPLIES[flag].backends
    return tuple(name for name in BACKENDS if names is None or name in names)


def applies_suffix(flag: str) -> str:
    """The end of `flag`'s help text: "(backends: torch, tf)"."""
    return f"(backends: {', '.join(backends_of(flag))})"


def check_applies(flag: str, value: Any, backend: str) -> None:
    """A ValueError when `flag` was given a value other than its neutral one for a backend it does not apply to."""
    if value is None or value == APPLIES[flag].neutral or backend in backends_of(flag):
        return
    names = backends_of(flag)
    fix = f"pass --backend {' or --backend '.join(names)}" if names else "no backend takes it"
    raise ValueError(f"{flag} {value} applies to backends {', '.join(names) or 'none'}, not {backend!r}; drop "
                     f"{flag} (or give it {APPLIES[flag].neutral}), or {fix}")
