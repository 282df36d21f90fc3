"""`vae train --nproc N`: the job, started through torch's launcher (`python -m backends.torch.launch`) in a
subprocess of its own, with SIGTERM and SIGINT passed on to it."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from vae_core.io.run_lock import HELD_ENV


def launch_torchrun(nproc: int, argv: Sequence[str], lock: Path) -> int:
    """`vae train` again, as `nproc` processes on this host through torch's own launcher (torch.distributed.run,
    the module behind torchrun, with a local rendezvous); returns the exit status.

    The arguments were checked here first, so a bad one is one line and status 2 before any process starts. The
    caller holds the folder's run lock, whose file is `lock`, for the job; the ranks find it in HELD_ENV. SIGTERM
    and SIGINT are passed on to the launcher, which passes them to every rank: they stop at the same step with one
    checkpoint, rank 0 prints the line that says how to resume, and the status is 128 + the signal. A failed rank
    makes the launcher stop the others (status 1, with its report).
    """
    rest, skip = [], False
    for arg in argv:  # the same command line without --nproc
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "backends.torch.launch", "--standalone", f"--nproc-per-node={nproc}",
               "--module", "vae_core.cli", *rest]
    print(f"vae train: launching {nproc} processes: torch.distributed.run {shlex.join(command[3:])}",
          file=sys.stderr)
    # its own session: a terminal's Ctrl-C reaches the job once, through this process
    env = {**os.environ, HELD_ENV: str(lock), "LOGLEVEL": os.environ.get("LOGLEVEL", "ERROR")}  # torch elastic's
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        return 128 + received[0]
    return 0 if status == 0 else 1
