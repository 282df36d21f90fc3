"""`fit`'s arguments, checked at its boundary the same way in every backend."""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.checks import caller_stacklevel, check_bool, check_int
from vae_core.config import TrainConfig
from vae_core.data.lazy import LazyRows
from vae_core.data.mapped import MappedRows
from vae_core.data.rows import check_data
from vae_core.io.checkpoint import LAST_FILE
from vae_core.io.out_dir import prepare_out_dir
from vae_core.io.run_files import CHECKPOINT_FILES, check_file_targets, check_new_run
from vae_core.model.spec import VAESpec
from vae_core.train.callbacks import Callback, check_callbacks

DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N"

PRECISIONS = ("fp32", "bf16", "fp64")

EVAL_BATCH_SIZE = 1000  # batch size of the validation pass inside fit, and evaluate's default

def check_device_name(device: Any, argument: str = "device") -> str:
    """`device` as given, if it is one of DEVICES or 'cuda:N'; whether it exists is the backend's check."""
    if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"{argument} must be one of 'auto', 'cpu', 'cuda' (or 'cuda:N'); got {device!r}")
    return device

def check_precision(precision: Any) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}")
    return precision

@dataclass(frozen=True)
class FitArguments:
    """`fit`'s arguments after the boundary checks."""

    # (N, D) rows: float32, or uint8 images turned into x / 255 per batch; in memory, or read by position (a .npy
    # map's MappedRows, a dataset's ItemRows), or in order (a stream of batches' BatchStream)
    train: np.ndarray | LazyRows
    val: np.ndarray | None  # (M, D) rows as `train`, or None
    config: TrainConfig
    out: Path | None  # the run's folder, created and writable, or None for no checkpoints
    resume_from: Path | None  # the checkpoint to continue from
    shared_noise: bool  # eps from `epoch_noise`, identical in every backend (lockstep comparisons)
    precision: str  # one of PRECISIONS
    progress: bool  # the progress bar and the early-stopping line, on stderr
    data_workers: int = 0  # parallel readers of a dataset's items (`check_data_workers`)
    callbacks: tuple[Callback, ...] = ()  # called as training goes (`vae_core.train.callbacks`)
    overwrite: bool = False  # replace the run in `out`: its checkpoints are removed before the first step

def check_data_workers(data_workers: Any) -> int:
    """`fit(data_workers=)`: how many readers read a map-style dataset's items ahead of the step. 0 (the default):
    the training process reads them, one batch ahead in a thread (as for a .npy map); N > 0: torch reads in N
    DataLoader worker processes, TF in N parallel calls of its tf.data read. Arrays and .npy maps ignore it."""
    return check_int("fit", "data_workers", data_workers, minimum=0,
                     fix="0 reads a dataset in the training process, N > 0 in N parallel readers")

def check_fit_arguments(spec: VAESpec, train: Any, val: Any, config: Any, *, out_dir: Any, resume_from: Any,
                        shared_noise: Any, precision: str, progress: Any, data_workers: Any = 0,
                        callbacks: Any = None, overwrite: Any = False) -> FitArguments:
    """The checks of `fit`'s neutral arguments; creates `out_dir` last, once everything else has passed, then checks
    it as a run folder (`check_run_folder`)."""
    data_workers = check_data_workers(data_workers)
    callbacks = check_callbacks(callbacks)
    train, val = check_fit_inputs(spec, train, val, config)
    check_fp64_run(precision, out_dir, resume_from)
    check_bool("fit", "shared_noise", shared_noise)
    check_bool("fit", "progress", progress)
    if resume_from is not None and not isinstance(resume_from, (str, os.PathLike)):
        raise TypeError(f"fit: resume_from must be a checkpoint path (str or os.PathLike) or None; "
                        f"got {type(resume_from).__name__}")
    overwrite = check_overwrite(overwrite, out_dir, resume_from)
    out = prepare_out_dir(out_dir)
    if out is not None:
        check_run_folder(out, resume_from, overwrite)
    return FitArguments(train, val, config, out, None if resume_from is None else Path(resume_from), shared_noise,
                        precision, progress, data_workers, callbacks, overwrite)

def check_overwrite(overwrite: Any, out_dir: Any, resume_from: Any) -> bool:
    """`fit(overwrite=)`: True or False; True replaces the run in out_dir, so it needs one, and it does not go with
    resume_from, which continues a run."""
    overwrite = check_bool("fit", "overwrite", overwrite)
    if overwrite and out_dir is None:
        raise ValueError("fit: overwrite=True replaces the run in out_dir, but out_dir is None; pass out_dir, or "
                         "drop overwrite")
    if overwrite and resume_from is not None:
        raise ValueError(f"fit: pass resume_from (continue a run) or overwrite=True (replace the run in out_dir), not "
                         f"both; got resume_from={str(resume_from)!r}")
    return overwrite

