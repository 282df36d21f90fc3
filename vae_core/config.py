"""TrainConfig: the optimisation hyperparameters, shared by both backends' `fit`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from vae_core.checks import check_bool, check_float, check_int, known_fields


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation hyperparameters of `fit`, the same in every backend (a frozen dataclass, checked on creation).

    `TrainConfig.batch_size` is the global batch: the examples of one optimizer step, over all processes of a
    data-parallel run.
    """

    batch_size: int = 128  # examples per optimisation step
    epochs: int = 20  # passes over the training set
    learning_rate: float = 1e-3  # Adam's initial step size
    adam_beta1: float = 0.9  # Adam's first-moment decay
    adam_beta2: float = 0.999  # Adam's second-moment decay
    adam_eps: float = 1e-8  # Adam's epsilon, added to sqrt(v_hat) as in torch.optim.Adam
    seed: int = 0  # seeds weight init, data order and the reparameterisation noise
    grad_clip_norm: float | None = None  # clip the global gradient norm to this (seed 3.4 uses 1.0); None: off
    reduce_lr_on_plateau: bool = False  # halve the LR when val loss stalls (seed 3.4)
    lr_plateau_factor: float = 0.5  # LR multiplier on a plateau
    lr_plateau_patience: int = 5  # epochs without improvement before the LR drops
    early_stopping: bool = False  # stop when val loss stalls, then restore the best weights (seed 3.4)
    early_stopping_patience: int = 10  # epochs without improvement before stopping
    dynamic_binarization: bool = False  # train each epoch on a fresh Bernoulli(x) sample of the pixels; val as given
    checkpoint_every_steps: int | None = None  # also write last.safetensors every N optimizer steps; None: per epoch

    def __post_init__(self) -> None:
        # Each field is stored as the checker returns it: a NumPy scalar (np.int64(16)) becomes a plain number, so
        # to_dict() and the checkpoint's JSON take it.
        def store(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        store("batch_size", check_int("TrainConfig", "batch_size", self.batch_size, minimum=1))
        store("epochs", check_int("TrainConfig", "epochs", self.epochs, minimum=1))
        store("learning_rate", check_float("TrainConfig", "learning_rate", self.learning_rate, low=0.0, low_open=True))
        store("adam_beta1", check_float("TrainConfig", "adam_beta1", self.adam_beta1, low=0.0, high=1.0,
                                        high_open=True))
        store("adam_beta2", check_float("TrainConfig", "adam_beta2", self.adam_beta2, low=0.0, high=1.0,
                                        high_open=True))
        store("adam_eps", check_float("TrainConfig", "adam_eps", self.adam_eps, low=0.0, low_open=True))
        store("seed", check_int("TrainConfig", "seed", self.seed, minimum=0))
        if self.grad_clip_norm is not None:
            store("grad_clip_norm", check_float("TrainConfig", "grad_clip_norm", self.grad_clip_norm, low=0.0,
                                                low_open=True))
        store("reduce_lr_on_plateau", check_bool("TrainConfig", "reduce_lr_on_plateau", self.reduce_lr_on_plateau))
        store("lr_plateau_factor", check_float("TrainConfig", "lr_plateau_factor", self.lr_plateau_factor, low=0.0,
                                               high=1.0, low_open=True, high_open=True))
        store("lr_plateau_patience", check_int("TrainConfig", "lr_plateau_patience", self.lr_plateau_patience,
                                               minimum=0))
        store("early_stopping", check_bool("TrainConfig", "early_stopping", self.early_stopping))
        store("early_stopping_patience", check_int("TrainConfig", "early_stopping_patience",
                                                   self.early_stopping_patience, minimum=1))
        store("dynamic_binarization", check_bool("TrainConfig", "dynamic_binarization", self.dynamic_binarization))
        if self.checkpoint_every_steps is not None:
            store("checkpoint_every_steps", check_int("TrainConfig", "checkpoint_every_steps",
                                                      self.checkpoint_every_steps, minimum=1))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, d))


