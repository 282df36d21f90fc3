"""Callbacks in `fit` (`vae_core.train.callbacks`), one test body for every backend (the `backend` argument,
tests/conftest.py): Keras' hooks in Keras' order with the history's values, a clean stop the Keras way
(`model.stop_training = True`) after an epoch or a batch, a callback that raises, and no per-step cost without a
batch hook. The refusals are cases of tests/cli/bad_inputs.py."""
from __future__ import annotations

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, fit, read_checkpoint
from vae_core.callbacks import Callback, CallbackError

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)


def _rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)  # (n, 64)


def _history(h: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: v for k, v in h.items() if k != "seconds"}


class Recorder(Callback):
    """Records every hook call; stops at epoch `stop_epoch` (after it) or batch `stop_batch` of an epoch."""

    def __init__(self, stop_epoch=None, stop_batch=None):
        self.calls, self.stop_epoch, self.stop_batch = [], stop_epoch, stop_batch

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))
        if epoch == self.stop_epoch:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch", batch, dict(logs)))
        if self.stop_batch is not None and (len(self.epochs()), batch) == self.stop_batch:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", dict(logs)))

    def epochs(self):
        return [c for c in self.calls if c[0] == "epoch_begin"]


def test_hooks_come_in_keras_order_with_the_historys_values(backend, tmp_path):
    """on_train_begin, then per epoch on_epoch_begin, one on_train_batch_end per step (with its batch means, whose
    mean weighted by the batch sizes is the epoch's train_loss), on_epoch_end with that epoch's history values,
    then on_train_end with the last epoch's; `self.model` is the native model. A resumed run numbers its epochs on."""
    x, val = _rows(100), _rows(20, seed=2)
    config = TrainConfig(epochs=2, batch_size=32)  # 4 steps an epoch: 32, 32, 32, 4 examples
    model, recorder = build(backend, SPEC, seed=0), Recorder()
    history = fit(model, x, val, config, out_dir=tmp_path, progress=False, callbacks=[recorder])
    assert recorder.model is model
    kinds = [c[0] if c[0] != "batch" else f"batch {c[1]}" for c in recorder.calls]
    epoch = ["epoch_begin", "batch 0", "batch 1", "batch 2", "batch 3", "epoch_end"]
    assert kinds == ["train_begin", *epoch, *epoch, "train_end"]
    ends = [c for c in recorder.calls if c[0] == "epoch_end"]
    for e, (_, number, logs) in enumerate(ends):
        assert number == e and logs == {k: v[e] for k, v in history.items()}
        batches = [c[2] for c in recorder.calls[2 + 6 * e:6 + 6 * e]]
        assert set(batches[0]) == {"loss", "recon", "kl"}
        weighted = sum(b["loss"] * n for b, n in zip(batches, (32, 32, 32, 4))) / 100
        assert weighted == pytest.approx(logs["train_loss"], rel=1e-12)
    assert recorder.calls[-1] == ("train_end", {k: v[-1] for k, v in history.items()})

    resumed = Recorder()
    fit(build(backend, SPEC, seed=0), x, val, TrainConfig(epochs=3, batch_size=32), out_dir=tmp_path,
        resume_from=tmp_path / "last.safetensors", progress=False, callbacks=[resumed])
    assert [c[1] for c in resumed.epochs()] == [2]


def test_a_stop_after_an_epoch_keeps_its_checkpoint_and_returns_the_history(backend, tmp_path):
    recorder = Recorder(stop_epoch=1)
    model = build(backend, SPEC, seed=0)
    history = fit(model, _rows(64), None, TrainConfig(epochs=5, batch_size=32), out_dir=tmp_path, progress=False,
                  callbacks=[recorder])
    assert len(history["train_loss"]) == 2 and read_checkpoint(tmp_path / "last.safetensors").epoch == 2
    assert recorder.calls[-1][0] == "train_end" and not model.stop_training  # a later fit starts clean
    assert len(fit(model, _rows(64), None, TrainConfig(epochs=1, batch_size=32), progress=False)["train_loss"]) == 1


