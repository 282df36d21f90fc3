"""`fit` and `evaluate` for the JAX VAE: the framework half of `vae_core.train.loop`.

`Trainer` is this backend's `vae_core.train.backend.TrainerBackend`. It keeps the weights and Adam's state as
pytrees of arrays on the device (`backends.jax.steps`: the model as a pure function of its weights) and runs the
epoch's steps in blocks: one compiled call runs a block of `_block_steps(...)` optimizer steps (`lax.scan`), and
what is left of the epoch after its whole blocks runs a step per call, with the batches gathered on the device from
the training set in the trainer's order (or, for a training set read by position, a .npy map or a dataset, read on
the host one call ahead in a thread). The per-step losses
come back once per block; a stop request is seen between blocks, and a callback's batch hook gets blocks of one
step. The model's `nnx.Param`s are brought up to date after every block, so the model a callback or a checkpoint
sees is the trained one. The epochs, resume, checkpoints, the LR plateau, early stopping and progress
are `vae_core.train.loop.run`'s.

Without shared noise the epoch's eps are `jax.random.normal` draws keyed by (config.seed, epoch) alone, so a
resumed run draws what the uninterrupted one drew. Under a `jax.sharding.Mesh` (`backends.jax.distributed`) the
batches are split between the mesh's devices: one process, so to the loop the run is `SINGLE`.

precision="fp64" trains a float64 twin of the model inside `jax.enable_x64(True)`: JAX's float64 switch is
process-wide, so `fit` turns it on for the run alone (the context restores it after; programs compiled inside
are float64 programs) and copies the trained weights back rounded to float32.
"""
from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from backends.jax import distributed, weights
from backends.jax.device import cpu_threads, exact_fp32, resolve_device
from backends.jax.model import VAE, check_model
from backends.jax.optim import make_optimizer, step_scalars
from backends.jax.steps import make_block, make_eval, make_gather
from vae_core.checks import check_int
from vae_core.config import TrainConfig
from vae_core.data.items import ItemRows
from vae_core.data.lazy import LazyRows
from vae_core.data.rows import check_data
from vae_core.io.checkpoint import AdamState
from vae_core.train.arguments import EVAL_BATCH_SIZE, check_fit_arguments, check_precision
from vae_core.train.backend import Means, StepsResult, WeightsAdapter
from vae_core.train.callbacks import Callback
from vae_core.train.loop import run
from vae_core.train.schedule import eval_noise
from vae_core.train.world import SINGLE, World, check_global_batch

# Optimizer steps per compiled call: as many as fit in the epoch, up to these (the TF backend's blocks). A conv
# step is long enough that a block of a few steps amortises the call; an MLP step is short. On the CPU a conv step
# runs alone: XLA's CPU convolutions inside a loop body run about 10x slower than outside one (measured here: 3.2
# s/step in a lax.scan, 0.35 s/step alone, the 28x28 model at batch 128; jax-ml/jax#12868).
BLOCK_STEPS, CONV_BLOCK_STEPS = 32, 8


def _block_steps(spec: Any, steps_per_epoch: int, device: jax.Device) -> int:
    """The steps of one compiled call for a model of `spec`, an epoch of `steps_per_epoch` steps, on `device`."""
    if spec.architecture == "conv":
        return 1 if device.platform == "cpu" else min(CONV_BLOCK_STEPS, steps_per_epoch)
    return max(1, min(BLOCK_STEPS, steps_per_epoch))


def _framework_noise(seed: int, epoch: int, n: int, latent_dim: int) -> np.ndarray:
    """(n, latent_dim) float32 standard normals from a JAX key seeded by (seed, epoch) alone."""
    key_seed = int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1, np.uint32)[0])
    return np.asarray(jax.random.normal(jax.random.key(key_seed), (n, latent_dim), jnp.float32))


