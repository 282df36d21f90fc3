"""A run's output folder, created and checked for writes before any training."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def prepare_out_dir(out_dir: Any, argument: str = "out_dir") -> Path | None:
    """Create the output folder of a run and check that files can be written there, before any training.

    Raises NotADirectoryError (the path or a parent is a file) or PermissionError (not writable), naming
    `argument` and the path.
    """
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a folder path (str or os.PathLike) or None; got {type(out_dir).__name__}")
    out = Path(out_dir)
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker == out:
        raise NotADirectoryError(f"{argument} {str(out)!r} is a file; pass a folder")
    if blocker is not None:
        raise NotADirectoryError(f"{argument} {str(out)!r} is inside a file, not a folder ({str(blocker)!r}); "
                                 f"pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".vae-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"{argument} {str(out)!r} is not writable ({e.strerror}); pass a folder you can "
                              f"write to") from None
    return out


def check_writable_dir(folder: Any, argument: str) -> Path:
    """`folder` as a Path, once it is known that it can be created (if missing) and written, without creating it
    or leaving anything behind: for an output folder that is only made once training starts (a log dir).

    Raises TypeError (not a path), NotADirectoryError (the path or a parent is a file) or PermissionError (the
    folder, or its nearest existing parent, refuses a new entry), naming `argument` and the path.
    """
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise TypeError(f"{argument} must be a folder path (a non-empty str or os.PathLike); got {folder!r}")
    path = Path(folder)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == path else f"is inside a file, not a folder ({str(blocker)!r})"
        raise NotADirectoryError(f"{argument} {str(path)!r} {where}; pass a folder path")
    probe_writable(next(p for p in (path, *path.parents, Path(".")) if p.exists()), path, argument)
    return path


def probe_writable(nearest: Path, path: str | os.PathLike, argument: str) -> None:
    """PermissionError unless an entry can be made in `nearest` (the folder `path` is, or will go in): a real
    entry, made and removed, since root writes through mode bits, but not into a read-only file system."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vae-write-test-", dir=nearest))
    except OSError as e:
        raise PermissionError(f"{argument} {str(path)!r} cannot be written ({str(nearest)!r}: {e.strerror}); pass a "
                              f"folder you can write to") from None
