"""Atomic file writes: a temp file in the same directory, fsync, then os.replace over the target."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

# Test hook: seconds to pause between writing the temp file and replacing the target, so that a test can kill the
# process mid-write (tests/reliability/test_kill_resume.py). Unset in normal use.
SLOW_WRITE_ENV = "VAE_CORE_SLOW_WRITE_SECONDS"


class WriteError(OSError):
    """The disk refused a write (ENOSPC, EFBIG, EIO, EACCES, ...): names the file; the old file is untouched."""


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half of either.

    Raises FileNotFoundError when the folder does not exist, and WriteError (an OSError with the errno) when the
    system refuses the write, in which case `path` keeps its previous contents and no temp file is left.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write_with(path, write)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`atomic_write` for a writer that fills a file by its name (`safetensors.numpy.save_file` streams tensors
    from their own buffers, where building the file's bytes first would double the memory of a large model).

    `write(tmp)` writes the whole file at `tmp`, a temp file in `path`'s folder; it is fsynced, then replaces
    `path`. The same errors as `atomic_write`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist; "
                                f"create it first")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        # mkstemp makes 0600 files (and safetensors replaces the file with its own 0600 one): give the file the
        # mode open() would
        os.chmod(tmp, 0o666 & ~_umask())
        pause = float(os.environ.get(SLOW_WRITE_ENV) or 0)
        if pause > 0:  # the test hook: the temp file is there, the target not yet replaced
            time.sleep(pause)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            raise WriteError(e.errno, f"cannot write {str(path)!r}: {e.strerror}") from e
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask
