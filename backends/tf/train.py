"""`fit` and `evaluate` for the TF/Keras VAE: the framework half of `vae_core.train.loop`.

`Trainer` is this backend's `vae_core.train.backend.TrainerBackend`. Each run of steps (an epoch, or the part of one up
to the next step checkpoint) is one Keras `model.fit(..., epochs=e + 1, initial_epoch=e)` call on a tf.data
pipeline (`backends.tf.pipeline`) that gathers the batches in the trainer's order, in blocks of the same shape
all fit long, which the train step (`backends.tf.steps.train_step`) runs as one XLA loop (`jit_compile=True`,
compiled once per fit; the first epoch carries the compile time). The train step writes each step's batch losses
into a small variable that a callback reads after every block: the trainer's exact epoch means and its non-finite
check come from those, and a stop request is seen between blocks. Validation is `model.evaluate`
(`backends.tf.steps.test_step`).

A model built under a tf.distribute MirroredStrategy (`backends.tf.distributed`) trains under it: one global batch
per call, split between the replicas by Keras, each example weighted by 1 / its batch's examples
(`pipeline.replica_batches`, `backends.tf.steps`), the global norm of the summed gradient clipped by TorchAdam.

Without shared noise the epoch's eps are TF stateless normals seeded by (config.seed, epoch), so the compiled
step holds no random-number generator (which shortens its XLA compile) and a resumed run draws what the
uninterrupted one drew. Gradient clipping is Keras' `global_clipnorm` (torch's clip_grad_norm_ divides by
norm + 1e-6 instead of norm: below float32 resolution unless the norm is ~1e-6 or smaller).
"""
from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from backends.tf import distributed, weights
from backends.tf.device import cpu_threads, exact_fp32, resolve_device
from backends.tf.losses import kl_to_standard_normal, reconstruction_nll
from backends.tf.model import VAE, check_model
from backends.tf.optim import make_optimizer
from backends.tf.pipeline import (BATCHES_PER_BLOCK, CONV_BATCHES_PER_BLOCK, EpochBlocks, block_shape, read_error,
                                  replica_batches, val_dataset)
from vae_core.checks import check_int
from vae_core.config import TrainConfig
from vae_core.data.items import ItemRows
from vae_core.data.lazy import LazyRows
from vae_core.data.rows import check_data
from vae_core.train.arguments import EVAL_BATCH_SIZE, check_fit_arguments, check_precision
from vae_core.train.callbacks import Callback
from vae_core.train.backend import Means, StepsResult, WeightsAdapter
from vae_core.train.loop import run
from vae_core.train.schedule import eval_noise
from vae_core.train.world import SINGLE, World, check_global_batch


def _framework_noise(seed: int, epoch: int, n: int, latent_dim: int) -> tf.Tensor:
    """(n, latent_dim) float32 stateless normals seeded by (seed, epoch) alone."""
    tf_seed = int(np.random.default_rng([seed, epoch, 2]).integers(0, 2**31 - 2))
    return tf.random.stateless_normal((n, latent_dim), seed=tf.constant([tf_seed, 0], tf.int64))


class _StepCounter(keras.callbacks.Callback):
    """After each block: collects its steps' batch losses from the model's step log, reports the steps to the
    progress bar, and stops `model.fit` at a non-finite loss or once a stop is requested."""

    def __init__(self, step_log: tf.Variable, optimizer, should_stop: Callable[[], bool],
                 on_steps: Callable[[int, np.ndarray | None], object]) -> None:
        super().__init__()
        self.step_log, self.optimizer, self.should_stop, self.on_steps = step_log, optimizer, should_stop, on_steps
        self.done = int(optimizer.iterations.numpy())
        self.losses: list[np.ndarray] = []  # (k, 3) per block

    def on_train_batch_end(self, batch, logs=None):
        done = int(self.optimizer.iterations.numpy())
        block = self.step_log.numpy()[:done - self.done]  # (k, 3): the steps this block ran
        self.losses.append(block)
        self.on_steps(done - self.done, block)
        self.done = done
        if not np.isfinite(block).all() or self.should_stop():
            self.model.stop_training = True


class _MixedPrecision:
    """Run the model's layers in bfloat16 (float32 variables, losses and Adam), restoring their policies afterwards."""

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
            self.model.step_state.retrace()  # the replica step, under a strategy
        return False


