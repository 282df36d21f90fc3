"""`python -m backends.torch.launch ARGS`: torch.distributed.run (torchrun) on ARGS, its stops and failures as one
line and an exit status. `vae train --nproc N` (`vae_core.cli.launch`) starts the job through it."""
from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun


def run_torchrun(argv: list[str]) -> int:
    """torch.distributed.run on `argv`, quiet about the stop signals `vae train` passes on to it; the exit status.

    torch.distributed.run turns SIGTERM and SIGINT into a SignalException once it has passed them to the ranks, and
    dies of it with a traceback; here that is the exit status 128 + the signal, and the ranks' own line (rank 0's
    "stopped by ... resume with ...") is the message. A rank that fails makes it stop the others and raise
    ChildFailedError with a report; here that is one line naming the rank (its own error is above it) and status 1.
    """
    try:
        torchrun(argv)
    except SignalException as e:
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        why = failure.message if isinstance(failure.message, str) and failure.message else \
            f"exit status {failure.exitcode}"
        print(f"vae train: rank {rank} of the job failed ({why}); torch.distributed.run stopped the others",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_torchrun(sys.argv[1:]))
