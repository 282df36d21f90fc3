"""What a path names, asked before it is read: only a regular file is read as data or a checkpoint.

Opening a FIFO (named pipe) blocks until a writer comes, a device reads forever or not at all, and a folder is no
file; each is refused by name, with what it is. A name longer than the file system takes (errno ENAMETOOLONG) is
refused naming the path and the limit, not as a bare "[Errno 36] File name too long".
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

FILE, FOLDER = "a regular file", "a folder"
# What else a path can name, in words, by the stat test that recognises it
OTHER_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # nothing to read there (as Path.exists() says)
DEFAULT_NAME_MAX, DEFAULT_PATH_MAX = 255, 4096  # Linux's limits, where the system does not say


def path_kind(path: Path, what: str) -> str | None:
    """What `path` names, following links: FILE, FOLDER, another kind in words ("a FIFO (named pipe)"), or None
    when nothing is there. A name too long for the file system is a ValueError naming `what`, the path and the
    limit (`name_too_long`)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno in MISSING_ERRNOS:
            return None
        if e.errno == errno.ENAMETOOLONG:
            raise ValueError(name_too_long(path, what)) from None
        raise
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return FOLDER
    return next((kind for test, kind in OTHER_KINDS if test(mode)), "not a regular file")


def check_regular_file(path: Path, what: str, fix: str, error: type[Exception] = ValueError) -> Path:
    """`path`, when it names a regular file (or a link to one). Otherwise FileNotFoundError (nothing there) or
    `error` (a folder, a FIFO, a device, a socket; a name too long: ValueError), each naming `what` and the path,
    followed by `fix` (what to pass instead)."""
    kind = path_kind(path, what)
    if kind is None:
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; {fix}")
    if kind != FILE:
        raise error(f"{what} {str(path)!r} is {kind}, not a regular file; {fix}")
    return path


def name_too_long(path: str | os.PathLike, what: str = "path") -> str:
    """The message for a path the file system refuses as too long: its longest name against the limit per name
    (NAME_MAX, usually 255 bytes), or the whole path against the limit per path (PATH_MAX)."""
    path = Path(path)
    folder = next((p for p in path.absolute().parents if os.path.isdir(p)), Path("/"))  # never raises
    name_max = _limit(folder, "PC_NAME_MAX", DEFAULT_NAME_MAX)
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > name_max:
        return (f"{what} {str(path)!r}: its name {_clip(longest)!r} is {len(os.fsencode(longest))} bytes long, over "
                f"the file system's limit of {name_max} bytes per name; use a shorter name")
    path_max = _limit(folder, "PC_PATH_MAX", DEFAULT_PATH_MAX)
    return (f"{what} {str(path)!r} is {len(os.fsencode(str(path)))} bytes long, over the system's limit of "
            f"{path_max} bytes per path; use a shorter path")


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError):
        return default


def _clip(name: str, keep: int = 40) -> str:
    return name if len(name) <= keep else f"{name[:keep]}..."
