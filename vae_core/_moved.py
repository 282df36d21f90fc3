"""The module names of the flat layout before the layered one, and their new homes.

`import vae_core.trainer` or `from vae_core.spec import VAESpec` keeps working, with a DeprecationWarning that
names the new home. A module that moved whole is the new module itself; a module whose names went to several
homes (`vae_core.training`) is a stand-in that finds each name in its new home, and names the homes when a name
is in none of them.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

# old module -> its new homes, searched in order for each name
MOVED: dict[str, tuple[str, ...]] = {
    "vae_core.spec": ("vae_core.model.spec",),
    "vae_core.architecture": ("vae_core.model.architecture",),
    "vae_core.init": ("vae_core.model.init",),
    "vae_core.losses": ("vae_core.model.losses",),
    "vae_core.model_attributes": ("vae_core.model.attributes",),
    "vae_core.atomic": ("vae_core.io.atomic",),
    "vae_core.run_lock": ("vae_core.io.run_lock",),
    "vae_core.mapped": ("vae_core.data.mapped",),
    "vae_core.images": ("vae_core.data.images",),
    "vae_core.backend": ("vae_core.train.backend",),
    "vae_core.trainer_state": ("vae_core.train.state",),
    "vae_core.resume": ("vae_core.train.resume",),
    "vae_core.world": ("vae_core.train.world",),
    "vae_core.interrupt": ("vae_core.train.interrupt",),
    "vae_core.checkpoint": ("vae_core.io.checkpoint", "vae_core.registry"),
    "vae_core.trainer": ("vae_core.train.loop", "vae_core.train.arguments", "vae_core.train.history"),
    "vae_core.training": ("vae_core.data.rows", "vae_core.train.arguments", "vae_core.train.schedule",
                          "vae_core.train.history", "vae_core.train.resume", "vae_core.io.out_dir"),
}


class _Split(types.ModuleType):
    """An old module whose names moved to several new modules."""

    def __getattr__(self, name: str) -> Any:
        for home in MOVED[self.__name__]:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"{self.__name__}.{name} does not exist: {self.__name__} moved to "
                             f"{', '.join(MOVED[self.__name__])}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names (and only those) on `sys.meta_path`."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Split(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        homes = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {' and '.join(homes)}; import it from there", DeprecationWarning,
                      stacklevel=2)
        if len(homes) == 1:  # moved whole: the old name is the new module (the import system returns sys.modules')
            sys.modules[module.__name__] = importlib.import_module(homes[0])


_FINDER = _Finder()


def install() -> None:
    """Put the finder on `sys.meta_path` once."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