def _values(x: Any, dtype: Any) -> np.ndarray:
    """Examples as `dtype` values: uint8 images become x / 255 in float32 by NumPy (the values `check_data` gives;
    XLA's division rounds differently, `backends.jax.steps._values`), a chunk at a time, then `dtype`."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        return np.asarray(x, dtype)
    out = np.empty(x.shape, dtype)
    for lo in range(0, len(x), _CONVERT_ROWS):
        out[lo:lo + _CONVERT_ROWS] = np.divide(x[lo:lo + _CONVERT_ROWS], np.float32(255.0), dtype=np.float32)
    return out


_CONVERT_ROWS = 4096  # rows of uint8 images converted at a time (a float32 copy of them is the temporary)


class Trainer(WeightsAdapter):
    """One VAE's weights and its Adam state on one device (or a mesh), stepped by `vae_core.train.loop.run`."""

    name = "jax"
    weights_module = weights

    def __init__(self, model: VAE, config: TrainConfig, device: jax.Device, precision: str = "fp32",
                 world: World = SINGLE, mesh: Any = None, data_workers: int = 0):
        self.model, self.config, self.device, self.world, self.mesh = model, config, device, world, mesh
        self.data_workers = data_workers  # threads reading a dataset's items of a block in parallel; 0 or 1: one
        self.dtype = model.dtype  # float64 for the fp64 twin
        self.bf16 = precision == "bf16"
        self.tx = make_optimizer(model, config)
        self.lr = float(config.learning_rate)
        self.params = self._place(weights.params_of(model))
        self.opt_state = self._place(self.tx.init(self.params))
        self.t = 0  # Adam's steps taken, kept on the host for the step scalars

    # ------------------------------------------------------------------ placement
    def _place(self, tree: Any) -> Any:
        """A pytree on the trainer's device, or replicated over the mesh."""
        return jax.device_put(tree, distributed.replicated(self.mesh) if self.mesh is not None else self.device)

    def _place_batch(self, tree: Any) -> Any:
        """A block's (steps, batch, ...) arrays: on the device, or split along the batch axis over the mesh."""
        return jax.device_put(tree, distributed.batch_split(self.mesh) if self.mesh is not None else self.device)

    @property
    def optimizer(self) -> Any:
        """Adam's state (`backends.jax.optim.TorchAdamState`), what `weights.export_adam` reads."""
        return self.opt_state

    # ------------------------------------------------------------------ the weights (WeightsAdapter's, kept in sync)
    def import_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.weights_module.import_weights(self.model, weights)
        self.params = self._place(self.weights_module.params_of(self.model))

    def import_adam(self, adam: AdamState) -> None:
        self.opt_state = self._place(weights.import_adam(self.model, self.opt_state, adam))
        self.t = int(adam.step)

    # ------------------------------------------------------------------ TrainerBackend
    def set_data(self, train: np.ndarray | LazyRows, val: np.ndarray | None, val_eps: np.ndarray | None) -> None:
        self.n = len(train)
        self.steps_per_epoch = math.ceil(self.n / self.config.batch_size)
        # The rows of a compiled step: the batch, or fewer when the data has fewer (one step an epoch then, as in
        # every backend), kept divisible by a mesh's devices. Nothing batch-sized is allocated beyond the data.
        devices = 1 if self.mesh is None else self.mesh.size
        self.batch = batch = min(self.config.batch_size, math.ceil(self.n / devices) * devices)
        platform_device = self.device if self.mesh is None else self.mesh.devices.flat[0]
        self.k = _block_steps(self.model.spec, self.steps_per_epoch, platform_device)
        # (N, D) values on the device (uint8 images as x / 255: 4x their bytes, for a step without a conversion),
        # or read by position a block at a time (a .npy map, a dataset)
        self.x_train = train if isinstance(train, LazyRows) else self._place(_values(train, self.dtype))
        # a program for whole blocks, and one for a single step (what is left after them)
        split = None if self.mesh is None else distributed.batch_split(self.mesh)
        self.programs = {k: (make_block(self.model, self.config, batch=batch, steps=k, bf16=self.bf16,
                                        dtype=self.dtype, mesh=self.mesh), make_gather(batch, k, split))
                         for k in {1, self.k}}
        self.n_val = 0 if val is None else len(val)
        if val is not None:  # padded to whole evaluation batches: one compiled shape
            self.val_batch = min(EVAL_BATCH_SIZE, self.n_val)
            padded = math.ceil(self.n_val / self.val_batch) * self.val_batch
            pad = [(0, padded - self.n_val)] + [(0, 0)] * (np.ndim(val) - 1)
            self.x_val = self._place(np.pad(_values(val, self.dtype), pad))
            self.eps_val = self._place(np.pad(np.asarray(val_eps, self.dtype), [(0, padded - self.n_val), (0, 0)]))
            self.evaluate = make_eval(self.model)

    def begin_epoch(self, epoch: int, order: np.ndarray, images: np.ndarray | None, eps: np.ndarray | None) -> None:
        batch, latent = self.batch, self.model.spec.latent_dim
        if images is not None:  # dynamic binarization: this epoch's 0/1 sample
            self.x_epoch = images if isinstance(self.x_train, LazyRows) else self._place(_values(images, self.dtype))
        else:
            self.x_epoch = self.x_train
        noise = _framework_noise(self.config.seed, epoch, len(order), latent) if eps is None else eps  # (N, L)
        # padded to whole batches: the last batch's rows past the epoch's end are zeros, which count for nothing
        padded = self.steps_per_epoch * batch
        self.order_host = np.asarray(order, np.int64)
        self.order = self._place(np.pad(self.order_host.astype(np.int32), (0, padded - len(order))))
        self.eps_host = np.pad(np.asarray(noise, self.dtype), [(0, padded - len(order)), (0, 0)])  # (padded, L)
        self.eps = self._place(self.eps_host)
        self.rows = np.array([min(batch, self.n - s * batch) for s in range(self.steps_per_epoch)],
                             np.int32)  # examples of each step's batch

    def _plan(self, first: int, stop: int, one_at_a_time: bool) -> list[tuple[int, int]]:
        """The calls that run steps first, ..., stop - 1: (first step, steps) of each, whole blocks of `self.k` steps
        and then single steps (or single steps throughout, for a callback's batch hook)."""
        plan, s = [], first
        while s < stop:
            k = self.k if stop - s >= self.k and not one_at_a_time else 1
            plan.append((s, k))
            s += k
        return plan

    def _host_block(self, s: int, k: int, readers: ThreadPoolExecutor | None) -> tuple[np.ndarray, np.ndarray]:
        """The k batches from step s, read by position from a training set that stays on the host, as values: one
        `take`, or with `readers` one per batch in parallel (a dataset's items, data_workers > 1)."""
        batch = self.batch
        lo, hi = s * batch, min(self.n, (s + k) * batch)
        positions = self.order_host[lo:hi]
        if readers is None:
            x = self.x_epoch.take(positions)  # (rows, D)
        else:
            x = np.concatenate(list(readers.map(self.x_epoch.take, np.array_split(positions, range(batch, len(
                positions), batch)))))  # (rows, D)
        xs = np.zeros((k * batch, *x.shape[1:]), self.dtype)
        xs[:hi - lo] = _values(x, self.dtype)
        return xs.reshape(k, batch, -1), self.eps_host[lo:lo + k * batch].reshape(k, batch, -1)

    def _blocks(self, plan: list[tuple[int, int]]) -> Iterator[tuple[Any, Any]]:
        """The (xs, es) of the calls of `plan`: gathered on the device, or read on the host one call ahead in a
        background thread (so the read overlaps the steps before)."""
        if not isinstance(self.x_epoch, LazyRows):
            for s, k in plan:
                yield self.programs[k][1](self.x_epoch, self.order, self.eps, jnp.int32(s))
            return
        parallel = self.data_workers > 1 and isinstance(self.x_epoch, ItemRows)
        with ThreadPoolExecutor(1, thread_name_prefix="vae-read") as reader, \
                ThreadPoolExecutor(self.data_workers, thread_name_prefix="vae-items") if parallel else \
                contextlib.nullcontext() as items:
            ahead = reader.submit(self._host_block, *plan[0], items) if plan else None
            for i, _ in enumerate(plan):
                block = ahead.result()
                if i + 1 < len(plan):
                    ahead = reader.submit(self._host_block, *plan[i + 1], items)
                yield self._place_batch(block)

    def train_steps(self, first: int, stop: int, should_stop: Callable[[], bool],
                    on_steps: Callable[[int, np.ndarray | None], object], step_losses: bool = False) -> StepsResult:
        plan = self._plan(first, stop, one_at_a_time=step_losses)  # a batch hook: each step's losses at once
        losses, finite = [], True
        blocks = self._blocks(plan)
        try:
            for s, k in plan:
                if should_stop():
                    break
                xs, es = next(blocks)
                sizes, bias2 = step_scalars(self.lr, self.config, self.t + 1 + np.arange(k), self.dtype)
                self.params, self.opt_state, block_losses, finite_dev = self.programs[k][0](
                    self.params, self.opt_state, xs, es, self.rows[s:s + k], sizes, bias2)
                block = np.asarray(block_losses, np.float64)  # (k, 3): the one host sync of the call
                self.t += k
                losses.append(block)
                finite = bool(finite_dev)
                weights.set_params(self.model, self.params)  # the model a callback sees is the trained one
                on_steps(k, block)
                if not np.isfinite(block).all():  # the loop stops at the first non-finite loss
                    break
        finally:
            blocks.close()  # a stop leaves the block read ahead unused
        return StepsResult(np.concatenate(losses) if losses else np.zeros((0, 3)), finite)

    def validate(self) -> Means:
        sums = np.zeros(3)
        beta = float(self.model.spec.beta)
        for start in range(0, self.n_val, self.val_batch):
            rows = min(self.val_batch, self.n_val - start)
            recon, kl = self.evaluate(self.params, self.x_val[start:start + self.val_batch],
                                      self.eps_val[start:start + self.val_batch])
            recon, kl = np.asarray(recon, np.float64)[:rows], np.asarray(kl, np.float64)[:rows]  # (rows,) each
            sums += [(recon + beta * kl).sum(), recon.sum(), kl.sum()]
        return tuple((sums / self.n_val).tolist())

    def set_learning_rate(self, lr: float) -> None:
        self.lr = float(lr)