def test_a_stop_after_a_batch_writes_a_step_checkpoint_and_the_resume_is_exact(backend, tmp_path):
    """A stop asked in batch 3 of epoch 2 ends the run at that step boundary (TF: at the end of its block of 32
    steps) with a step checkpoint, as SIGTERM does; the history holds epoch 1; resuming ends exactly where the
    uninterrupted run does."""
    x = _rows(400)
    config = TrainConfig(epochs=2, batch_size=8)  # 50 steps an epoch
    whole = fit(build(backend, SPEC, seed=0), x, None, config, out_dir=tmp_path / "whole", progress=False)
    recorder = Recorder(stop_batch=(2, 3))
    cut = fit(build(backend, SPEC, seed=0), x, None, config, out_dir=tmp_path / "cut", progress=False,
              callbacks=[recorder])
    assert _history(cut) == {k: v[:1] for k, v in _history(whole).items()}
    position = read_checkpoint(tmp_path / "cut" / "last.safetensors").trainer_state["position"]
    assert position["epoch"] == 2 and position["step"] == (32 if backend == "tf" else 4)
    assert [c for c in recorder.calls if c[0] == "batch"][-1][1] == 3  # no batch hook after the stop
    resumed = fit(build(backend, SPEC, seed=0), x, None, config, out_dir=tmp_path / "cut",
                  resume_from=tmp_path / "cut" / "last.safetensors", progress=False)
    assert _history(resumed) == _history(whole)


def test_a_callback_that_raises_stops_the_run_naming_it_and_keeps_the_checkpoint(backend, tmp_path):
    class Broken(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise OSError("log disk full")

    with pytest.raises(CallbackError, match=r"^callback Broken\.on_epoch_end raised OSError: log disk full; training "
                                            r"stopped, and the last checkpoint, '.*last\.safetensors', stays"):
        fit(build(backend, SPEC, seed=0), _rows(64), None, TrainConfig(epochs=4, batch_size=32), out_dir=tmp_path,
            progress=False, callbacks=[Broken()])
    assert read_checkpoint(tmp_path / "last.safetensors").epoch == 2


def test_without_a_batch_hook_the_steps_are_not_read_back_one_by_one(backend, monkeypatch):
    """Only a callback that overrides on_train_batch_end makes the trainer ask the backend for each step's losses
    (a host sync per step in torch)."""
    import importlib

    trainer = importlib.import_module(f"backends.{backend}.train").Trainer
    asked, train_steps = [], trainer.train_steps
    monkeypatch.setattr(trainer, "train_steps", lambda self, *a: asked.append(a[-1]) or train_steps(self, *a))

    class EpochsOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    fit(build(backend, SPEC, seed=0), _rows(64), None, TrainConfig(epochs=1, batch_size=32), progress=False,
        callbacks=[EpochsOnly()])
    fit(build(backend, SPEC, seed=0), _rows(64), None, TrainConfig(epochs=1, batch_size=32), progress=False,
        callbacks=[Recorder()])
    assert asked == [False, True]


def test_callbacks_run_on_rank_0_unless_they_ask_for_every_rank():
    """With several processes, a callback runs on rank 0 alone unless it sets all_ranks; every rank reads the step
    losses back when any callback has a batch hook (they all-reduce them together)."""
    from vae_core.train.callbacks import CallbackRunner

    class Everywhere(Callback):
        all_ranks = True

    class Model:
        stop_training = False

    first, everywhere = Recorder(), Everywhere()
    rank1 = CallbackRunner([first, everywhere], Model(), rank=1)
    assert rank1.callbacks == [everywhere] and rank1.per_step and rank1.batch == []
    rank1.call("on_epoch_begin", 0, {})
    assert first.calls == [] and everywhere.model is not None
    assert CallbackRunner([first, everywhere], Model(), rank=0).callbacks == [first, everywhere]
