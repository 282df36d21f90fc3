"""Backend-neutral pieces of the training loop: input checks, data order, history layout."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig
from vae_core.data import binarize
from vae_core.mapped import MappedRows, is_mapped
from vae_core.spec import VAESpec

# Per-epoch lists in the history dict that both backends' `fit` return, in this order.
HISTORY_KEYS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr", "seconds")


def example_layouts(spec: VAESpec) -> str:
    """The shapes a batch of this spec's examples may take, for messages: "(N, D)" and the image layouts."""
    layouts = [f"(N, {spec.input_dim})"]
    if spec.image_shape is not None:
        h, w, c = (*spec.image_shape, 1)[:3]
        layouts.append(f"(N, {h}, {w}, {c})")
        if c == 1:
            layouts.append(f"(N, {h}, {w})")
    return " or ".join(layouts)


def rows_shape(shape: tuple[int, ...], spec: VAESpec, argument: str, *, single: bool = False) -> tuple[int, int]:
    """The (N, D) rows a batch of `shape` is, in channels-last order: (N, D), or images (N, H, W, C), and (N, H, W)
    when C is 1, of the spec's image_shape. `single`: one example (D,) counts too, as (1, D).

    Raises ValueError naming `argument`, the shapes allowed and the shape found.
    """
    shape = tuple(int(s) for s in shape)
    d = spec.input_dim
    image = None if spec.image_shape is None else (*spec.image_shape, 1)[:3]  # (H, W, C)
    if len(shape) == 2 and shape[1] == d:
        return shape[0], d
    if single and shape == (d,):
        return 1, d
    if image is not None and (shape[1:] == image or (image[2] == 1 and shape[1:] == image[:2])):
        return shape[0], d
    if len(shape) == 1:
        fix = "For a single example use x.reshape(1, -1)"
    elif image is None and len(shape) > 2:
        fix = "Flatten images with x.reshape(len(x), -1), or give the spec an image_shape"
    else:
        fix = "Build the model with a VAESpec whose input_dim and image_shape match the data"
    raise ValueError(f"{argument} must have shape {example_layouts(spec)} to match the spec (input_dim="
                     f"{d}, image_shape={spec.image_shape}); got {shape}. {fix}")


def check_data(x: Any, spec: VAESpec, argument: str = "x", *, keep_uint8: bool = False,
               stream: bool = False) -> np.ndarray | MappedRows:
    """Validate a batch of examples at the API boundary and return it as C-contiguous (N, D) rows.

    Accepted layouts: (N, D) rows, or images (N, H, W, C) (and (N, H, W) for one channel) of the spec's
    image_shape, channels last; images become rows without a copy. Accepted dtypes: float32 or float64 (cast to
    float32), and uint8 images (scaled by 1/255: float32 in [0, 1], or kept uint8 with `keep_uint8`, 4x smaller,
    for a trainer that converts per batch). A `vae_core.mapped.MappedRows` is read whole, unless `stream`: then it,
    and a C-contiguous `np.memmap` of a file (`is_mapped`), comes back as (N, D) `MappedRows` that a trainer reads a
    batch at a time (uint8 kept).
    Rejected with ValueError/TypeError naming `argument`: other dtypes and shapes, empty, NaN/inf, and, for a
    Bernoulli decoder, values outside [0, 1].
    """
    if stream and is_mapped(x):
        x = MappedRows(x)
    if stream and isinstance(x, MappedRows):
        return _check_mapped(x, spec, argument)
    if isinstance(x, MappedRows):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{argument} must be a NumPy array of shape {example_layouts(spec)}; "
                        f"got {type(x).__name__}. Convert it with np.asarray(...)")
    if x.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"{argument} must be float32, float64 or uint8 (scaled by 1/255); got dtype {x.dtype}")
    x = x.reshape(rows_shape(x.shape, spec, argument))  # (N, D)
    if x.shape[0] == 0:
        raise ValueError(f"{argument} is empty (shape {x.shape}); pass at least one example")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x) if keep_uint8 else np.ascontiguousarray(x, np.float32) / np.float32(255.0)
    x = np.ascontiguousarray(x, np.float32)
    _check_values(spec, argument, int((~np.isfinite(x)).any(axis=1).sum()),
                  lambda: (float(x.min()), float(x.max())))
    return x


