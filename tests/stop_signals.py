"""A stand-in for `vae_core.train.interrupt.StopSignals` in tests: a signal 'arrives' after `n` step-boundary checks, so
a stop lands at a fixed step in-process. The torch backend checks before every step, TF before and after every
block, and the trainer after each run of steps. tests/reliability/test_kill_resume.py sends real signals to a subprocess."""
import signal


class StopAfterChecks:
    def __init__(self, n: int, signum: int = signal.SIGTERM) -> None:
        self.n, self.signum, self.calls, self.requested = n, signum, 0, None

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls > self.n:
            self.requested = self.signum
        return self.requested is not None

    def __enter__(self) -> "StopAfterChecks":
        return self

    def __exit__(self, *exc) -> None:
        return None
