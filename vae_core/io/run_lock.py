"""One run per output folder: an advisory lock on `<out_dir>/.vae-run.lock`, holding the owner's pid and host.

Two runs writing into one folder would overwrite each other's checkpoints. `run_lock(folder)` takes an exclusive
`fcntl.flock` on the lock file for as long as the run lasts; a second run fails at once with `RunLockedError`,
which names the holder. The kernel drops a flock when its process dies, however it dies, so a lock file left by
a dead run is simply taken over, with a warning that names the old holder. A thread's lock is re-entrant: the CLI
holds the folder while it writes `run.json`, and the trainer's own `run_lock` inside it is a no-op; another
thread of the same process is refused like another process.

A launcher that starts the processes of one run (`vae train --nproc N` starting torchrun) holds the lock for
them and names the lock file in the environment variable HELD_ENV; `run_lock` on that file is then a no-op in its
child processes.

On systems without `fcntl` (Windows) the folder is not locked, and a warning says so once.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import warnings
from pathlib import Path
from typing import Iterator

from vae_core.checks import caller_stacklevel

LOCK_FILE = ".vae-run.lock"
HELD_ENV = "VAE_CORE_RUN_LOCK_HELD"  # the lock file a launcher holds for the processes it starts
# lock file (resolved path) -> [the thread that holds it, how many nested run_lock blocks of that thread hold it]
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


class RunLockedError(RuntimeError):
    """Another live process holds the output folder's run lock."""


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, argument: str = "out_dir") -> Iterator[Path]:
    """Hold the folder's run lock while the block runs; RunLockedError at once if another process holds it."""
    path = Path(folder).resolve() / LOCK_FILE
    key = str(path)
    with _HELD_GUARD:
        holder = _HELD.get(key)
        if holder is not None and holder[0] != threading.get_ident():
            raise RunLockedError(f"{argument} {str(folder)!r} is in use by another run in this process (another "
                                 f"thread); wait for it to finish, or pass another folder")
        if holder is not None:  # this thread holds it already (the CLI around the trainer)
            holder[1] += 1
    if holder is not None:
        try:
            yield path
        finally:
            with _HELD_GUARD:
                holder[1] -= 1
        return
    if os.environ.get(HELD_ENV) == key:  # the launcher of this process holds it for the whole job
        yield path
        return
    try:
        import fcntl
    except ImportError:
        warnings.warn(f"{argument}: this platform has no fcntl, so {str(folder)!r} is not locked against a second "
                      f"run", UserWarning, stacklevel=caller_stacklevel())
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{argument} {str(folder)!r} is in use by another run ({_describe(_read(fd))}); "
                                 f"wait for it to finish, stop it, or pass another folder") from None
        previous = _read(fd)
        if previous:
            warnings.warn(f"{argument} {str(folder)!r}: taking over the run lock left by {_describe(previous)}, which "
                          f"is no longer running", UserWarning, stacklevel=caller_stacklevel())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        with _HELD_GUARD:
            _HELD[key] = [threading.get_ident(), 1]
        try:
            yield path
        finally:
            with _HELD_GUARD:
                del _HELD[key]
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly, nothing to take over
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {"pid": "?", "host": "?"}
    return holder if isinstance(holder, dict) else {"pid": "?", "host": "?"}


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}" if holder else "an unknown process"