def _check_values(spec: VAESpec, argument: str, n_bad: int, value_range: Callable[[], tuple[float, float]]) -> None:
    """The value checks of float examples: none of the `n_bad` examples with NaN/inf, and for a Bernoulli decoder
    `value_range()` (low, high) inside [0, 1]."""
    if n_bad:
        raise ValueError(f"{argument} holds NaN or inf values in {n_bad} example(s); clean or drop them first")
    if spec.likelihood == "bernoulli":
        low, high = value_range()
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{argument} must lie in [0, 1] for a Bernoulli decoder; got values in "
                             f"[{low:.4g}, {high:.4g}]. Scale pixels to [0, 1] or use likelihood='gaussian'")


def _check_mapped(x: MappedRows, spec: VAESpec, argument: str) -> MappedRows:
    """check_data's checks on examples that stay on disk: float values are scanned a chunk at a time."""
    x = x.reshape(rows_shape(x.shape, spec, argument))  # (N, D), still on disk
    if len(x) == 0:
        raise ValueError(f"{argument} is empty (shape {x.shape}); pass at least one example")
    if x.dtype != np.uint8:
        n_bad, low, high = 0, np.inf, -np.inf
        for chunk in x.chunks():
            n_bad += int((~np.isfinite(chunk)).any(axis=1).sum())
            low, high = min(low, float(np.nanmin(chunk))), max(high, float(np.nanmax(chunk)))
        _check_values(spec, argument, n_bad, lambda: (low, high))
    return x


def check_fit_inputs(spec: VAESpec, train: Any, val: Any, config: Any
                     ) -> tuple[np.ndarray | MappedRows, np.ndarray | None]:
    """The checks every backend's `fit` makes at its boundary; returns `train` and `val` as (N, D) rows, uint8 kept
    uint8 (the backends convert per batch), else float32. A `MappedRows` or mapped `np.memmap` train set stays on
    disk (the backends read it a batch at a time), except with dynamic binarization (read, with a warning); `val`
    is read into memory."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit: config must be a vae_core.TrainConfig; got {type(config).__name__}")
    train = check_data(train, spec, "train", keep_uint8=True, stream=True)
    if isinstance(train, MappedRows):
        if not config.dynamic_binarization:
            return train, None if val is None else check_data(val, spec, "val", keep_uint8=True)
        warnings.warn(f"train ({train!r}) is read into memory: TrainConfig.dynamic_binarization draws each epoch's "
                      f"sample of the whole set there. Set dynamic_binarization=False to read it from disk a batch "
                      f"at a time", UserWarning, stacklevel=caller_stacklevel())
        train = np.asarray(train)
    if config.dynamic_binarization and train.dtype != np.uint8 and (train.min() < 0.0 or train.max() > 1.0):
        raise ValueError(f"train must lie in [0, 1] with TrainConfig.dynamic_binarization (each pixel is the "
                         f"probability of a 1); got values in [{train.min():.4g}, {train.max():.4g}]. Scale "
                         f"pixels to [0, 1] or set dynamic_binarization=False")
    return train, None if val is None else check_data(val, spec, "val", keep_uint8=True)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training examples in `epoch` (0-based): a function of (seed, epoch) alone.

    Both backends use it, so they see the same batches, and a resumed run sees the same order as an
    uninterrupted one.
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_binarized(x: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Dynamic binarization: the training set of `epoch` (0-based) as one fresh Bernoulli sample per pixel.

    x: (N, D) float32 probabilities in [0, 1], or uint8 images (probability x / 255); returns (N, D) 0/1 in
    float32, or for uint8 images in uint8 as 0/255 (what the per-batch x / 255 turns into exactly 0 and 1): row i
    for example i (the epoch's order is applied after). A function of (seed, epoch) alone, so both backends train
    on the same 0/1 images and a resumed run repeats an uninterrupted one. Used by `fit` when
    `TrainConfig.dynamic_binarization` is on.
    """
    rng = np.random.default_rng([seed, epoch, 3])
    if x.dtype == np.uint8:  # the same draws as for the float32 images x / 255
        return (rng.random(x.shape, dtype=np.float32) < x.astype(np.float32) / np.float32(255.0)).astype(np.uint8) \
            * np.uint8(255)
    return binarize(x, rng)


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
