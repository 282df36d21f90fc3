"""torch's fit and evaluate flush subnormal floats to zero while they run, as XLA does for the TF backend, and leave
the caller's setting as it was (`backends.torch.device.flush_denormals`)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.torch.device import flushing_denormals  # noqa: E402
from vae_core import TrainConfig, VAESpec, build, evaluate, fit  # noqa: E402
from vae_core.callbacks import Callback  # noqa: E402


def test_fit_and_evaluate_flush_subnormals_and_restore_the_callers_setting():
    seen = []

    class Probe(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(flushing_denormals())

    x = np.random.default_rng(0).random((40, 16), dtype=np.float32)
    model = build("torch", VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2), seed=0)
    try:
        for caller in (False, True):
            torch.set_flush_denormal(caller)
            fit(model, x, None, TrainConfig(epochs=1, batch_size=16), progress=False, callbacks=[Probe()])
            evaluate(model, x)
            assert flushing_denormals() == caller
    finally:
        torch.set_flush_denormal(False)
    assert seen == [True, True]
