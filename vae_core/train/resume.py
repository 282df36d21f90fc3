"""Resuming a run from a checkpoint, the same in every backend: what is restored, what is trimmed, what is refused.

`open_resume` reads the checkpoint and decides everything that needs no framework; `vae_core.train.loop.run` then
hands `point.checkpoint.weights` (and `.adam`, when present) to the backend's model and optimizer.

- A checkpoint of another spec is refused (`CheckpointError`): the model must be built from the checkpoint's spec.
- The history is the checkpoint's, trimmed to its epoch, so the resumed run appends where the checkpoint stopped.
- The policy state (`TrainerState`) is restored, or replayed from the history for a foreign writer; the learning
  rate follows `resumed_learning_rate` (an explicitly changed LR wins over the checkpoint's).
- With early stopping, the best epoch's weights come from the checkpoint itself or from `best.safetensors`
  beside it; when that file is missing or from another run, a warning says the final restore can only pick among
  the epochs still to run. An unreadable `best.safetensors` is refused: it says the run's folder is damaged.
- A resume with nothing to train (`nothing_to_train`: the checkpoint already has `config.epochs` epochs, or early
  stopping ended the run and would again) trains nothing and writes nothing: `fit` warns and returns the
  checkpoint's history as it is, `vae train --resume` says so in one line and exits 0. Early stopping's end holds
  only while the new config keeps it: turned off, or with a patience not yet used up, the run trains on.
- Warnings are `UserWarning`s, pointing at the user's call of `fit`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig
from vae_core.io.checkpoint import BEST_FILE, Checkpoint, CheckpointError, read_checkpoint, read_metadata
from vae_core.model.spec import VAESpec
from vae_core.train.history import HISTORY_KEYS
from vae_core.train.state import TrainerState


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Checkpoint  # weights and Adam state, for the backend to import
    epoch: int  # epochs completed; training continues with epoch + 1
    history: dict[str, list[float]]  # the checkpoint's history, trimmed to `epoch`
    state: TrainerState  # LR plateau and early-stopping state, LR resolved against the new config
    best_weights: dict[str, np.ndarray] | None  # the best epoch's weights (early stopping), if known


def open_resume(path: str | os.PathLike, spec: VAESpec, config: TrainConfig, monitor: str) -> ResumePoint:
    """Read `path` and decide what a run of `spec` with `config` resumes from (see the module docstring)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if ckpt.spec != spec:
        raise CheckpointError(f"resume_from={str(path)!r} holds a model of spec {ckpt.spec.to_dict()}, but this "
                              f"model's spec is {spec.to_dict()}; build the model from the checkpoint's spec "
                              f"(vae_core.load_checkpoint) or resume from a matching checkpoint")
    if ckpt.train_config is not None and ckpt.train_config.seed != config.seed:
        warnings.warn(f"resume: the checkpoint was trained with seed {ckpt.train_config.seed}, this config has seed "
                      f"{config.seed}; the remaining epochs will not repeat the original run", UserWarning,
                      stacklevel=caller_stacklevel())
    if ckpt.adam is None:
        warnings.warn(f"resume_from={str(path)!r} has no Adam state; resuming with fresh Adam moments", UserWarning,
                      stacklevel=caller_stacklevel())
    history = {k: [float(v) for v in (ckpt.history.get(k) or [])][:ckpt.epoch] for k in HISTORY_KEYS}
    state = TrainerState.from_checkpoint(ckpt.trainer_state, history, config, monitor)
    state.lr = resumed_learning_rate(ckpt.train_config, config, state.lr)
    state.stopped_early = still_stopped(state.stopped_early, state.early_stopping_bad_epochs, config)
    idle = nothing_to_train(ckpt.epoch, state.stopped_early, state.early_stopping_bad_epochs, config)
    if idle is not None:
        warnings.warn(f"resume_from={str(path)!r} {idle}; fit returns its history as it is, and writes nothing",
                      UserWarning, stacklevel=caller_stacklevel())
    best = None
    if config.early_stopping and state.best_epoch is not None:
        best = _best_weights(path, ckpt, spec, state.best_epoch)
    return ResumePoint(ckpt, ckpt.epoch, history, state, best)


