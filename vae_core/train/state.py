"""The training loop's policy state: LR plateau, early stopping and the best loss, stored as JSON in checkpoints.

Both backends' `fit` run it after every epoch (`update`) and write `to_dict()` as the checkpoint's
`trainer_state`; resume restores it with `from_checkpoint`. Plain Python: the frameworks only read `lr`.

The JSON keys are the dataclass fields below (`lr`, `monitor`, `best_loss`, `best_epoch`, `plateau_bad_epochs`,
`early_stopping_bad_epochs`, `stopped_early`). A checkpoint whose trainer_state lacks them (another writer) is
resumed by replaying its recorded history through the same rules.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig

STATE_KEYS = ("lr", "best_loss", "best_epoch", "plateau_bad_epochs", "early_stopping_bad_epochs", "stopped_early")
PLATEAU_MIN_CHANGE = 1e-8  # as torch's ReduceLROnPlateau eps: smaller LR changes are ignored


@dataclass
class TrainerState:
    """The loop state a checkpoint carries (JSON `trainer_state`): one state machine for every backend, so a
    checkpoint resumes the same in either.

    An improvement is a strictly lower monitored loss. The LR is multiplied by `lr_plateau_factor` when more than
    `lr_plateau_patience` epochs in a row fail to improve (torch ReduceLROnPlateau, threshold 0, cooldown 0, LR
    changes below 1e-8 ignored); training stops once `early_stopping_patience` epochs in a row fail to improve.
    """

    lr: float  # learning rate for the next epoch
    monitor: str = "val_loss"  # what plateau, early stopping and best.safetensors watch (train_loss without val)
    best_loss: float | None = None  # lowest monitored loss so far
    best_epoch: int | None = None  # its 1-based epoch
    plateau_bad_epochs: int = 0  # epochs since the last improvement or LR drop (ReduceLROnPlateau.num_bad_epochs)
    early_stopping_bad_epochs: int = 0  # epochs since the last improvement
    stopped_early: bool = False  # early stopping has fired

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], history: dict[str, list[float]], config: TrainConfig,
                        monitor: str) -> "TrainerState":
        """Restore a checkpoint's state; a state without our keys (another writer) is rebuilt by replaying the
        monitored history through the same rules."""
        missing = [k for k in STATE_KEYS if k not in state]
        if not missing:
            return cls(lr=float(state["lr"]), monitor=monitor,
                       best_loss=None if state["best_loss"] is None else float(state["best_loss"]),
                       best_epoch=None if state["best_epoch"] is None else int(state["best_epoch"]),
                       plateau_bad_epochs=int(state["plateau_bad_epochs"]),
                       early_stopping_bad_epochs=int(state["early_stopping_bad_epochs"]),
                       stopped_early=bool(state["stopped_early"]))
        losses = history.get(monitor) or []
        warnings.warn(f"resume: trainer_state has no {missing}; replaying the plateau and early-stopping rules over "
                      f"{len(losses)} recorded {monitor!r} values instead", UserWarning, stacklevel=caller_stacklevel())
        replayed = cls(lr=config.learning_rate, monitor=monitor)
        for epoch, loss in enumerate(losses, 1):
            replayed.update(epoch, float(loss), config)
        return replayed

    def stop_message(self, epoch: int) -> str:
        """The line both backends' fit print (to stderr, with progress on) when early stopping fires at `epoch`."""
        return (f"early stopping after epoch {epoch}: {self.monitor} has not improved for "
                f"{self.early_stopping_bad_epochs} epochs; restoring the weights of epoch {self.best_epoch}")

    def update(self, epoch: int, loss: float, config: TrainConfig) -> bool:
        """Record the monitored loss of 1-based `epoch`; return whether it improved. May lower `lr`, may set
        `stopped_early`."""
        improved = self.best_loss is None or loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch = loss, epoch
            self.early_stopping_bad_epochs = self.plateau_bad_epochs = 0
        else:
            self.early_stopping_bad_epochs += 1
            self.plateau_bad_epochs += 1
        if config.reduce_lr_on_plateau and self.plateau_bad_epochs > config.lr_plateau_patience:
            new_lr = self.lr * config.lr_plateau_factor
            if self.lr - new_lr > PLATEAU_MIN_CHANGE:
                self.lr = new_lr
            self.plateau_bad_epochs = 0
        if not config.reduce_lr_on_plateau:
            self.plateau_bad_epochs = 0
        if config.early_stopping and self.early_stopping_bad_epochs >= config.early_stopping_patience:
            self.stopped_early = True
        return improved
