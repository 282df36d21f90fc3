"""`main(argv)`, the `vae` command: parse, run the command, and turn its errors into one line and an exit status."""
from __future__ import annotations

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
from vae_core.io.run_lock import RunLockedError
from vae_core.train.callbacks import CallbackError
from vae_core.train.history import NonFiniteLossError
from vae_core.train.interrupt import TrainingInterrupted
from vae_core.train.world import launched_rank, launched_world_size

DEBUG_ENV = "VAE_CORE_DEBUG"  # set to 1 to get the traceback instead of the one-line error
# Errors that mean "the input was wrong": one line, exit status 2.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError,
                CheckpointError, RunLockedError)
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
    except CallbackError as e:  # a logger failed mid-run (a write, a server): the last checkpoint written stays
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except ExportVerificationError as e:  # exported files that do not compute what the checkpoint does: removed
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except WriteError as e:  # the disk refused a write (ENOSPC, EFBIG, EIO, EACCES): the last good checkpoint stays
        if os.environ.get(DEBUG_ENV):
            raise
        kept = "the previous checkpoint" if args.command in ("train", "compare") else "any earlier file there"
        print(f"{prog}: error: {' '.join(str(e).split())}; {kept} is untouched", file=sys.stderr)
        return 1
    except USAGE_ERRORS as e:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # any other failure of the system (a read error): not the input's fault
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
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
        if launched_world_size() <= 1 or os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: rank {launched_rank()} stopped: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
              file=sys.stderr)
        return 1
