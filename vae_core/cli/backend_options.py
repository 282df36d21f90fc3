"""Which backends each backend-dependent option of the `vae` commands applies to: one table, `APPLIES`.

The help text's "(backends: torch, tf)" suffix is generated from it (`applies_suffix`), and `vae train` refuses an
option on a backend it does not name (`check_applies`), before anything is read or written. An entry of None
applies to every backend of the registry (`vae_core.registry.BACKENDS`), a new one included: what it asks for is
part of the backend contract. A tuple names the backends that the command's own code serves.

tests/cli/test_backend_options.py runs every entry on every registered backend: an option said to apply to a
backend must run there, and one not said must be refused there with `check_applies`' error. So a backend added to
the registry either serves every None entry or gets its entry narrowed, and the help says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vae_core.registry import BACKENDS


@dataclass(frozen=True)
class BackendOption:
    """An option whose effect depends on the backend."""

    neutral: Any  # the value that asks nothing of a backend (the default): never refused
    backends: tuple[str, ...] | None  # the backends it applies to; None: every backend of the registry


APPLIES: dict[str, BackendOption] = {
    # fit(precision=) of every backend (vae_core.train.arguments.PRECISIONS): bf16 is torch.autocast in torch,
    # Keras' mixed_bfloat16 policy in tf, with float32 weights, loss and Adam in both
    "--precision": BackendOption("fp32", None),
    # each backend's device.resolve_device (vae_core.train.arguments.DEVICES)
    "--device": BackendOption("auto", None),
    # N > 1: vae_core/cli/train.py launches torch.distributed.run for torch and builds the model under a
    # MirroredStrategy for tf; it has no way to split another backend's training
    "--nproc": BackendOption(1, ("torch", "tf")),
    # fit(threads=) of every backend (vae_core.system.threads); None: auto
    "--threads": BackendOption(None, None),
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