def fit(model: VAE, train: np.ndarray | LazyRows | Any, val: np.ndarray | Any | None = None,
        config: TrainConfig = TrainConfig(), *, out_dir: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None, overwrite: bool = False, shared_noise: bool = False,
        device: str = "auto",
        precision: str = "fp32", progress: bool = True, data_workers: int = 0,
        callbacks: Sequence[Callback] | None = None, threads: int | None = None) -> dict[str, list[float]]:
    """Train `model` with Adam on the negative ELBO (`vae_core.train.loop.run`), compiled by XLA; returns the history.

    train, val: (N, D) rows or (N, H, W[, C]) images of the spec's image_shape, channels last: float32/float64 (in
        [0, 1] for Bernoulli) or uint8 (x / 255, computed once by NumPy: the device holds the float32 values).
        `train` may stay on disk: a `vae_core.data.mapped.MappedRows` or a file's `np.memmap` is read a block at a
        time (one ahead, in a background thread), except under dynamic binarization, which reads it with a warning.
        Either may be a map-style dataset (a torch `Dataset`, `TensorDataset`, `Subset`, ...) of examples or
        (example, label, ...) items, (C, H, W) images too (`vae_core.data.items.ItemRows`): `train`'s items are
        read by index in the trainer's order a block at a time, checked as they are read, so it trains exactly as
        the same rows as an array; `val` is read once.
        Or an iterable of batches (a torch `DataLoader`, a `tf.data.Dataset`, any re-iterable): one pass per epoch
        in the order it yields, cut into `config.batch_size` steps, a block read ahead
        (`vae_core.data.stream.BatchStream`); an interrupted epoch restarts, so it takes no step checkpoints.
    out_dir: `last.safetensors` every epoch and `best.safetensors` when the monitored loss (val_loss, or
        train_loss without val) improves, with Adam and the loop state. resume_from: a checkpoint of any
        backend; training continues up to `config.epochs` epochs in total.
    overwrite: an out_dir that holds a checkpoint (a run) is refused (`vae_core.io.run_files.RunExistsError`),
        unless resume_from continues a run or overwrite=True replaces it: its last.safetensors and
        best.safetensors are removed once every argument has passed, before the first step (other files there
        stay). Every checkpoint path is checked before training (no folder in its way).
    shared_noise: eps from `vae_core.train.schedule.epoch_noise`, the same in every backend.
    device: "auto" | "cpu" | "cuda" (or "cuda:N"): where the weights and steps live (full float32 on GPUs). Under
        `jax.set_mesh(mesh)` with a one-axis mesh of several devices, the mesh's devices instead: each global
        batch is split between them (`backends.jax.distributed`), and `device` must be "auto".
    precision: "fp32"; "bf16" (bfloat16 activations from float32 weights; loss and Adam stay float32); or "fp64", a
        numerical check: a float64 twin of the model trains inside `jax.enable_x64(True)` (weights, activations,
        loss and Adam in float64; the data and noise are the float32 values, widened) and its weights come back
        rounded to float32; it takes no out_dir or resume_from.
    callbacks: `vae_core.callbacks.Callback`s, called as training goes (Keras' hooks; `vae_core.train.callbacks`).
    data_workers: 0 (the default) or 1 reads a dataset one block at a time, one ahead, in a background thread; N > 1
        reads each block's batches in N parallel threads of this process (sharing the GIL). Arrays and .npy maps
        ignore it.
    threads: None (the default): XLA's own CPU pool (`backends.jax.device.set_threads` says why a count is refused).

    History lists are per epoch (`vae_core.train.history.HISTORY_KEYS`), exact means over the examples. Raises
    NonFiniteLossError at the first NaN/inf loss, before any checkpoint after the last finite step is written.
    """
    check_model(model, "fit")
    mesh = distributed.mesh_of_context()
    if mesh is not None and device != "auto":
        raise ValueError(f"fit: this fit runs under a mesh of {mesh.size} devices (jax.set_mesh), which decides where "
                         f"it trains; got device={device!r}. Pass device='auto', or call fit outside the mesh")
    dev = resolve_device(distributed.rank_device(device))
    world = distributed.join(dev)
    check_precision(precision)
    if isinstance(config, TrainConfig):
        check_global_batch(config.batch_size, 1 if mesh is None else mesh.size, "devices")
    args = check_fit_arguments(model.spec, train, val, config, out_dir=out_dir, resume_from=resume_from,
                               shared_noise=shared_noise, precision=precision, progress=progress,
                               data_workers=data_workers, callbacks=callbacks, overwrite=overwrite)
    fp64 = precision == "fp64"
    with contextlib.ExitStack() as scope:
        if fp64:  # the process-wide float64 switch, for this run alone (module docstring)
            scope.enter_context(jax.enable_x64(True))
            twin = VAE(model.spec, seed=model.seed, param_dtype=jnp.float64)
            weights.import_weights(twin, weights.export_weights(model))
        else:
            twin = model
        scope.enter_context(exact_fp32(dev))
        scope.enter_context(cpu_threads(threads))
        if mesh is not None:
            scope.enter_context(distributed.auto_mesh(mesh))
        try:
            return run(Trainer(twin, config, dev, precision, world, mesh, args.data_workers), model.spec, args)
        finally:  # unchecked: after a non-finite loss the model holds the non-finite weights, as in fp32
            if twin is not model:
                trained = weights.params_of(twin)
                for name, p in weights.native_parameters(model).items():
                    p.set_value(jnp.asarray(np.asarray(trained[name]), jnp.float32))


