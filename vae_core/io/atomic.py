"""Atomic file writes: a temp file in the same directory, fsync, then os.replace over the target."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

# Test hook: seconds to pause halfway through writing the temp file, so that a test can kill the process
# mid-write (tests/reliability/test_kill_resume.py). Unset in normal use.
SLOW_WRITE_ENV = "VAE_CORE_SLOW_WRITE_SECONDS"


class WriteError(OSError):
    """The disk refused a write (ENOSPC, EFBIG, EIO, EACCES, ...): names the file; the old file is untouched."""


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half of either.

    Raises FileNotFoundError when the folder does not exist, and WriteError (an OSError with the errno) when the
    system refuses the write, in which case `path` keeps its previous contents and no temp file is left.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist; "
                                f"create it first")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            pause = float(os.environ.get(SLOW_WRITE_ENV) or 0)
            if pause > 0:
                f.write(data[:len(data) // 2])
                f.flush()
                time.sleep(pause)
                data = data[len(data) // 2:]
            f.write(data)
            f.flush()
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