class Trainer(WeightsAdapter):
    """One VAE and its TorchAdam on one tf.device, stepped by `vae_core.train.loop.run`."""

    name = "tf"
    weights_module = weights

    def __init__(self, model: VAE, config: TrainConfig, device: str, world: World = SINGLE, data_workers: int = 0):
        self.model, self.config, self.device, self.world = model, config, device, world
        self.data_workers = data_workers  # parallel tf.data reads of a dataset's items; 0 or 1: one
        self.strategy = distributed.strategy_of(model)  # None, or the tf.distribute strategy it was built under
        with self._scope():
            self.optimizer = make_optimizer(model, config)
            # XLA compiles the step without a strategy; under one, Keras' own choice: no XLA around strategy.run.
            # One Keras step per call: a call runs one of the pipeline's blocks (`backends.tf.pipeline`)
            model.compile(optimizer=self.optimizer, jit_compile=self.strategy is None, steps_per_execution=1)
            self.optimizer.build(model.trainable_variables)

    def _scope(self):
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def set_data(self, train: np.ndarray | LazyRows, val: np.ndarray | None, val_eps: np.ndarray | None) -> None:
        # A variable, not a constant: tf.data copies a captured constant into every iterator, and reads a
        # variable in place. LazyRows stay where they are (a file, a dataset); the pipeline reads each block.
        self.x_train = train if isinstance(train, LazyRows) else \
            tf.Variable(train, trainable=False, name="train_data")  # (N, D)
        if self.strategy is not None and isinstance(train, LazyRows) and train.sequential:
            raise ValueError(f"train is a stream of batches ({train!r}); under {type(self.strategy).__name__} "
                             f"Keras splits the trainer's batches between the replicas, which needs a training set "
                             f"read by position: pass the map-style dataset behind it (e.g. loader.dataset) or an "
                             f"array, or build the model outside the strategy's scope")
        # parallel reads of a dataset's items; a stream is read in order, one block after the other
        self.calls = max(1, self.data_workers) if isinstance(train, ItemRows) else 1
        replicas = 1 if self.strategy is None else self.strategy.num_replicas_in_sync
        # Endless, and evaluated for its number of batches: with a finite dataset Keras makes a second iterator
        # at the end of every evaluate call.
        self.val, self.val_steps = None, None
        if val is not None:
            batches = val_dataset(val, val_eps, replicas)
            self.val, self.val_steps = batches.repeat(), int(batches.cardinality())
        per_block = CONV_BATCHES_PER_BLOCK if self.model.spec.architecture == "conv" else BATCHES_PER_BLOCK
        # (K, B) of every block of the fit; under a strategy, one global batch per call (no blocks)
        self.shape = block_shape(len(train), self.config.batch_size, 1 if self.strategy else per_block)
        # (K, 3) float64: the batch means of the block's steps, written by the train step while `model.fit` runs
        # (`StepState.logging`); not a Keras weight. Under a strategy every replica writes the same all-reduced
        # means; the first replica's copy is read.
        with self._scope():
            self.step_log = tf.Variable(tf.zeros((self.shape[0], 3), tf.float64), trainable=False, name="step_log",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if self.strategy is None:  # one pipeline for the whole fit
            self.blocks = EpochBlocks(self.x_train, len(train), self.model.spec.latent_dim, self.shape,
                                      calls=self.calls)

    def begin_epoch(self, epoch: int, order: np.ndarray, images: np.ndarray | None, eps: np.ndarray | None) -> None:
        if images is not None:  # dynamic binarization: this epoch's 0/1 sample
            self.x_train.assign(images)
        self.order, self.epoch = order, epoch
        self.eps = _framework_noise(self.config.seed, epoch, len(order), self.model.spec.latent_dim) \
            if eps is None else tf.constant(eps)  # (N, L)
        if self.strategy is None:
            self.blocks.set_epoch(order, self.eps)

    def train_steps(self, first: int, stop: int, should_stop: Callable[[], bool],
                    on_steps: Callable[[int, np.ndarray | None], object], step_losses: bool = False) -> StepsResult:
        # a block's losses reach the host after every block anyway: on_steps gets them whether asked or not
        if should_stop():  # as torch: no step once a stop is requested
            return StepsResult(np.zeros((0, 3)), True)
        counter = _StepCounter(self.step_log, self.optimizer, should_stop, on_steps)
        if self.strategy is None:
            data, count = self.blocks.steps(first, stop)
        else:
            rows = slice(first * self.shape[1], stop * self.shape[1])
            data, count = replica_batches(self.x_train, self.order[rows], self.eps[rows], self.shape[1],
                                          self.strategy.num_replicas_in_sync, self.calls), None
        read_error(self.x_train)  # forget a failed read ahead of an earlier run, which fit never used
        try:
            with self.model.step_state.logging(self.step_log):
                self.model.fit(data, epochs=self.epoch + 1, initial_epoch=self.epoch, steps_per_epoch=count,
                               callbacks=[counter], verbose=0, shuffle=False)
        except tf.errors.OpError:
            if (error := read_error(self.x_train)) is None:  # a bad item of a dataset: its error, not TF's wrapper
                raise
            raise error from None
        losses = np.concatenate(counter.losses) if counter.losses else np.zeros((0, 3))
        finite = bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in self.model.trainable_variables]))
        return StepsResult(losses, finite)

    def validate(self) -> Means:
        logs = self.model.evaluate(self.val, steps=self.val_steps, verbose=0, return_dict=True)
        return float(logs["loss"]), float(logs["recon"]), float(logs["kl"])

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(lr)


