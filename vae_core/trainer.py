"""The training loop of every backend, written once.

`run(backend, spec, args)` trains through a `vae_core.backend.TrainerBackend` and owns the policy:
- the epochs, each in the order `epoch_permutation(seed, epoch, N)`, with `epoch_noise` when shared_noise is on
  and a fresh 0/1 sample per epoch with dynamic binarization: all functions of (seed, epoch), so a resumed run
  repeats an uninterrupted one;
- the history (`vae_core.training.HISTORY_KEYS`), and `last.safetensors` every epoch and `best.safetensors` when
  the monitored loss improves;
- resume (`vae_core.resume.open_resume`: what is restored, trimmed or refused);
- the LR plateau and early stopping (`vae_core.trainer_state.TrainerState`, stored as the checkpoint's JSON);
- the non-finite stop: `NonFiniteLossError` before any checkpoint of the failing epoch is written;
- progress (one tqdm bar counting optimizer steps, on stderr) and messages.

`check_fit_arguments` makes the checks every backend's `fit` makes at its boundary.
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.backend import TrainerBackend
from vae_core.checkpoint import BEST_FILE, LAST_FILE, Checkpoint, write_checkpoint
from vae_core.config import TrainConfig
from vae_core.resume import open_resume
from vae_core.spec import VAESpec
from vae_core.trainer_state import TrainerState
from vae_core.training import (NonFiniteLossError, check_fit_inputs, check_fp64_run, empty_history, epoch_binarized,
                               epoch_noise, epoch_permutation, eval_noise, prepare_out_dir)

DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N"
PRECISIONS = ("fp32", "bf16", "fp64")
EVAL_BATCH_SIZE = 1000  # batch size of the validation pass inside fit, and evaluate's default
TRAIN_KEYS, VAL_KEYS = ("train_loss", "train_recon", "train_kl"), ("val_loss", "val_recon", "val_kl")


def check_device_name(device: Any, argument: str = "device") -> str:
    """`device` as given, if it is one of DEVICES or 'cuda:N'; whether it exists is the backend's check."""
    if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"{argument} must be one of 'auto', 'cpu', 'cuda' (or 'cuda:N'); got {device!r}")
    return device


def check_precision(precision: Any) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}")
    return precision


def check_flag(caller: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{caller}: {name} must be True or False; got {value!r}")
    return value


def check_int(caller: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{caller}: {name} must be an int >= {minimum}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FitArguments:
    """`fit`'s arguments after the boundary checks."""

    train: np.ndarray  # (N, D) float32
    val: np.ndarray | None  # (M, D) float32, or None
    config: TrainConfig
    out: Path | None  # the run's folder, created and writable, or None for no checkpoints
    resume_from: Path | None  # the checkpoint to continue from
    shared_noise: bool  # eps from `epoch_noise`, identical in every backend (lockstep comparisons)
    precision: str  # one of PRECISIONS
    progress: bool  # the progress bar and the early-stopping line, on stderr


def check_fit_arguments(spec: VAESpec, train: Any, val: Any, config: Any, *, out_dir: Any, resume_from: Any,
                        shared_noise: Any, precision: str, progress: Any) -> FitArguments:
    """The checks of `fit`'s neutral arguments; creates `out_dir` last, once everything else has passed."""
    train, val = check_fit_inputs(spec, train, val, config)
    check_fp64_run(precision, out_dir, resume_from)
    check_flag("fit", "shared_noise", shared_noise)
    check_flag("fit", "progress", progress)
    if resume_from is not None and not isinstance(resume_from, (str, os.PathLike)):
        raise TypeError(f"fit: resume_from must be a checkpoint path (str or os.PathLike) or None; "
                        f"got {type(resume_from).__name__}")
    out = prepare_out_dir(out_dir)
    return FitArguments(train, val, config, out, None if resume_from is None else Path(resume_from), shared_noise,
                        precision, progress)


def run(backend: TrainerBackend, spec: VAESpec, args: FitArguments) -> dict[str, list[float]]:
    """Train through `backend`; returns the history. Resume warnings point at the caller of the backend's fit."""
    from tqdm.auto import tqdm

    config = args.config
    monitor = "val_loss" if args.val is not None else "train_loss"
    state, history, start_epoch, best_weights, last_good = \
        TrainerState(config.learning_rate, monitor), empty_history(), 0, None, None
    if args.resume_from is not None:
        point = open_resume(args.resume_from, spec, config, monitor)
        backend.import_weights(point.checkpoint.weights)
        if point.checkpoint.adam is not None:
            backend.import_adam(point.checkpoint.adam)
        start_epoch, history, state, best_weights = point.epoch, point.history, point.state, point.best_weights
        last_good = str(args.resume_from)
    n, latent = len(args.train), spec.latent_dim
    n_steps = -(-n // config.batch_size)
    backend.set_data(args.train, args.val, None if args.val is None else eval_noise(config.seed, len(args.val), latent))

    epochs = range(0) if state.stopped_early else range(start_epoch, config.epochs)
    bar = tqdm(total=len(epochs) * n_steps, desc=f"{backend.name} fit", unit="step", disable=not args.progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for epoch in epochs:  # 0-based here; 1-based in history, checkpoints and errors
            start = time.perf_counter()
            lr = state.lr
            backend.set_learning_rate(lr)
            images = epoch_binarized(args.train, config.seed, epoch) if config.dynamic_binarization else None
            eps = epoch_noise(config.seed, epoch, n, latent) if args.shared_noise else None  # (N, L) or None
            result = backend.train_epoch(epoch, epoch_permutation(config.seed, epoch, n), images, eps, bar.update)
            if result.nonfinite_step is not None:
                raise NonFiniteLossError(epoch + 1, result.nonfinite_step, last_good)
            val_means = None if args.val is None else backend.validate()
            if val_means is not None and not np.isfinite(val_means).all():
                raise NonFiniteLossError(epoch + 1, n_steps, last_good)

            _append(history, TRAIN_KEYS, result.train)
            if val_means is not None:
                _append(history, VAL_KEYS, val_means)
            history["lr"].append(lr)
            improved = state.update(epoch + 1, history[monitor][-1], config)
            if improved and config.early_stopping:
                best_weights = backend.export_weights()
            history["seconds"].append(time.perf_counter() - start)
            if args.out is not None:
                ckpt = Checkpoint(spec=spec, weights=backend.export_weights(), train_config=config, epoch=epoch + 1,
                                  history=history, adam=backend.export_adam(), trainer_state=state.to_dict(),
                                  backend=backend.name)
                if improved:
                    write_checkpoint(args.out / BEST_FILE, ckpt)
                last_good = str(write_checkpoint(args.out / LAST_FILE, ckpt))
            bar.set_postfix({"epoch": epoch + 1, "loss": f"{result.train[0]:.2f}",
                             **({"val": f"{val_means[0]:.2f}"} if val_means else {}), "lr": f"{lr:.2g}"})
            if state.stopped_early:
                bar.close()
                if args.progress:
                    print(state.stop_message(epoch + 1), file=sys.stderr)
                break
    finally:
        bar.close()
    if config.early_stopping and best_weights is not None:  # as the seed's loop: end on the best epoch's weights
        backend.import_weights(best_weights)
    return history


def _append(history: dict[str, list[float]], keys: tuple[str, ...], values: Any) -> None:
    for key, value in zip(keys, values):
        history[key].append(float(value))