def check_run_folder(out: Path, resume_from: Any, overwrite: bool) -> None:
    """The rules of `vae_core.io.run_files` for `fit`: a folder that holds a checkpoint takes a run that continues
    (resume_from) or replaces it (overwrite=True); and the checkpoints can be written there (no folder in their
    way), before the first step."""
    if resume_from is None and not overwrite:
        last = next((out / name for name in CHECKPOINT_FILES if (out / name).is_file()), out / LAST_FILE)
        check_new_run(out, CHECKPOINT_FILES, "out_dir", resume=f"resume_from={str(last)!r}", overwrite="overwrite=True")
    check_file_targets(out, CHECKPOINT_FILES, "out_dir")

def check_fit_inputs(spec: VAESpec, train: Any, val: Any, config: Any
                     ) -> tuple[np.ndarray | LazyRows, np.ndarray | None]:
    """The checks every backend's `fit` makes at its boundary; returns `train` and `val` as (N, D) rows, uint8 kept
    uint8 (the backends convert per batch), else float32. A `MappedRows` or mapped `np.memmap` train set stays on
    disk, and a map-style dataset is `ItemRows` (the backends read either a batch at a time, by position), except
    with dynamic binarization (read, with a warning); `val` is read into memory, once."""
    if isinstance(val, TrainConfig):  # fit(model, x, cfg): the config in val's place, an easy slip
        raise TypeError("fit: val is a TrainConfig: pass the config as config=... (the third positional argument "
                        "is val, the validation examples), e.g. fit(model, x, config=cfg) or fit(model, x, None, cfg)")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit: config must be a vae_core.TrainConfig; got {type(config).__name__}")
    train = check_data(train, spec, "train", keep_uint8=True, stream=True)
    if isinstance(train, LazyRows) and train.sequential:
        check_stream_config(train, config)
    if isinstance(train, LazyRows):
        if not config.dynamic_binarization:
            return train, None if val is None else check_data(val, spec, "val", keep_uint8=True)
        where = "from disk " if isinstance(train, MappedRows) else ""
        warnings.warn(f"train ({train!r}) is read into memory: TrainConfig.dynamic_binarization draws each epoch's "
                      f"sample of the whole set there. Set dynamic_binarization=False to read it {where}a batch at "
                      f"a time", UserWarning, stacklevel=caller_stacklevel())
        train = np.asarray(train)
    if config.dynamic_binarization and train.dtype != np.uint8 and (train.min() < 0.0 or train.max() > 1.0):
        raise ValueError(f"train must lie in [0, 1] with TrainConfig.dynamic_binarization (each pixel is the "
                         f"probability of a 1); got values in [{train.min():.4g}, {train.max():.4g}]. Scale "
                         f"pixels to [0, 1] or set dynamic_binarization=False")
    return train, None if val is None else check_data(val, spec, "val", keep_uint8=True)

def check_stream_config(train: LazyRows, config: TrainConfig) -> None:
    """What a stream of batches (`vae_core.data.stream.BatchStream`, read in its own order) cannot do: a step
    checkpoint (its order cannot be repeated from the middle of an epoch) and dynamic binarization (each epoch's
    sample is drawn for the whole set, in the trainer's order)."""
    kind = type(train.stream).__name__
    if config.checkpoint_every_steps is not None:
        raise ValueError(f"TrainConfig.checkpoint_every_steps={config.checkpoint_every_steps} needs a training set "
                         f"the trainer can read in its own order, to resume mid-epoch; train is a {kind}, a stream "
                         f"of batches read in its order, which a resumed run cannot repeat from the middle. Set "
                         f"checkpoint_every_steps=None (checkpoints at each epoch's end), or pass the map-style "
                         f"dataset behind it (e.g. loader.dataset)")
    if config.dynamic_binarization:
        raise ValueError(f"TrainConfig.dynamic_binarization draws each epoch's 0/1 sample of the whole training set "
                         f"in the trainer's order; train is a {kind}, a stream of batches in its own order. Set "
                         f"dynamic_binarization=False and binarize in the stream (e.g. torch.bernoulli in a "
                         f"transform), or pass the map-style dataset behind it (e.g. loader.dataset)")

def check_fp64_run(precision: str, out_dir: Any, resume_from: Any) -> None:
    """`fit(precision="fp64")` trains float64 weights and hands them back rounded to float32; checkpoints hold
    float32, so such a run takes neither out_dir nor resume_from."""
    if precision == "fp64" and (out_dir is not None or resume_from is not None):
        raise ValueError(f"precision='fp64' takes no out_dir or resume_from (got out_dir={out_dir!r}, "
                         f"resume_from={resume_from!r}): checkpoints hold float32 weights, so they would not carry "
                         f"an fp64 run. Use fp64 for numerical checks, and fp32 for runs you keep")
