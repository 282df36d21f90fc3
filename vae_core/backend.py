"""The contract between the neutral trainer (`vae_core.trainer`) and a framework.

A backend's `fit` checks its framework-specific arguments, builds an object that satisfies `TrainerBackend` for
one model, one optimizer and one device, and hands it to `vae_core.trainer.run`. Everything else (epochs, data
order and noise, history, checkpoints, resume, the LR plateau and early stopping, the non-finite stop, progress
and messages) is the trainer's, and is the same in every backend.

Arrays cross this boundary as NumPy, in the neutral layouts of `vae_core.checkpoint`; tensors stay inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from vae_core.checkpoint import AdamState

Means = tuple[float, float, float]  # (loss, recon, kl): exact means over examples, nats per example


@dataclass(frozen=True)
class EpochResult:
    """What one epoch of optimizer steps reports back to the trainer."""

    train: Means  # means over the epoch's examples of the per-step losses, each example counted once
    nonfinite_step: int | None  # 1-based step of the first non-finite loss; the epoch's last step when only the
    # weights ended non-finite; None when every loss and weight is finite


@runtime_checkable
class TrainerBackend(Protocol):
    """One model and its optimizer on one device, driven by `vae_core.trainer.run`."""

    name: str  # the backend's registry name, written into checkpoints ("torch", "tf")

    def set_data(self, train: np.ndarray, val: np.ndarray | None, val_eps: np.ndarray | None) -> None:
        """Keep the float32 (N, D) training set, and the (M, D) validation set with its fixed (M, L) noise,
        where the steps run (device memory, a tf.Variable); called once, before the first epoch."""

    def train_epoch(self, epoch: int, order: np.ndarray, images: np.ndarray | None, eps: np.ndarray | None,
                    on_steps: Callable[[int], object]) -> EpochResult:
        """Run one epoch's optimizer steps (0-based `epoch`) on the batches of `order` (N,) in turn.

        images: this epoch's (N, D) training set when it differs from `set_data`'s (dynamic binarization), else
            None. eps: (N, L) noise, row i for the i-th example in `order`; None means the backend draws its own
            framework noise as a function of (config.seed, epoch) alone. on_steps(k): k more steps are done.
        """

    def validate(self) -> Means:
        """The validation set's means under its fixed noise, in eval mode, without gradients."""

    def set_learning_rate(self, lr: float) -> None:
        """The learning rate of the optimizer steps that follow."""

    def export_weights(self) -> dict[str, np.ndarray]:
        """The model's weights, neutral names and layouts (float32)."""

    def import_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load neutral weights into the model."""

    def export_adam(self) -> AdamState:
        """The optimizer's step count and moments, neutral names and layouts."""

    def import_adam(self, adam: AdamState) -> None:
        """Load a checkpoint's Adam state into the optimizer."""