# ----------------------------------------------------------------------------------------------- evaluate


def evaluate(model: VAE, x: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             device: str = "auto") -> dict[str, float]:
    """Mean negative ELBO over the examples of `x`: {"loss", "recon", "kl"} in nats per example.

    One reparameterised sample per example with eps = `eval_noise(seed, N, latent_dim)`, so the value is
    repeatable and independent of `batch_size`; XLA-compiled (one program per model and batch size), on `device`.
    """
    check_model(model, "evaluate")
    x = check_data(x, model.spec, "x", keep_uint8=True)  # uint8 stays uint8: x / 255 per batch, on the host
    batch_size = check_int("evaluate", "batch_size", batch_size, minimum=1)
    seed = check_int("evaluate", "seed", seed, minimum=0)
    dev = resolve_device(device)
    eps = eval_noise(int(seed), len(x), model.spec.latent_dim)  # (N, L)
    fn = make_eval(model)
    batch = min(batch_size, len(x))
    beta, sums = float(model.spec.beta), np.zeros(3)
    with exact_fp32(dev):
        params = jax.device_put(weights.params_of(model), dev)
        for start in range(0, len(x), batch):
            xb, eb = x[start:start + batch], eps[start:start + batch]  # (b, D), (b, L)
            rows = len(xb)
            if rows < batch:  # padded to the one compiled shape
                xb = np.concatenate([xb, np.zeros((batch - rows, *xb.shape[1:]), xb.dtype)])
                eb = np.concatenate([eb, np.zeros((batch - rows, eb.shape[1]), eb.dtype)])
            recon, kl = fn(params, jax.device_put(_values(xb, np.float32), dev), jax.device_put(eb, dev))
            recon, kl = np.asarray(recon, np.float64)[:rows], np.asarray(kl, np.float64)[:rows]  # (rows,) each
            sums += [(recon + beta * kl).sum(), recon.sum(), kl.sum()]
    return dict(zip(("loss", "recon", "kl"), (sums / len(x)).tolist()))
