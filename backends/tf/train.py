"""`fit` and `evaluate` for the TF/Keras backend: Keras `model.fit` underneath, vae_core's contract on top.

Design:
- One `model.fit(..., epochs=e + 1, initial_epoch=e)` call per epoch on a tf.data pipeline that gathers that
  epoch's batches in the order `vae_core.training.epoch_permutation(seed, e, n)` (the torch backend's batches,
  and a resumed run's), in blocks of up to BATCHES_PER_BLOCK batches: `VAE.train_step` runs a block's optimizer
  steps in one XLA loop (`jit_compile=True`), traced and compiled once per `fit` for one block shape (the last
  block and batch are padded and masked); the first epoch carries the compile time. Keras' progress bar counts
  optimizer steps. With one Keras step per batch (32 per execution) XLA was launched once per batch; on the
  2-core CPU blocks saved ~0.3 s of a 2.7 s Fashion-MNIST epoch (README, Benchmarks).
- Noise: the input pipeline feeds eps with every batch, row i of an (N, L) draw per epoch for the i-th example of
  the epoch (as the torch backend): TF stateless normals seeded by (config.seed, epoch), so a resumed run draws
  what the uninterrupted one drew, and the compiled step holds no random-number generator (which halves its XLA
  compile time); or, with `shared_noise=True`, `epoch_noise(seed, epoch, n, L)`, identical across backends.
- Validation uses fixed noise `vae_core.training.eval_noise(config.seed, n_val, L)` (as torch does), so the
  val_* entries equal `evaluate(model, val, seed=config.seed)`: exact means over the whole set, comparable across
  epochs and backends.
- LR plateau and early stopping are `vae_core.trainer_state.TrainerState`, the one state machine of both
  backends, not Keras' ReduceLROnPlateau and EarlyStopping callbacks: their state must go into the checkpoint's
  JSON `trainer_state` and come back on resume (Keras' callbacks reset it in on_train_begin and keep best weights
  only in memory), and Keras' rules differ from the seed's torch loop (Keras reduces after `patience` bad epochs
  with an absolute min_delta; torch after more than `patience`).
  Gradient clipping is Keras' `global_clipnorm` (torch's clip_grad_norm_ divides by norm + 1e-6 instead of
  norm: a relative difference below float32 resolution unless the norm is ~1e-6 or smaller).
- Non-finite loss: the train step records the first step whose loss is NaN/inf, a callback stops training right
  after it, and `fit` raises `NonFiniteLossError(epoch, step, last_good_checkpoint)`; no checkpoint is written
  after that step.
"""
from __future__ import annotations

import math
import re
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from backends.tf import weights as tf_weights
from backends.tf.losses import kl_to_standard_normal, reconstruction_nll
from backends.tf.optim import make_optimizer
from vae_core.checkpoint import BEST_FILE, LAST_FILE, save_checkpoint
from vae_core.config import TrainConfig
from vae_core.resume import open_resume
from vae_core.trainer_state import TrainerState
from vae_core.training import (NonFiniteLossError, check_data, check_fit_inputs, check_fp64_run, empty_history,
                               epoch_binarized, epoch_noise, epoch_permutation, eval_noise, prepare_out_dir)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp64")
VAL_BATCH = 1000  # validation batch size in `fit` (exact means do not depend on it)
# Batches per call into the compiled train step (`_train_dataset` blocks): each call runs up to this many
# optimizer steps in one XLA loop. The non-finite check still names the exact step (the train step records it).
BATCHES_PER_BLOCK = 32
BLOCK_ROWS = 4096  # and at most this many rows per block (at least one batch): bounds a block's memory


# ----------------------------------------------------------------------------------------------- helpers
def _epoch_noise_seed(seed: int, epoch: int) -> int:
    """Seed of the framework noise of `epoch` (without shared_noise): a function of (seed, epoch) alone."""
    return int(np.random.default_rng([seed, epoch, 2]).integers(0, 2**31 - 2))


