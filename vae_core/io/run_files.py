"""The files of a run's folder, and the rules that keep a run from being replaced by accident.

A run folder holds the checkpoints `fit` writes (`last.safetensors` after every epoch and at every step checkpoint,
`best.safetensors` on improvement) and, from `vae train`, `run.json`, `history.json`, `history.csv` and `plots/`.
The same rules hold on the command line and in the Python API:

- A new run into a folder that holds a run is refused (`RunExistsError`, naming the files there), unless it
  continues that run (`vae train --resume`, `fit(resume_from=...)`) or replaces it (`--overwrite`,
  `fit(overwrite=True)`). A replaced run's files are removed first, once every argument has passed and before the
  first step, so no file of the old run is left beside the new one's as if it were the new run's (`remove_run`).
- `--resume` over a folder that holds any run file continues its `last.safetensors`, or refuses, naming the file
  that is missing (`resume_checkpoint`); it never starts a new run over an old one.
- Every path a run will write is checked at the start (`check_file_targets`): a folder, or anything but a regular
  file, where the run writes a file is refused before any file of the run is replaced.
- The output of another command (`--json`, `-o`, `--npy`, `--out`) never replaces a checkpoint or a run's metadata
  (`check_not_run_file`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from vae_core.io.checkpoint import BEST_FILE, LAST_FILE, METADATA_KEY

CHECKPOINT_FILES = (LAST_FILE, BEST_FILE)  # what `fit` writes into its out_dir
RUN_FILE = "run.json"  # the options of a `vae train` run, beside its checkpoints
HISTORY_FILES = ("history.json", "history.csv")  # `vae train`'s per-epoch history
METADATA_FILES = (RUN_FILE, *HISTORY_FILES)
RUN_FILES = (*CHECKPOINT_FILES, *METADATA_FILES)  # what `vae train` writes into --out, besides plots/
PLOTS_DIR = "plots"  # `vae train`'s plots, unless --no-plots


class RunExistsError(ValueError):
    """The output folder holds a run that this call would replace: continue it, or replace it explicitly."""


def present(folder: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """The entries among `names` (paths relative to `folder`) that exist, of any kind (a dangling link too)."""
    return [name for name in names if os.path.lexists(Path(folder) / name)]


def check_new_run(folder: str | os.PathLike, names: Sequence[str], argument: str, *, overwrite: str,
                  resume: str | None = None) -> None:
    """RunExistsError when `folder` holds any of `names`: one line naming them and the ways on (`resume`, the
    flag or keyword that continues the run, if any; `overwrite`, the one that replaces it)."""
    found = present(folder, names)
    if found:
        ways = (f"pass {resume} to continue it, {overwrite} to replace it (its files are removed first), or another "
                f"{argument}" if resume else
                f"pass {overwrite} to replace it (its files are removed first), or another {argument}")
        raise RunExistsError(f"{argument} {str(folder)!r} holds a run ({', '.join(found)}); {ways}")


def check_file_targets(folder: str | os.PathLike, names: Iterable[str], argument: str,
                       folders: Iterable[str] = ()) -> None:
    """Each of `names` in `folder` is absent or a regular file, and each of `folders` absent or a folder: the run
    can write them all. A ValueError naming the first path in the way, checked before any file is replaced."""
    folder = Path(folder)
    for name in folders:
        path = folder / name
        if os.path.lexists(path) and not path.is_dir():
            raise ValueError(f"{argument} {str(folder)!r}: {name} is {_kind(path)}, where the run writes a folder; "
                             f"move it away, or pass another {argument}")
    for name in names:
        path = folder / name
        if os.path.lexists(path) and not path.is_file():
            raise ValueError(f"{argument} {str(folder)!r}: {name} is {_kind(path)}, where the run writes a file; "
                             f"move it away, or pass another {argument}")


def resume_checkpoint(folder: str | os.PathLike, argument: str = "--out") -> Path | None:
    """The checkpoint `vae train --resume` continues: `folder/last.safetensors`. None when the folder holds no run
    file (there is nothing to continue, and a new run starts); else, when that checkpoint is missing or not a
    regular file, the error that names it (FileNotFoundError, ValueError)."""
    folder = Path(folder)
    last = folder / LAST_FILE
    if last.is_file():
        return last
    if os.path.lexists(last):
        raise ValueError(f"--resume: {str(last)!r} is {_kind(last)}, not the run's checkpoint file; move it away and "
                         f"put the checkpoint back to resume, or pass another {argument}")
    found = present(folder, RUN_FILES)
    if found:
        raise FileNotFoundError(f"--resume: {argument} {str(folder)!r} holds a run ({', '.join(found)}) but no "
                                f"{LAST_FILE} to continue from; put it back to resume, pass --overwrite instead of "
                                f"--resume to replace the run, or pass another {argument}")
    return None


def remove_run(folder: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Remove the regular files among `names` (paths relative to `folder`) and the temp files of writes to them that
    were killed (`.NAME.*.tmp`, `vae_core.io.atomic`); then the subfolders of `folder` that this left empty. Returns
    the names removed. Run after `check_file_targets`, so nothing in the way is a folder."""
    folder = Path(folder)
    removed, parents = [], set()
    for name in names:
        path = folder / name
        for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
            stale.unlink(missing_ok=True)
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
            if path.parent != folder:
                parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return removed


def check_not_run_file(path: str | os.PathLike, argument: str) -> None:
    """A command's output file `path` is neither a vae-core checkpoint nor the metadata (run.json, history.json,
    history.csv) of a run folder, which later commands read: a ValueError naming it otherwise."""
    path = Path(path)
    others = [name for name in RUN_FILES if name != path.name]
    if path.name in METADATA_FILES and present(path.parent, others):
        raise ValueError(f"{argument} {str(path)!r} is the {path.name} of the run in {str(path.parent)!r}, which "
                         f"later commands read; write the output to another file name or folder")
    if path.suffix.lower() == ".safetensors" and path.is_file() and _is_checkpoint(path):
        raise ValueError(f"{argument} {str(path)!r} is a vae-core checkpoint; write the output to another file name")


def _is_checkpoint(path: Path) -> bool:
    """Whether `path` is a safetensors file with vae-core's metadata (its header alone is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return METADATA_KEY in (f.metadata() or {})
    except Exception:  # not a safetensors file: safetensors raises its own error types
        return False


def _kind(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a broken link"
    return "a folder" if path.is_dir() else "a file" if path.is_file() else "not a regular file"
