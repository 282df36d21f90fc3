"""Preemption: SIGTERM (a cluster's "stop now, or be killed") and SIGINT (Ctrl-C) stop training cleanly.

While `vae_core.train.loop.run` trains, `StopSignals` replaces the handlers of both signals with one that only
records the signal. The trainer looks at it at every step boundary (the TF backend: after each compiled block of
up to 32 steps), writes a resumable checkpoint of that step, and raises `TrainingInterrupted`. A signal that
arrives while a checkpoint is being written changes nothing: the write completes (and is atomic regardless). The
previous handlers come back when training ends, and a signal that arrived after the last step boundary is then
delivered to them. A second Ctrl-C goes straight to the previous handler (KeyboardInterrupt: stop now). Handlers
can only be installed from the main thread; elsewhere the signals keep their default behaviour.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal at a step boundary, after writing `checkpoint` (None without an out_dir).

    A KeyboardInterrupt, so code that handles Ctrl-C handles it; `exit_status` is the shell's 128 + signal number
    (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: str | None, *,
                 restarts_epoch: bool = False) -> None:
        self.signum, self.epoch, self.step, self.checkpoint = signum, epoch, step, checkpoint
        self.exit_status = 128 + signum
        name = signal.Signals(signum).name
        if restarts_epoch:  # a stream of batches cannot be resumed mid-epoch
            held = (f"checkpoint {checkpoint!r} holds the end of epoch {epoch - 1}; continue with "
                    f"resume_from={checkpoint!r} (vae train --resume), which repeats epoch {epoch} from its first "
                    f"batch" if checkpoint else "nothing was saved (no epoch had ended, or no out_dir was given)")
            where = f"train is a stream of batches, which cannot resume mid-epoch: {held}"
        else:
            where = (f"checkpoint {checkpoint!r} holds that step; continue with resume_from={checkpoint!r} "
                     f"(vae train --resume)" if checkpoint else "no out_dir was given, so nothing was saved")
        super().__init__(f"stopped by {name} at epoch {epoch}, step {step} (1-based, the last step done); {where}")


class StopSignals:
    """Record SIGTERM and SIGINT instead of dying while the `with` block runs; `requested` is the first one."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        """Whether a stop was requested: the trainer's `should_stop`."""
        return self.requested is not None

    def _record(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        if self.requested is not None and signum == signal.SIGINT and callable(previous):
            previous(signum, frame)  # a second Ctrl-C: stop now (KeyboardInterrupt), as without vae_core
        if self.requested is None:
            self.requested = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        installed, self._previous = bool(self._previous), {}
        if installed and self.requested is not None and exc_type is None:
            signal.raise_signal(self.requested)  # arrived after the last step: deliver it as if we were not here