def _epoch_eps(config: TrainConfig, epoch: int, n: int, latent_dim: int, shared: bool) -> tf.Tensor:
    """(n, latent_dim) float32 noise for one epoch; row i belongs to the i-th example in that epoch's order."""
    if shared:
        return tf.constant(epoch_noise(config.seed, epoch, n, latent_dim))
    seed = tf.constant([_epoch_noise_seed(config.seed, epoch), 0], tf.int64)
    return tf.random.stateless_normal((n, latent_dim), seed=seed)


def _check_model(model: Any) -> None:
    from backends.tf.model import VAE

    if not isinstance(model, VAE):
        raise TypeError(f"model must be a backends.tf.VAE (vae_core.build('tf', ...)); got {type(model).__name__}")


def resolve_device(device: Any, argument: str = "device") -> str:
    """The tf.device name: 'auto' -> the first GPU if TensorFlow sees one, else the CPU; 'cpu'; 'cuda' or
    'cuda:N' (ValueError when TensorFlow sees no such GPU)."""
    if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"{argument} must be one of 'auto', 'cpu', 'cuda' (or 'cuda:N'); got {device!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= len(gpus):
            raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but TensorFlow "
                             f"{tf.__version__} sees {len(gpus)} GPU(s) (a CPU-only build, or no CUDA device); "
                             f"pass {argument}='cpu' or 'auto'")
        return f"/GPU:{index}"
    return "/GPU:0" if gpus and device == "auto" else "/CPU:0"


def _check_precision(precision: Any) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}; got {precision!r}")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")


class _MixedPrecision:
    """Run the Dense layers in bfloat16 (float32 variables, losses and Adam), restoring their policies afterwards."""

    def __init__(self, model, precision: str):
        self.model = model
        self.layers = list(model.neutral_layers().values()) if precision == "bf16" else []
        self.policies = [layer.dtype_policy for layer in self.layers]

    def __enter__(self):
        for layer in self.layers:
            layer.dtype_policy = "mixed_bfloat16"
        return self

    def __exit__(self, *exc):
        for layer, policy in zip(self.layers, self.policies):
            layer.dtype_policy = policy
        if self.layers:  # the traced steps have bfloat16 casts baked in: retrace on the next use
            self.model.train_function = self.model.test_function = self.model.predict_function = None
        return False


class _EpochMonitor(keras.callbacks.Callback):
    """Keeps the epoch's logs; stops as soon as the model's guard has recorded a non-finite loss."""

    def __init__(self, guard: tf.Variable) -> None:
        super().__init__()
        self.guard = guard  # () int64: optimizer step (1-based) of the first non-finite loss, -1 while none
        self.logs: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        if int(self.guard.numpy()) >= 0:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.logs = {k: float(v) for k, v in (logs or {}).items()}


