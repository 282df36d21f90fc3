"""The loggers of `vae train` and `vae compare`: `--tensorboard DIR` and `--mlflow [URI]` as built-in callbacks.

Each is made, and so checked (the package installed, the folder writable, the arguments sound), before the run's
folder is created or anything is trained.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.callbacks import MLflow, TensorBoard
from vae_core.config import TrainConfig

EXAMPLES = 512  # test examples the loggers show: reconstructions of the first few, latent histograms of all
MLFLOW_EXPERIMENT = "vae-core"  # the experiment of `vae train --mlflow`, unless $MLFLOW_EXPERIMENT_NAME names one


def shown_examples(x_test: np.ndarray, seed: int) -> np.ndarray:
    """EXAMPLES test examples picked by `seed` (all, if fewer), in their order: what the loggers show."""
    n = len(x_test)
    picks = np.sort(np.random.default_rng(seed).choice(n, size=min(EXAMPLES, n), replace=False))
    return x_test[picks]


def tensorboard_callback(log_dir: str | os.PathLike, x_test: np.ndarray, seed: int, argument: str) -> TensorBoard:
    """A TensorBoard callback into `log_dir`, its examples from the test set; errors name the flag `argument`."""
    try:
        return TensorBoard(log_dir, examples=shown_examples(x_test, seed), seed=seed)
    except (ValueError, TypeError, OSError) as e:
        raise type(e)(str(e).replace("TensorBoard.log_dir", argument)) from None


def train_callbacks(opts: dict[str, Any], data: Any, config: TrainConfig, out: Path) -> list[Any]:
    """The callbacks `vae train`'s options ask for (none without --tensorboard or --mlflow)."""
    callbacks: list[Any] = []
    if opts.get("tensorboard") is not None:
        callbacks.append(tensorboard_callback(opts["tensorboard"], data.x_test, config.seed, "--tensorboard"))
    if opts.get("mlflow") is not None:
        params = {k: opts[k] for k in ("dataset", "data", "binarize", "device", "precision", "out")
                  if opts.get(k) is not None}
        try:
            callbacks.append(MLflow(os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT,
                                    run_name=out.name, tracking_uri=opts["mlflow"] or None, config=config,
                                    checkpoint_dir=out, examples=data.x_test[:10], params=params, seed=config.seed))
        except (ValueError, TypeError, OSError) as e:
            raise type(e)(str(e).replace("MLflow.tracking_uri", "--mlflow")) from None
    return callbacks
