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
- Warnings are `UserWarning`s, pointing at the user's call of `fit`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig
from vae_core.io.checkpoint import BEST_FILE, Checkpoint, CheckpointError, read_checkpoint
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
