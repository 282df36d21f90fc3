"""Backend-neutral pieces of the training loop: input checks, data order, history layout."""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.config import TrainConfig
from vae_core.data import binarize
from vae_core.spec import VAESpec

# Per-epoch lists in the history dict that both backends' `fit` return, in this order.
HISTORY_KEYS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr", "seconds")


def check_data(x: Any, spec: VAESpec, argument: str = "x") -> np.ndarray:
    """Validate a batch of examples at the API boundary and return it as C-contiguous float32 (N, D).

    Accepted: float arrays in float32 or float64 (cast to float32), and uint8 images (scaled by 1/255).
    Rejected with ValueError/TypeError naming `argument`: other dtypes, not 2-D, wrong D, empty, NaN/inf,
    and, for a Bernoulli decoder, values outside [0, 1].
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{argument} must be a NumPy array of shape (N, {spec.input_dim}); "
                        f"got {type(x).__name__}. Convert it with np.asarray(...)")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)
    elif x.dtype in (np.float32, np.float64):
        x = x.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{argument} must be float32, float64 or uint8 (scaled by 1/255); got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != spec.input_dim:
        fix = ("For a single example use x.reshape(1, -1)" if x.ndim == 1 else
               "Flatten images with x.reshape(len(x), -1)" if x.ndim > 2 else
               "Build the model with VAESpec(input_dim=...) matching the data")
        raise ValueError(f"{argument} must have shape (N, {spec.input_dim}) to match spec.input_dim; got "
                         f"{x.shape}. {fix}")
    if x.shape[0] == 0:
        raise ValueError(f"{argument} is empty (shape {x.shape}); pass at least one example")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{argument} holds NaN or inf values in {bad} example(s); clean or drop them first")
    if spec.likelihood == "bernoulli" and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{argument} must lie in [0, 1] for a Bernoulli decoder; got values in "
                         f"[{x.min():.4g}, {x.max():.4g}]. Scale pixels to [0, 1] or use likelihood='gaussian'")
    return np.ascontiguousarray(x)


def check_fit_inputs(spec: VAESpec, train: Any, val: Any, config: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The checks every backend's `fit` makes at its boundary; returns `train` and `val` as float32 (N, D)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit: config must be a vae_core.TrainConfig; got {type(config).__name__}")
    train = check_data(train, spec, "train")
    if config.dynamic_binarization and (train.min() < 0.0 or train.max() > 1.0):
        raise ValueError(f"train must lie in [0, 1] with TrainConfig.dynamic_binarization (each pixel is the "
                         f"probability of a 1); got values in [{train.min():.4g}, {train.max():.4g}]. Scale "
                         f"pixels to [0, 1] or set dynamic_binarization=False")
    return train, None if val is None else check_data(val, spec, "val")


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training examples in `epoch` (0-based): a function of (seed, epoch) alone.

    Both backends use it, so they see the same batches, and a resumed run sees the same order as an
    uninterrupted one.
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_binarized(x: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Dynamic binarization: the training set of `epoch` (0-based) as one fresh Bernoulli sample per pixel.

    x: (N, D) float32 probabilities in [0, 1]; returns (N, D) float32 0/1, row i for example i (the epoch's order
    is applied after). A function of (seed, epoch) alone, so both backends train on the same 0/1 images and a
    resumed run repeats an uninterrupted one. Used by `fit` when `TrainConfig.dynamic_binarization` is on.
    """
    return binarize(x, np.random.default_rng([seed, epoch, 3]))


def empty_history() -> dict[str, list[float]]:
    return {k: [] for k in HISTORY_KEYS}


def epoch_noise(seed: int, epoch: int, n: int, latent_dim: int) -> np.ndarray:
    """Shared reparameterisation noise for one epoch: (n, latent_dim) float32 standard normals.

    Row i is the eps of the i-th example in that epoch's order. With `fit(..., shared_noise=True)` both
    backends use it, so their training runs can be compared step by step (lockstep).
    """
    return np.random.default_rng([seed, epoch, 1]).standard_normal((n, latent_dim), dtype=np.float32)


def eval_noise(seed: int, n: int, latent_dim: int) -> np.ndarray:
    """The eps of `evaluate(seed=seed)` and of fit's validation: (n, latent_dim) float32, row i for example i.

    One NumPy stream for both backends, so they evaluate a model on the same numbers.
    """
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or inf loss; the last good checkpoint (if any) is left untouched."""

    def __init__(self, epoch: int, step: int, checkpoint: str | None = None, phase: str = "training"):
        self.epoch, self.step, self.checkpoint, self.phase = epoch, step, checkpoint, phase
        where = f"the last good checkpoint is {checkpoint!r}" if checkpoint else "no checkpoint was written"
        what = (f"non-finite loss at epoch {epoch}, step {step} (1-based)" if phase == "training" else
                f"non-finite {phase} loss after epoch {epoch} (its {step} steps had finite losses)")
        super().__init__(f"{what}; training stopped and {where}. "
                         f"Lower TrainConfig.learning_rate or set TrainConfig.grad_clip_norm")


def resumed_learning_rate(saved: TrainConfig | None, config: TrainConfig, state_lr: float) -> float:
    """The LR a resumed run continues with: the checkpoint's current LR (which plateaus may have lowered),
    unless `config.learning_rate` differs from the learning_rate of the run that wrote the checkpoint; an
    explicitly changed learning rate wins (`vae train --resume --learning-rate ...`)."""
    if saved is not None and config.learning_rate != saved.learning_rate:
        return float(config.learning_rate)
    return float(state_lr)


def check_fp64_run(precision: str, out_dir: Any, resume_from: Any) -> None:
    """`fit(precision="fp64")` trains float64 weights and hands them back rounded to float32; checkpoints hold
    float32, so such a run takes neither out_dir nor resume_from."""
    if precision == "fp64" and (out_dir is not None or resume_from is not None):
        raise ValueError(f"precision='fp64' takes no out_dir or resume_from (got out_dir={out_dir!r}, "
                         f"resume_from={resume_from!r}): checkpoints hold float32 weights, so they would not carry "
                         f"an fp64 run. Use fp64 for numerical checks, and fp32 for runs you keep")


def prepare_out_dir(out_dir: Any, argument: str = "out_dir") -> "Path | None":
    """Create the output folder of a run and check that files can be written there, before any training.

    Raises NotADirectoryError (the path or a parent is a file) or PermissionError (not writable), naming
    `argument` and the path.
    """
    import os
    from pathlib import Path

    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a folder path (str or os.PathLike) or None; got {type(out_dir).__name__}")
    out = Path(out_dir)
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker == out:
        raise NotADirectoryError(f"{argument} {str(out)!r} is a file; pass a folder")
    if blocker is not None:
        raise NotADirectoryError(f"{argument} {str(out)!r} is inside a file, not a folder ({str(blocker)!r}); "
                                 f"pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".vae-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"{argument} {str(out)!r} is not writable ({e.strerror}); pass a folder you can "
                              f"write to") from None
    return out