class _StepProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting optimizer steps (batches) instead of the blocks that `model.fit` iterates."""

    def __init__(self, steps: int, optimizer, steps_before: int) -> None:
        super().__init__()
        self.steps, self.optimizer, self.steps_before = steps, optimizer, steps_before

    def set_params(self, params):
        super().set_params(params)
        self.target = self.steps

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(int(self.optimizer.iterations.numpy()) - self.steps_before - 1, logs)


# ----------------------------------------------------------------------------------------------- data
def _train_dataset(x: tf.Variable | tf.Tensor, perm: np.ndarray, eps: tf.Tensor, batch_size: int,
                   batches_per_block: int = BATCHES_PER_BLOCK) -> tf.data.Dataset:
    """The epoch's batches in the order `perm`, grouped into blocks {"x": (K, B, D), "eps": (K, B, L), "rows": (K,)}
    that `VAE.train_step` runs as K consecutive steps. B = min(batch_size, N); K = min(batches_per_block, batches
    in the epoch, BLOCK_ROWS // B), at least 1; the last block is padded to K batches, and the last batch to B
    rows; rows[k] counts the real examples of batch k.
    x: (N, D); eps: (N, L), row i for the i-th position of the epoch.
    """
    n, d, latent = len(perm), int(x.shape[1]), int(eps.shape[1])
    b = min(batch_size, n)  # a batch size above N trains on one batch of N rows, as without blocks
    n_batches = -(-n // b)
    k = max(1, min(batches_per_block, n_batches, BLOCK_ROWS // b))
    n_blocks = -(-n_batches // k)
    index = np.zeros(n_blocks * k * b, np.int64)  # (slots,): example of each slot; padding reads row 0
    index[:n] = perm
    rows = np.clip(n - b * np.arange(n_blocks * k), 0, b).astype(np.int32)  # (n_blocks * K,)
    index_t, rows_t = tf.constant(index), tf.constant(rows)
    noise = tf.pad(tf.convert_to_tensor(eps), [[0, len(index) - n], [0, 0]])  # (slots, L)

    def block(j):
        slots = tf.range(j * k * b, (j + 1) * k * b)  # (K * B,)
        return {"x": tf.reshape(tf.gather(x, tf.gather(index_t, slots)), (k, b, d)),  # (K, B, D)
                "eps": tf.reshape(tf.gather(noise, slots), (k, b, latent)),  # (K, B, L)
                "rows": rows_t[j * k:(j + 1) * k]}  # (K,)

    blocks = tf.data.Dataset.range(n_blocks).map(block, num_parallel_calls=1, deterministic=True).prefetch(1)
    return blocks.with_options(_pipeline_options())


def _val_dataset(val: np.ndarray, eps: np.ndarray) -> tf.data.Dataset:
    batches = tf.data.Dataset.from_tensor_slices({"x": val, "eps": eps}).batch(VAL_BATCH).prefetch(1)
    return batches.with_options(_pipeline_options())


def _pipeline_options() -> tf.data.Options:
    """tf.data autotuning off: the pipelines have fixed, small buffers, and with it on, releasing an epoch's
    iterator stalled `model.fit` on this 2-core CPU for up to 1.8 s per epoch (half the epochs; measured)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


# ----------------------------------------------------------------------------------------------- fit
def _resume(model, optimizer, path: Path, config: TrainConfig, monitor: str
            ) -> tuple[int, dict[str, list[float]], TrainerState, dict[str, np.ndarray] | None]:
    point = open_resume(path, model.spec, config, monitor)
    tf_weights.import_weights(model, point.checkpoint.weights)
    if point.checkpoint.adam is not None:
        tf_weights.import_adam(model, optimizer, point.checkpoint.adam)
    return point.epoch, point.history, point.state, point.best_weights


def fit(model, train: np.ndarray, val: np.ndarray | None = None, config: TrainConfig = TrainConfig(), *,
        out_dir=None, resume_from=None, shared_noise: bool = False, device: str = "auto", precision: str = "fp32",
        progress: bool = True) -> dict[str, list[float]]:
    """Train `model` with Adam on the negative ELBO through Keras `model.fit`; return the history.

    train, val: (N, D) arrays (float32/float64, in [0, 1] for Bernoulli, or uint8 images).
    out_dir: writes `last.safetensors` every epoch and `best.safetensors` when the monitored loss (val_loss, or
        train_loss without val) improves: schema-v1 checkpoints with Adam and loop state (`TrainerState`).
    resume_from: a schema-v1 checkpoint from either backend; restores weights, Adam, epoch, history and loop
        state, then trains up to `config.epochs` epochs in total.
    shared_noise: eps from `vae_core.training.epoch_noise` (the same in every backend).
    device: "auto" | "cpu" | "cuda" (or "cuda:N"): the tf.device the steps run on.
    precision: "fp32"; "bf16" (Keras mixed_bfloat16 on the Dense layers: bfloat16 matmuls, float32 weights,
        loss and Adam); or "fp64", a numerical check: a float64 copy of the model trains (weights, activations,
        loss and Adam in float64; the data and noise are the float32 values, widened) and its weights come back
        rounded to float32, so it takes no out_dir or resume_from. A model built with dtype="float64" trains
        itself and stays float64, and takes only "fp64". The parity suite uses fp64 for 200-step lockstep runs.
        After an fp64 fit of a float32 model, `model.optimizer` is not the one that trained.
    progress: Keras' progress bar, one per epoch.

    History: lists per epoch with the keys `vae_core.training.HISTORY_KEYS` (all epochs so far when resumed);
    train_* and val_* are exact means over the examples (the last partial batch weighted by its size); without
    `val` the val_* lists stay empty. With early stopping on, the model ends with the best epoch's weights.
    Raises NonFiniteLossError at the first NaN/inf loss (its epoch and step, and the last good checkpoint), before
    writing any checkpoint for that epoch; the model then holds non-finite weights.
    """
    _check_model(model)
    spec = model.spec
    train, val = check_fit_inputs(spec, train, val, config)
    device_name = resolve_device(device)
    _check_precision(precision)
    check_fp64_run(precision, out_dir, resume_from)
    _check_flag("shared_noise", shared_noise)
    _check_flag("progress", progress)
    float64_model = model.dtype_policy.variable_dtype == "float64"
    if float64_model and precision != "fp64":
        raise ValueError(f"fit: this model is float64 (built with dtype='float64') but precision={precision!r} "
                         f"trains float32 weights; pass precision='fp64', or build a float32 model")
    out = prepare_out_dir(out_dir)
    args = (train, val, config, out, resume_from, shared_noise, device_name, precision, progress)
    if precision == "fp64" and not float64_model:  # Keras variables keep their dtype: train a float64 twin
        twin = _float64_twin(model)
        try:
            return _fit(twin, *args)
        finally:  # unchecked: after a non-finite loss the model holds the non-finite weights, as in fp32
            trained = tf_weights.native_parameters(twin)
            for name, var in tf_weights.native_parameters(model).items():
                var.assign(tf.cast(trained[name], var.dtype))
    return _fit(model, *args)


def _fit(model, train: np.ndarray, val: np.ndarray | None, config: TrainConfig, out: Path | None, resume_from,
         shared_noise: bool, device_name: str, precision: str, progress: bool) -> dict[str, list[float]]:
    """`fit` after its checks, in the model's own dtype (float32, or float64)."""
    with tf.device(device_name):
        optimizer = make_optimizer(model, config)
        guard = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_nonfinite_step")
        object.__setattr__(model, "_nonfinite_guard", guard)  # read by VAE.train_step; not a Keras weight
        model.compile(optimizer=optimizer, jit_compile=True)
        optimizer.build(model.trainable_variables)
        monitor = "val_loss" if val is not None else "train_loss"
        state, history, start_epoch, best_weights, last_good = TrainerState(config.learning_rate, monitor), \
            empty_history(), 0, None, None
        if resume_from is not None:
            start_epoch, history, state, best_weights = _resume(model, optimizer, Path(resume_from), config, monitor)
            last_good = str(resume_from)
        with _MixedPrecision(model, precision):
            best_weights = _train(model, optimizer, guard, state, config, train, val, history, start_epoch,
                                  best_weights, out, last_good, shared_noise, progress)
        if config.early_stopping and best_weights is not None:  # as the seed's loop: end on the best epoch
            tf_weights.import_weights(model, best_weights)
    return history


def _float64_twin(model):
    """A float64 VAE of the same spec, holding the model's weights and noise seed."""
    from backends.tf.model import VAE

    twin = VAE(model.spec, seed=model.sampling.seed, dtype="float64")
    tf_weights.import_weights(twin, tf_weights.export_weights(model))
    return twin


def _train(model, optimizer, guard: tf.Variable, state: TrainerState, config: TrainConfig, train: np.ndarray,
           val: np.ndarray | None, history: dict[str, list[float]], start_epoch: int,
           best_weights: dict[str, np.ndarray] | None, out: Path | None, last_good: str | None, shared_noise: bool,
           progress: bool) -> dict[str, np.ndarray] | None:
    """The epoch loop; updates `history` and `state` in place and returns the best weights (early stopping)."""
    spec = model.spec
    n, latent = len(train), spec.latent_dim
    n_steps = -(-n // config.batch_size)
    # (N, D), copied once. A variable, not a constant: tf.data copies a captured constant into every iterator
    # (0.05-0.5 s per epoch for Fashion-MNIST's 188 MB, measured), and reads a variable in place.
    x_source = tf.Variable(train, trainable=False, name="train_data")
    val_data = None if val is None else (_val_dataset(val, eval_noise(config.seed, len(val), latent)),)
    for epoch in range(start_epoch, config.epochs):  # 0-based here; 1-based in history, checkpoints and errors
        if state.stopped_early:
            break
        lr = state.lr
        optimizer.learning_rate.assign(lr)
        eps = _epoch_eps(config, epoch, n, latent, shared_noise)  # (N, L)
        if config.dynamic_binarization:  # a fresh 0/1 sample each epoch
            x_source.assign(epoch_binarized(train, config.seed, epoch))
        data = _train_dataset(x_source, epoch_permutation(config.seed, epoch, n), eps, config.batch_size)
        guard.assign(-1)
        steps_before = int(optimizer.iterations.numpy())
        monitor_cb = _EpochMonitor(guard)
        start = time.perf_counter()
        callbacks = [monitor_cb, _StepProgbar(n_steps, optimizer, steps_before)] if progress else [monitor_cb]
        model.fit(data, epochs=epoch + 1, initial_epoch=epoch, validation_data=val_data, callbacks=callbacks,
                  verbose=1 if progress else 0, shuffle=False)
        seconds = time.perf_counter() - start
        logs = monitor_cb.logs
        if int(guard.numpy()) >= 0:
            raise NonFiniteLossError(epoch + 1, int(guard.numpy()) - steps_before, last_good)
        if not all(math.isfinite(v) for v in logs.values()) or not _weights_finite(model):
            raise NonFiniteLossError(epoch + 1, n_steps, last_good)

        for key, name in (("train_loss", "loss"), ("train_recon", "recon"), ("train_kl", "kl")):
            history[key].append(logs[name])
        if val is not None:
            for key in ("val_loss", "val_recon", "val_kl"):
                history[key].append(logs[key])
        history["lr"].append(lr)
        history["seconds"].append(seconds)
        improved = state.update(epoch + 1, history[state.monitor][-1], config)
        if improved and config.early_stopping:
            best_weights = tf_weights.export_weights(model)
        if out is not None:
            meta = dict(train_config=config, epoch=epoch + 1, history=history, optimizer=optimizer,
                        trainer_state=state.to_dict())
            if improved:
                save_checkpoint(out / BEST_FILE, model, **meta)
            last_good = str(save_checkpoint(out / LAST_FILE, model, **meta))
        if state.stopped_early and progress:
            print(state.stop_message(epoch + 1), file=sys.stderr)
    return best_weights


def _weights_finite(model) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables)


# ----------------------------------------------------------------------------------------------- evaluate
_EVAL_FNS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _eval_fn(model):
    """A compiled (XLA) per-batch function: x (B, D), eps (B, L) -> per-example recon (B,), kl (B,)."""
    fn = _EVAL_FNS.get(model)
    if fn is None:
        likelihood = model.spec.likelihood

        @tf.function(jit_compile=True, reduce_retracing=True)
        def fn(x, eps):
            out, mu, log_var = model(x, eps=eps, training=False)  # (B, D|2D), (B, L), (B, L)
            return reconstruction_nll(x, out, likelihood), kl_to_standard_normal(mu, log_var)  # (B,), (B,)

        _EVAL_FNS[model] = fn
    return fn


def evaluate(model, x: np.ndarray, *, batch_size: int = 1000, seed: int = 0, device: str = "auto") -> dict[str, float]:
    """Single-sample negative ELBO of `x` (N, D): {"loss", "recon", "kl"}, exact means over the N examples.

    The noise is `eval_noise(seed, N, L)`: the same numbers for the same seed, batch size and machine.
    """
    _check_model(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    device_name = resolve_device(device)
    x = check_data(x, model.spec, "x")
    eps = eval_noise(int(seed), len(x), model.spec.latent_dim)  # (N, L)
    fn = _eval_fn(model)
    recon_sum = kl_sum = 0.0
    beta = float(model.spec.beta)
    loss_sum = 0.0
    with tf.device(device_name):
        for start in range(0, len(x), batch_size):
            recon, kl = fn(tf.constant(x[start:start + batch_size]), tf.constant(eps[start:start + batch_size]))
            recon, kl = recon.numpy().astype(np.float64), kl.numpy().astype(np.float64)  # (B,), (B,)
            recon_sum += recon.sum()
            kl_sum += kl.sum()
            loss_sum += (recon + beta * kl).sum()
    n = len(x)
    return {"loss": float(loss_sum / n), "recon": float(recon_sum / n), "kl": float(kl_sum / n)}
