"""`python -m vae_core.cli.torchrun ...`: torch's launcher (torch.distributed.run, the module behind torchrun) for
`vae train --nproc N`, quiet about the stop signals `vae train` passes on to it.

torch.distributed.run turns SIGTERM and SIGINT into a SignalException once it has passed them to the ranks, and
dies of it with a traceback; here that is the exit status 128 + the signal, and the ranks' own line (rank 0's
"stopped by ... resume with ...") is the message. A rank that fails makes it stop the others and raise
ChildFailedError with a report; here that is one line naming the rank (its own error is above it) and status 1.
torch is imported when it runs, not when vae_core is imported.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as run

    try:
        run(argv)
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
    sys.exit(main(sys.argv[1:]))