def _best_weights(path: Path, ckpt: Checkpoint, spec: VAESpec, best_epoch: int) -> dict[str, np.ndarray] | None:
    if best_epoch == ckpt.epoch and "position" not in ckpt.trainer_state:  # a step checkpoint holds later weights
        return ckpt.weights
    candidate = path.parent / BEST_FILE
    try:
        other = read_checkpoint(candidate)
    except FileNotFoundError:
        other = None
    except CheckpointError as e:
        raise CheckpointError(f"resume: {str(candidate)!r}, the run's best weights (epoch {best_epoch}), cannot be "
                              f"read ({e}); move it away to resume without them") from e
    if other is not None and other.epoch == best_epoch and other.spec == spec:
        return other.weights
    warnings.warn(f"resume: the best weights (epoch {best_epoch}) are not in {str(candidate)!r}; early stopping "
                  f"can only restore the best weights of the epochs still to run", UserWarning,
                  stacklevel=caller_stacklevel())
    return None


def resumed_learning_rate(saved: TrainConfig | None, config: TrainConfig, state_lr: float) -> float:
    """The LR a resumed run continues with: the checkpoint's current LR (which plateaus may have lowered),
    unless `config.learning_rate` differs from the learning_rate of the run that wrote the checkpoint; an
    explicitly changed learning rate wins (`vae train --resume --learning-rate ...`)."""
    if saved is not None and config.learning_rate != saved.learning_rate:
        return float(config.learning_rate)
    return float(state_lr)


def still_stopped(stopped_early: bool, bad_epochs: int, config: TrainConfig) -> bool:
    """Whether a run that early stopping ended stays ended under `config`: only while it keeps early stopping on and
    the epochs without improvement still reach its patience (turned off, or a larger patience, and it trains on)."""
    return bool(stopped_early) and config.early_stopping and bad_epochs >= config.early_stopping_patience


def nothing_to_train(epoch: int, stopped_early: bool, bad_epochs: int, config: TrainConfig, *,
                     flags: bool = False) -> str | None:
    """Why resuming a checkpoint of `epoch` epochs with `config` trains nothing, in words that follow the run's name
    ("... already has 2 epochs ..."), with how to train more; None when it trains. `flags`: name the `vae train`
    flags (--epochs 3), else the TrainConfig fields (epochs=3). `stopped_early` as `still_stopped` gives it."""
    def field(name: str, value: Any) -> str:
        return f"--{name.replace('_', '-')} {value}" if flags else f"{name}={value}"

    if stopped_early:
        off = "--no-early-stopping" if flags else "early_stopping=False"
        more = field("epochs", max(config.epochs, epoch + 1))
        return (f"was stopped by early stopping after epoch {epoch} (no improvement for {bad_epochs} epochs), so "
                f"there is nothing to train; to train on, pass {off} or a larger "
                f"{field('early_stopping_patience', bad_epochs + 1)}, with {more} or more")
    if config.epochs <= epoch:
        asked = "--epochs" if flags else "config.epochs"
        return (f"already has {epoch} epoch{'s' if epoch != 1 else ''} and {asked} is {config.epochs} (the total to "
                f"reach, not the epochs to add), so there is nothing to train; to train more, pass the new total, "
                f"e.g. {field('epochs', epoch + 1)}")
    return None


def idle_resume(path: str | os.PathLike, config: TrainConfig, *, flags: bool = False) -> str | None:
    """`nothing_to_train` for the checkpoint at `path`, from its header alone (no tensors read): what `vae train
    --resume` checks before it reads the data or writes anything."""
    meta = read_metadata(path)
    state = meta.get("trainer_state") or {}
    bad_epochs = state.get("early_stopping_bad_epochs", 0)
    stopped = still_stopped(state.get("stopped_early", False), bad_epochs, config)
    return nothing_to_train(meta.get("epoch", 0), stopped, bad_epochs, config, flags=flags)
