"""Let torch and TensorFlow share one process: load triton in a way TensorFlow's LLVM cannot break.

TensorFlow >= 2.20 loads its core library with RTLD_GLOBAL, which puts its statically linked LLVM into the
process' global symbol table. Triton >= 3.7 (which torch's CUDA build installs, and imports lazily on the first
`torch.optim` constructor) then binds its own LLVM calls to TensorFlow's copy and dies with a segmentation fault.
Upstream: https://github.com/tensorflow/tensorflow/issues/124205 (PythonOT/POT#839 works around it the same way).

`preload_triton()` imports triton before that can happen:
- TensorFlow not imported yet: a plain `import triton`. A library loaded first keeps its own symbols, whatever
  comes after it.
- TensorFlow already imported (the user imported it before vae_core): `import triton` with RTLD_DEEPBIND, so
  triton's library resolves its LLVM symbols within itself before looking at the global table.

It does nothing when triton is not installed, already imported, or when the installed versions are not affected.
Standard library only, so `vae_core` still imports with NumPy alone.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings

# The first releases with the crash: TensorFlow's RTLD_GLOBAL load, and triton's LLVM that binds to it.
AFFECTED_TENSORFLOW = (2, 20)
AFFECTED_TRITON = (3, 7)


@functools.cache
def _providers() -> dict[str, list[str]]:
    """Import package name -> the installed distributions that provide it (tensorflow-cpu, pytorch-triton, ...)."""
    return importlib.metadata.packages_distributions()


def installed_release(package: str) -> tuple[int, int] | None:
    """(major, minor) of the installed distribution that provides the import package `package` (the newest, if
    several do), or None when none is installed."""
    releases = []
    for distribution in _providers().get(package, []):
        try:
            match = re.match(r"(\d+)\.(\d+)", importlib.metadata.version(distribution))
        except importlib.metadata.PackageNotFoundError:
            continue
        if match:
            releases.append((int(match.group(1)), int(match.group(2))))
    return max(releases, default=None)


def needs_preload() -> bool:
    """True when triton is installed and not yet imported, and both it and TensorFlow are affected releases."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return False
    triton, tensorflow = installed_release("triton"), installed_release("tensorflow")
    return (triton is not None and triton >= AFFECTED_TRITON
            and tensorflow is not None and tensorflow >= AFFECTED_TENSORFLOW)


def preload_triton() -> None:
    """Import triton now, safely for the current process (see the module docstring); a no-op when not needed."""
    if not needs_preload():
        return
    flags = sys.getdlopenflags()
    # RTLD_NOW: every symbol of triton binds during this import, not later when TensorFlow may be loaded.
    wanted = flags | os.RTLD_NOW
    if "tensorflow" in sys.modules:  # TensorFlow's LLVM is global already: bind triton's to its own copy
        wanted |= getattr(os, "RTLD_DEEPBIND", 0)  # glibc only; triton ships for Linux alone
    sys.setdlopenflags(wanted)
    try:
        import triton  # noqa: F401
    except Exception as e:  # a broken triton install must not break `import vae_core`; torch would fail on it too
        warnings.warn(f"vae_core could not preload triton ({type(e).__name__}: {e}); torch may crash if it "
                      f"imports triton after TensorFlow", RuntimeWarning, stacklevel=2)
    finally:
        sys.setdlopenflags(flags)