def fit(model: VAE, train: np.ndarray | LazyRows | Any, val: np.ndarray | Any | None = None,
        config: TrainConfig = TrainConfig(), *, out_dir: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None, overwrite: bool = False, shared_noise: bool = False,
        device: str = "auto",
        precision: str = "fp32", progress: bool = True, data_workers: int = 0,
        callbacks: Sequence[Callback] | None = None, threads: int | None = None) -> dict[str, list[float]]:
    """Train `model` with Adam on the negative ELBO (`vae_core.train.loop.run`) through Keras; returns the history.

    train, val: (N, D) rows or (N, H, W[, C]) images of the spec's image_shape, channels last: float32/float64 (in
        [0, 1] for Bernoulli) or uint8 (x / 255; uint8 training data stays uint8 and is converted per block).
        `train` may stay on disk: a `vae_core.data.mapped.MappedRows` or a file's `np.memmap` is read a block at a time
        (tf.numpy_function, one block prefetched), except under dynamic binarization, which reads it with a
        warning. Either may be a map-style dataset (a torch `Dataset`, `TensorDataset`, `Subset`, ...) of examples
        or (example, label, ...) items, (C, H, W) images too (`vae_core.data.items.ItemRows`): `train`'s items are
        read by index in the trainer's order a block at a time, checked as they are read, so it trains exactly as
        the same rows as an array; `val` is read once.
        Or an iterable of batches (a torch `DataLoader`, a `tf.data.Dataset`, any re-iterable): one pass per epoch
        in the order it yields, cut into `config.batch_size` steps, a block read ahead
        (`vae_core.data.stream.BatchStream`); an interrupted epoch restarts, so it takes no step checkpoints.
    out_dir: `last.safetensors` every epoch and `best.safetensors` when the monitored loss (val_loss, or
        train_loss without val) improves, with Adam and the loop state. resume_from: a checkpoint of either
        backend; training continues up to `config.epochs` epochs in total.
    overwrite: an out_dir that holds a checkpoint (a run) is refused (`vae_core.io.run_files.RunExistsError`),
        unless resume_from continues a run or overwrite=True replaces it: its last.safetensors and
        best.safetensors are removed once every argument has passed, before the first step (other files there
        stay). Every checkpoint path is checked before training (no folder in its way).
    shared_noise: eps from `vae_core.train.schedule.epoch_noise`, the same in every backend.
    device: "auto" | "cpu" | "cuda" (or "cuda:N"): the tf.device the steps run on (TF32 off on GPUs).
    precision: "fp32"; "bf16" (Keras mixed_bfloat16 on the model's layers: float32 weights, loss and Adam); or
        "fp64", a numerical check: a float64 copy of the model trains (weights, activations, loss and Adam in
        float64; the data and noise are the float32 values, widened) and its weights come back rounded to
        float32; it takes no out_dir or resume_from. A model built with dtype="float64" trains itself and takes
        only "fp64".
    callbacks: `vae_core.callbacks.Callback`s, called as training goes (Keras' hooks; `vae_core.train.callbacks`).
    data_workers: 0 (the default) or 1 reads a dataset one block at a time, one ahead; N > 1 in N parallel calls of
        the tf.data read (threads of this process, sharing the GIL). Arrays and .npy maps ignore it.
    threads: TensorFlow's CPU threads (intra- and inter-op); None (the default) keeps TensorFlow's own pools,
        which keep their speed beside a busy process (scripts/results/bench_threads.md). TensorFlow fixes them
        when it starts: set them first with `backends.tf.device.set_threads(N)` (`vae train --threads` does);
        another count once it has started is a ValueError.

    History lists are per epoch (`vae_core.train.history.HISTORY_KEYS`), exact means over the examples. Raises
    NonFiniteLossError at the first NaN/inf loss, before any checkpoint after the last finite step is written.
    """
    check_model(model, "fit")
    strategy = distributed.check_strategy(model)
    if strategy is not None and device != "auto":
        raise ValueError(f"fit: this model was built under {type(strategy).__name__} (devices "
                         f"{', '.join(strategy.extended.worker_devices)}), which decides where it trains; got "
                         f"device={device!r}. Pass device='auto', or build the model outside the strategy's scope")
    device_name = resolve_device(distributed.rank_device(device))
    world = distributed.join(device_name)  # one process: a strategy's replicas are inside it
    check_precision(precision)
    if isinstance(config, TrainConfig):
        check_global_batch(config.batch_size, distributed.replicas(model), "replicas")
    float64_model = model.dtype_policy.variable_dtype == "float64"
    if float64_model and precision != "fp64":
        raise ValueError(f"fit: this model is float64 (built with dtype='float64') but precision={precision!r} "
                         f"trains float32 weights; pass precision='fp64', or build a float32 model")
    args = check_fit_arguments(model.spec, train, val, config, out_dir=out_dir, resume_from=resume_from,
                               shared_noise=shared_noise, precision=precision, progress=progress,
                               data_workers=data_workers, callbacks=callbacks, overwrite=overwrite)
    # Keras variables keep their dtype: an fp64 run of a float32 model trains a float64 twin
    with contextlib.nullcontext() if strategy is None else strategy.scope():
        twin = VAE(model.spec, seed=model.sampling.seed, dtype="float64") \
            if precision == "fp64" and not float64_model else model
    if twin is not model:
        weights.import_weights(twin, weights.export_weights(model))
    try:
        # under a strategy, its devices are where the steps run
        place = tf.device(device_name) if strategy is None else contextlib.nullcontext()
        with place, exact_fp32(device_name), cpu_threads(threads), _MixedPrecision(twin, precision):
            return run(Trainer(twin, config, device_name, world, args.data_workers), model.spec, args)
    finally:  # unchecked: after a non-finite loss the model holds the non-finite weights, as in fp32
        if twin is not model:
            trained = weights.native_parameters(twin)
            for name, var in weights.native_parameters(model).items():
                var.assign(tf.cast(trained[name], var.dtype))


