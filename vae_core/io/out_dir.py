"""A run's output folder, created and checked for writes before any training."""
from __future__ import annotations

import os
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
