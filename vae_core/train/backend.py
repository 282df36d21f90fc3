"""The contract between the neutral trainer (`vae_core.train.loop`) and a framework.

A backend's `fit` checks its framework-specific arguments, builds an object that satisfies `TrainerBackend` for
one model, one optimizer and one device, and hands it to `vae_core.train.loop.run`. Everything else (epochs, data
order and noise, history, checkpoints, resume, the LR plateau and early stopping, the non-finite stop, progress
and messages) is the trainer's, and is the same in every backend.

Arrays cross this boundary as NumPy, in the neutral layouts of `vae_core.io.checkpoint`; tensors stay inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from vae_core.data.lazy import LazyRows
from vae_core.io.checkpoint import AdamState
from vae_core.train.world import World

Means = tuple[float, float, float]  # (loss, recon, kl): exact means over examples, nats per example


@dataclass(frozen=True)
class StepsResult:
    """What a run of optimizer steps reports back to the trainer."""

    losses: np.ndarray  # (k, 3) float64: the batch means (loss, recon, kl) of the k steps run, in order
    weights_finite: bool  # every weight is finite after them


@runtime_checkable
class TrainerBackend(Protocol):
    """One model and its optimizer on one device, driven by `vae_core.train.loop.run`."""

    name: str  # the backend's registry name, written into checkpoints ("torch", "tf")
    model: Any  # the native model being trained (what callbacks see)
    world: World  # the processes of the run (`vae_core.train.world.SINGLE` for one); the data is split between them

    def set_data(self, train: np.ndarray | LazyRows, val: np.ndarray | None, val_eps: np.ndarray | None) -> None:
        """Keep the (N, D) training set (float32, or uint8 images to turn into x / 255 per batch; the same for the
        validation set), and the (M, D) validation set with its fixed (M, L) noise,
        where the steps run (device memory, a tf.Variable); called once, before the first epoch. A `LazyRows`
        training set (a .npy map's `MappedRows`, a dataset's `ItemRows`) stays where it is: each batch is read with
        `train.take(positions)` when it is needed, ahead of its step."""

    def begin_epoch(self, epoch: int, order: np.ndarray, images: np.ndarray | None, eps: np.ndarray | None) -> None:
        """Prepare the 0-based `epoch`: its batches are `order` (N,) in turn.

        images: this epoch's (N, D) training set when it differs from `set_data`'s (dynamic binarization: 0/1 in
            float32, or 0/255 in uint8 for uint8 data), else None.
        eps: (N, L) noise, row i for the i-th example in `order`; None means the backend draws its own framework
            noise as a function of (config.seed, epoch) alone.
        """

    def train_steps(self, first: int, stop: int, should_stop: Callable[[], bool],
                    on_steps: Callable[[int, np.ndarray | None], object], step_losses: bool = False) -> StepsResult:
        """Run the epoch's optimizer steps `first`, ..., `stop - 1` (0-based) in order, and return early at a step
        boundary once `should_stop()` is true. on_steps(k, losses): k more steps are done (the progress bar), with
        their (k, 3) float64 batch means when `step_losses` asks for them (a callback's batch hook; a backend that
        keeps them on the device reads them back per step only then), else None or the means it has at hand."""

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


class WeightsAdapter:
    """The weights-and-Adam half of `TrainerBackend`, for a trainer with `model`, `optimizer` and its backend's
    `weights` module (whose mirrored functions convert at the boundary): what both backends' trainers share."""

    weights_module: ModuleType  # backends.<name>.weights
    model: Any
    optimizer: Any

    def export_weights(self) -> dict[str, np.ndarray]:
        return self.weights_module.export_weights(self.model)

    def import_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.weights_module.import_weights(self.model, weights)

    def export_adam(self) -> AdamState:
        return self.weights_module.export_adam(self.model, self.optimizer)

    def import_adam(self, adam: AdamState) -> None:
        self.weights_module.import_adam(self.model, self.optimizer, adam)

