"""torch's fit runs on the thread count it is given, follows the idle CPUs by default, and leaves the caller's
thread count as it was (`backends.torch.device.cpu_threads`)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.torch import device  # noqa: E402
from vae_core import TrainConfig, VAESpec, build, fit  # noqa: E402
from vae_core.callbacks import Callback  # noqa: E402
from vae_core.system import threads  # noqa: E402


class Probe(Callback):
    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(torch.get_num_threads())


def _fit(**kwargs) -> list[int]:
    probe = Probe()
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    model = build("torch", VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2), seed=0)
    fit(model, x, None, TrainConfig(epochs=1, batch_size=16), progress=False, callbacks=[probe], **kwargs)
    return probe.seen


def test_fit_uses_the_given_threads_and_restores_the_callers():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert _fit(threads=1) == [1, 1, 1, 1]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_auto_follows_the_cpus_other_processes_leave(monkeypatch):
    """Four usable CPUs; one other process runs at the start, then others keep three busy: auto sets 3 threads,
    then 1, and gives the caller's count back at the end."""
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads, "_others_running_now", lambda: 1)
    monkeypatch.setattr(threads, "_ticks_per_second", lambda: 100)
    # (busy ticks, our ticks) at each look, one second apart: 3 CPUs kept busy by others
    looks = iter([(300 * i, 0) for i in range(50)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(looks))
    clock = iter(float(i) for i in range(50))
    monkeypatch.setattr(threads, "monotonic", lambda: next(clock))
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    before = torch.get_num_threads()
    seen = _fit()
    assert (seen, calls) == ([1, 1, 1, 1], [3, 1, before])
    assert calls == [3, 1, before]  # the first look, the first step's look, the restore
    assert torch.get_num_threads() == before
