"""`main(argv)`, the `vae` command: parse, run the command, and turn its errors into one line and an exit status."""
from __future__ import annotations

import errno
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Sequence

from vae_core.cli import compare, evaluate, plot, reconstruct, sample, score, train
from vae_core.cli import export as export_command
from vae_core.cli.parser import build_parser
from vae_core.deploy.verify import ExportVerificationError
from vae_core.io.atomic import WriteError
from vae_core.io.checkpoint import CheckpointError
from vae_core.io.files import name_too_long
from vae_core.io.run_lock import RunLockedError
from vae_core.system.memory import MemoryLimitError
from vae_core.train.callbacks import CallbackError
from vae_core.train.history import NonFiniteLossError
from vae_core.train.interrupt import TrainingInterrupted
from vae_core.train.world import launched_rank, launched_world_size

DEBUG_ENV = "VAE_CORE_DEBUG"  # set to 1 (or true) to get the traceback instead of the one-line error
DEBUG_ON = ("1", "true")  # the values that turn it on, in any case; "0", "false", "" and anything else: off
# Errors that mean "the input was wrong": one line, exit status 2.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError,
                CheckpointError, RunLockedError, MemoryLimitError)
# Failures while a command runs, checked before USAGE_ERRORS: one line, exit status 1. A logger failed mid-run (a
# write, a server: the last checkpoint written stays); exported files that do not compute what the checkpoint does
# (removed); the disk refused a write (ENOSPC, EFBIG, EIO, EACCES: the last good checkpoint stays).
RUN_ERRORS = (CallbackError, ExportVerificationError, WriteError)
COMMANDS = {"train": train.run, "evaluate": evaluate.run, "score": score.run, "sample": sample.run,
            "reconstruct": reconstruct.run, "plot": plot.run, "compare": compare.run}
COMMANDS["export"] = export_command.run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vae` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices, not its errors

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["vae", *argv])  # written into results (vae compare)
    args.argv = argv
    prog = f"vae {args.command}"
    try:
        return COMMANDS[args.command](args)
    except NonFiniteLossError as e:
        print(f"{prog}: training stopped: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except (*RUN_ERRORS, *USAGE_ERRORS, OSError) as e:  # any other OSError (a read error): not the input's fault
        return report(prog, args.command, e)
    except TrainingInterrupted as e:  # SIGTERM or Ctrl-C while training: a checkpoint of that step was written
        if launched_rank() != 0:  # every rank of a torchrun job stops at this step; rank 0 says so
            return e.exit_status
        where = (f"resume with: vae train --out {shlex.quote(str(Path(e.checkpoint).parent))} --resume"
                 if e.checkpoint else "nothing was saved")
        print(f"{prog}: stopped by {signal.Signals(e.signum).name} at epoch {e.epoch}, step {e.step} "
              f"(1-based, the last step done); {where}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a rank of a torchrun job: often the consequence of another rank's failure
        if launched_world_size() <= 1 or debug_on():
            raise
        print(f"{prog}: rank {launched_rank()} stopped: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
              file=sys.stderr)
        return 1


def debug_on() -> bool:
    """Whether VAE_CORE_DEBUG asks for tracebacks: only "1" or "true" (any case, spaces ignored)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in DEBUG_ON


def report(prog: str, command: str, error: BaseException) -> int:
    """`error` as one line on stderr, and its exit status: 1 for RUN_ERRORS and an OSError that is no usage error, 2
    for USAGE_ERRORS. With VAE_CORE_DEBUG on, the error is raised again instead, with its traceback."""
    if debug_on():
        raise error
    if _name_too_long(error):  # a path the user gave (--out, -o, --json): theirs to shorten, so exit status 2
        print(f"{prog}: error: {name_too_long(error.filename)}", file=sys.stderr)
        return 2
    message = " ".join(str(error).split())
    if isinstance(error, WriteError):
        kept = "the previous checkpoint" if command in ("train", "compare") else "any earlier file there"
        message += f"; {kept} is untouched"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1 if isinstance(error, RUN_ERRORS) or not isinstance(error, USAGE_ERRORS) else 2


def _name_too_long(error: BaseException) -> bool:
    """An OSError "[Errno 36] File name too long" on a path it names (not a WriteError: a failed write says so)."""
    return (isinstance(error, OSError) and not isinstance(error, WriteError) and error.errno == errno.ENAMETOOLONG
            and error.filename is not None)