# ----------------------------------------------------------------------------------------------- evaluate
_EVAL_FNS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _eval_fn(model: VAE):
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


def evaluate(model: VAE, x: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             device: str = "auto") -> dict[str, float]:
    """Mean negative ELBO over the examples of `x`: {"loss", "recon", "kl"} in nats per example.

    One reparameterised sample per example with eps = `eval_noise(seed, N, latent_dim)`, so the value is
    repeatable and independent of `batch_size`; XLA-compiled, on `device`.
    """
    check_model(model, "evaluate")
    x = check_data(x, model.spec, "x", keep_uint8=True)  # uint8 stays uint8: x / 255 per batch, below
    batch_size = check_int("evaluate", "batch_size", batch_size, minimum=1)
    seed = check_int("evaluate", "seed", seed, minimum=0)
    device_name = resolve_device(device)
    eps = eval_noise(int(seed), len(x), model.spec.latent_dim)  # (N, L)
    fn, beta, sums = _eval_fn(model), float(model.spec.beta), np.zeros(3)
    with tf.device(device_name), exact_fp32(device_name):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]  # (B, D)
            xb = xb.astype(np.float32) / np.float32(255.0) if xb.dtype == np.uint8 else xb
            recon, kl = fn(tf.constant(xb), tf.constant(eps[start:start + batch_size]))
            recon, kl = recon.numpy().astype(np.float64), kl.numpy().astype(np.float64)  # (B,), (B,)
            sums += [(recon + beta * kl).sum(), recon.sum(), kl.sum()]
    return dict(zip(("loss", "recon", "kl"), (sums / len(x)).tolist()))
