"""`fit` and `evaluate` for the torch VAE: the framework half of `vae_core.train.loop`.

`Trainer` is this backend's `vae_core.train.backend.TrainerBackend`: it keeps the data as tensors on the device and
gathers each epoch's batches there (a training set read by position, a .npy map's `MappedRows` or a dataset's
`ItemRows`, stays where it is: each batch is read one ahead in a thread, or a dataset's in DataLoader worker
processes with `fit(data_workers=N)`, then copied over), and runs the step (`backends.torch.steps.make_step`) on
each. It keeps the per-step losses on the device and synchronises with the host once per run of steps (an epoch,
or up to the next step checkpoint); a stop request is seen between any two steps. The epochs, resume, checkpoints,
the LR plateau, early stopping and progress are `vae_core.train.loop.run`'s.

Under torchrun (`backends.torch.distributed`) each rank keeps the whole data set, takes its shard of every global
batch (`vae_core.train.world.shard`) with the same noise rows one process would give those examples, and steps the
model inside DistributedDataParallel. Its loss is the sum of its examples' losses times world_size / global batch, so
DDP's gradient average is the gradient of the global batch's mean loss, whatever the split; the batch means the
trainer records are all-reduced sums over the global batch, once per run of steps.
"""
from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from backends.torch import distributed, weights
from backends.torch.device import (cpu_threads, exact_fp32, flush_denormals, follow_threads, resolve_device,
                                  to_device)
from backends.torch.losses import per_example
from backends.torch.model import VAE, check_model, eval_mode
from backends.torch.optim import make_optimizer
from backends.torch.steps import make_step
from vae_core.checks import check_bool, check_int
from vae_core.config import TrainConfig
from vae_core.data.items import ItemRows
from vae_core.data.lazy import LazyRows
from vae_core.data.rows import check_data
from vae_core.system.threads import ThreadPolicy
from vae_core.train.arguments import EVAL_BATCH_SIZE, check_device_name, check_fit_arguments, check_precision
from vae_core.train.callbacks import Callback
from vae_core.train.backend import Means, StepsResult, WeightsAdapter
from vae_core.train.loop import run
from vae_core.train.schedule import eval_noise
from vae_core.train.world import SINGLE, World, check_global_batch, shard


def _compute_dtype(model: VAE) -> torch.dtype:
    """The dtype of the data, noise and losses a model computes on: float64 for a float64 model, else float32
    (bf16 autocasts from float32)."""
    return torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32


def _as_values(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch of examples as `dtype` values: uint8 images become x / 255 in float32 first (the values
    `vae_core.data.rows.check_data` gives), then widened; float batches are cast."""
    if x.dtype == torch.uint8:
        return (x.to(torch.float32) / 255.0).to(dtype)
    return x.to(dtype)


def _data_to_device(x: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Examples onto the device: uint8 images stay uint8 (4x less memory, x / 255 per batch by `_as_values`),
    float arrays become `dtype`."""
    return to_device(x, device, torch.uint8 if x.dtype == np.uint8 else dtype)


def _framework_noise(seed: int, epoch: int, n: int, latent_dim: int, device: torch.device) -> torch.Tensor:
    """(n, latent_dim) standard normals from a torch generator seeded by (seed, epoch) alone."""
    torch_seed = int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    generator = torch.Generator(device=device).manual_seed(torch_seed)
    return torch.randn(n, latent_dim, generator=generator, device=device)


class _TakeRows(torch.utils.data.Dataset):
    """`LazyRows` for a DataLoader whose batch sampler gives each step's positions, taken at once by a worker. A bad
    item comes back as its error, for the training process to raise: one message, not a worker's traceback."""

    def __init__(self, rows: LazyRows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: np.ndarray) -> torch.Tensor | Exception:
        try:
            return torch.from_numpy(self.rows.take(np.asarray(positions)))  # (b, D)
        except (TypeError, ValueError) as error:  # ItemRows' errors about an item or the dataset
            return error


def _as_is(batch: torch.Tensor | Exception) -> torch.Tensor | Exception:
    return batch  # the DataLoader's collate_fn: `__getitems__` made the batch


def _ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader worker leaves SIGTERM and SIGINT (a signal to the process group) to the training process, which
    stops at a step boundary and shuts it down; killed mid-read, it would make the DataLoader raise instead."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


class Trainer(WeightsAdapter):
    """One VAE and its fused Adam on one device, stepped by `vae_core.train.loop.run`."""

    name = "torch"
    weights_module = weights

    def __init__(self, model: VAE, config: TrainConfig, device: torch.device, precision: str, compile: bool,
                 world: World = SINGLE, data_workers: int = 0, threads: ThreadPolicy | None = None):
        self.model, self.config, self.device, self.world = model, config, device, world
        self.threads = threads  # the CPU threads to follow between steps (`cpu_threads`); None: left as they are
        self.data_workers = data_workers  # DataLoader worker processes for a dataset's items; 0: a thread
        self.dtype = _compute_dtype(model)  # float64 inside precision="fp64"
        self.optimizer = make_optimizer(model, config)
        # DDP averages the ranks' gradients in the backward pass; device_ids only for a CUDA model; the gradients
        # live in DDP's all-reduce buckets (no copy of them per step)
        self.net = model if world.size == 1 else torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True)
        self.step = make_step(model, self.net, self.optimizer, device, grad_clip_norm=config.grad_clip_norm,
                              world_size=world.size, shard_batch=config.batch_size // world.size,
                              bf16=precision == "bf16", compile=compile)

    def set_data(self, train: np.ndarray | LazyRows, val: np.ndarray | None, val_eps: np.ndarray | None) -> None:
        # (N, D) on the device, or read by position (a .npy map, a dataset) a batch at a time by `_batches`
        self.x_train = train if isinstance(train, LazyRows) else _data_to_device(train, self.device, self.dtype)
        self.n_val = 0 if val is None else len(val)
        if val is not None:  # each rank validates its shard; `validate` adds up the sums
            lo, hi = shard(len(val), self.world.size, self.world.rank)
            val, val_eps = val[lo:hi], val_eps[lo:hi]
        self.x_val = None if val is None else _data_to_device(val, self.device, self.dtype)  # (M, D)
        self.eps_val = None if val_eps is None else to_device(val_eps, self.device, self.dtype)  # (M, L)

    def begin_epoch(self, epoch: int, order: np.ndarray, images: np.ndarray | None, eps: np.ndarray | None) -> None:
        n, latent = len(order), self.model.spec.latent_dim
        self.x_epoch = self.x_train if images is None else _data_to_device(images, self.device, self.dtype)  # (N, D)
        self.eps_epoch = (_framework_noise(self.config.seed, epoch, n, latent, self.device) if eps is None
                          else to_device(eps, self.device)).to(self.dtype)  # (N, L)
        self.order = torch.from_numpy(order).to(self.device)  # (N,)
        self.order_host = order  # (N,), for a training set read by position

    def _rows(self, s: int) -> tuple[slice, int]:
        """Step s's rows of the epoch's order on this rank, and the examples of its global batch."""
        batch, n = self.config.batch_size, len(self.order_host)
        b = min(batch, n - s * batch)  # the global batch's examples
        lo, hi = shard(b, self.world.size, self.world.rank)  # this rank's rows of it (all of them in one process)
        return slice(s * batch + lo, s * batch + hi), b

    def _read(self, rows: slice) -> torch.Tensor:
        """The examples of `rows` of the epoch's order, read by position and copied to the device as stored."""
        host = torch.from_numpy(self.x_epoch.take(self.order_host[rows]))  # (b, D)
        cuda = self.device.type == "cuda"
        return (host.pin_memory() if cuda else host).to(self.device, non_blocking=cuda)

    def _batches(self, first: int, stop: int) -> Iterator[torch.Tensor]:
        """This rank's (b, D) batch of each step first, ..., stop - 1, as `self.dtype` values on the device. A
        training set read by position is read one batch ahead in a background thread, so the read overlaps the step
        before (as TF's tf.data pipeline prefetches a block); a dataset with data_workers, by `_loaded`."""
        if not isinstance(self.x_epoch, LazyRows):
            for s in range(first, stop):
                yield _as_values(self.x_epoch.index_select(0, self.order[self._rows(s)[0]]), self.dtype)
            return
        if self.data_workers and isinstance(self.x_epoch, ItemRows):
            yield from self._loaded(first, stop)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="vae-read") as reader:
            ahead = reader.submit(self._read, self._rows(first)[0])
            for s in range(first, stop):
                xb = ahead.result()
                if s + 1 < stop:
                    ahead = reader.submit(self._read, self._rows(s + 1)[0])
                yield _as_values(xb, self.dtype)

    def _loaded(self, first: int, stop: int) -> Iterator[torch.Tensor]:
        """`_batches` of a dataset, read by a DataLoader in `data_workers` processes (pinned on CUDA), whose batch
        sampler is this rank's positions of each step in the trainer's order. Its workers live for this run of
        steps (an epoch, as by default); a stop or an error shuts them down at once."""
        cuda = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            _TakeRows(self.x_epoch), batch_sampler=[self.order_host[self._rows(s)[0]] for s in range(first, stop)],
            collate_fn=_as_is, num_workers=self.data_workers, pin_memory=cuda,
            worker_init_fn=_ignore_stop_signals)
        batches = iter(loader)
        try:
            for xb in batches:
                if isinstance(xb, Exception):
                    raise xb
                yield _as_values(xb.to(self.device, non_blocking=cuda), self.dtype)
        finally:
            del batches  # the iterator's last reference: shuts the workers down now

    def train_steps(self, first: int, stop: int, should_stop: Callable[[], bool],
                    on_steps: Callable[[int, np.ndarray | None], object], step_losses: bool = False) -> StepsResult:
        losses_dev = torch.empty(stop - first, 3, device=self.device, dtype=self.dtype)  # per-step batch means
        global_rows = []  # examples in each global batch
        self.model.train()
        done, batches = 0, self._batches(first, stop)
        for s in range(first, stop):
            if should_stop():
                break
            rows, b = self._rows(s)
            if self.threads is not None:
                follow_threads(self.threads)
            losses_dev[done] = self.step(next(batches), self.eps_epoch[rows], self.world.size / b)  # (b, D) batch
            global_rows.append(b)
            done += 1
            # a callback's batch hook: this step's means, read back now (a host sync); else the bar alone
            on_steps(1, self._step_means(losses_dev[done - 1:done], b) if step_losses else None)
        batches.close()  # a stop leaves the batch read ahead unused
        # What the host needs from these steps, in one transfer: the losses, then whether every weight is finite.
        finite = torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()
        host = torch.cat([losses_dev[:done].double().flatten(), finite.double()[None]]).cpu().numpy()
        losses = host[:-1].reshape(done, 3)
        if self.world.size > 1:  # the ranks' sums -> the global batches' means (the weights are the same everywhere)
            losses = self.world.sum(losses) / np.asarray(global_rows, np.float64)[:, None]
        return StepsResult(losses, bool(host[-1] == 1.0))

    def _step_means(self, losses: torch.Tensor, b: int) -> np.ndarray:
        """One step's (1, 3) batch means on the host: with several processes, the ranks' sums over the global
        batch of b examples (every rank makes this call, as it makes the step)."""
        host = losses.double().cpu().numpy()
        return host if self.world.size == 1 else self.world.sum(host) / b

    def validate(self) -> Means:
        sums = _sums(self.model, self.x_val, self.eps_val, EVAL_BATCH_SIZE).cpu().numpy()  # (3,) this rank's
        return tuple((self.world.sum(sums) / self.n_val).tolist())

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


@contextlib.contextmanager
def _float64_weights(model: VAE, enabled: bool) -> Iterator[None]:
    """precision="fp64": the parameters in float64 while the block runs, back in their dtype after."""
    dtype = next(model.parameters()).dtype
    if enabled:
        model.double()
    try:
        yield
    finally:
        if enabled:
            model.to(dtype)


def fit(model: VAE, train: np.ndarray | LazyRows | Any, val: np.ndarray | Any | None = None,
        config: TrainConfig = TrainConfig(), *, out_dir: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None, overwrite: bool = False, shared_noise: bool = False,
        device: str = "auto",
        precision: str = "fp32", progress: bool = True, data_workers: int = 0,
        callbacks: Sequence[Callback] | None = None, threads: int | None = None,
        compile: bool = False) -> dict[str, list[float]]:
    """Train `model` with Adam on the negative ELBO (`vae_core.train.loop.run`); returns the history.

    train, val: (N, D) rows or (N, H, W[, C]) images of the spec's image_shape, channels last: float32/float64 (in
        [0, 1] for Bernoulli) or uint8 (x / 255; uint8 training data stays uint8 on the device, converted per batch).
        `train` may stay on disk: a `vae_core.data.mapped.MappedRows` or a file's `np.memmap` is read a batch at a time
        (one ahead, in a background thread), except under dynamic binarization, which reads it with a warning.
        Either may be a map-style dataset (a torch `Dataset`, `TensorDataset`, `Subset`, ...) of examples or
        (example, label, ...) items, (C, H, W) images too (`vae_core.data.items.ItemRows`): `train`'s items are
        read by index in the trainer's order a batch at a time, checked as they are read, so it trains exactly as
        the same rows as an array; `val` is read once.
        Or an iterable of batches (a torch `DataLoader`, a `tf.data.Dataset`, any re-iterable): one pass per epoch
        in the order it yields, cut into `config.batch_size` steps, a batch read ahead
        (`vae_core.data.stream.BatchStream`); an interrupted epoch restarts, so it takes no step checkpoints.
    out_dir: `last.safetensors` every epoch and `best.safetensors` when the monitored loss (val_loss, or
        train_loss without val) improves, with Adam and the loop state. resume_from: a checkpoint of either
        backend; training continues up to `config.epochs` epochs in total.
    overwrite: an out_dir that holds a checkpoint (a run) is refused (`vae_core.io.run_files.RunExistsError`),
        unless resume_from continues a run or overwrite=True replaces it: its last.safetensors and
        best.safetensors are removed once every argument has passed, before the first step (other files there
        stay). Every checkpoint path is checked before training (no folder in its way).
    shared_noise: eps from `vae_core.train.schedule.epoch_noise`, the same in every backend.
    device: "auto" | "cpu" | "cuda" (or "cuda:N"); the model is moved there and stays there.
    precision: "fp32" (TF32 off on CUDA); "bf16" (torch.autocast; loss, weights and Adam stay float32); or
        "fp64", a numerical check: weights, activations, loss and Adam in float64 (the data and noise are the
        float32 values, widened), rounded back to the model's dtype at the end; it takes no out_dir or
        resume_from. A float64 model (`model.double()`) takes only "fp64".
    callbacks: `vae_core.callbacks.Callback`s, called as training goes (Keras' hooks; `vae_core.train.callbacks`).
    data_workers: 0 (the default) reads a dataset's items in this process, one batch ahead in a thread; N > 0 in
        N DataLoader worker processes, started every epoch, each with a copy of the dataset (under the spawn start
        method, one re-imported by each: guard the script with `if __name__ == "__main__":`). Arrays and .npy maps
        ignore it.
    threads: torch's CPU threads while it trains (restored after); None (the default) uses the CPUs other
        processes leave idle, looked at again each second, so a busy machine does not stall the step
        (`vae_core.system.threads`, scripts/results/bench_threads.md).
    compile: torch.compile the forward pass and loss of full batches (static shapes; a partial last batch runs
        eagerly). Costs a compile at the start and needs a C++ compiler on the CPU (scripts/results/bench_torch_cpu.md).

    History lists are per epoch (`vae_core.train.history.HISTORY_KEYS`), exact means over the examples. Raises
    NonFiniteLossError at the first NaN/inf loss, before any checkpoint after the last finite step is written.
    """
    check_model(model, "fit")
    dev = resolve_device(distributed.rank_device(check_device_name(device)))
    check_precision(precision)
    check_bool("fit", "compile", compile)
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32 and not (precision == "fp64" and dtype == torch.float64):
        fix = "pass precision='fp64', or call model.float()" if dtype == torch.float64 else "call model.float()"
        raise ValueError(f"fit: the model's parameters are {dtype}, but precision={precision!r} trains float32 "
                         f"weights; {fix}")
    world = distributed.join(dev)  # the torchrun processes, if launched by one
    if isinstance(config, TrainConfig):
        check_global_batch(config.batch_size, world.size, "processes")
    if compile and world.size > 1:
        raise ValueError(f"fit: compile=True is not supported with several processes (this is one of "
                         f"{world.size}): DistributedDataParallel under torch.compile is untested here; pass "
                         f"compile=False")
    args = check_fit_arguments(model.spec, train, val, config, out_dir=out_dir, resume_from=resume_from,
                               shared_noise=shared_noise, precision=precision, progress=progress,
                               data_workers=data_workers, callbacks=callbacks, overwrite=overwrite)
    with exact_fp32(dev), flush_denormals(), cpu_threads(threads) as policy, \
            _float64_weights(model, precision == "fp64"):
        model.to(dev)
        trainer = Trainer(model, config, dev, precision, compile, world, args.data_workers, policy)
        return run(trainer, model.spec, args)


def _sums(model: VAE, x: torch.Tensor, eps: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sums over the examples of (loss, recon, kl): (3,) float64 on the device, one single-sample ELBO each.
    x: (N, D) in the noise's dtype, or uint8 images (x / 255 per batch)."""
    spec = model.spec
    total = torch.zeros(3, dtype=torch.float64, device=x.device)
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = _as_values(x[start:start + batch_size], eps.dtype)  # (b, D)
            eb = eps[start:start + batch_size]  # (b, latent_dim)
            out, mu, log_var = model(xb, eb)
            recon, kl = (t.double() for t in per_example(xb, out, mu, log_var, likelihood=spec.likelihood))
            total += torch.stack([(recon + spec.beta * kl).sum(), recon.sum(), kl.sum()])  # (3,)
    return total


def evaluate(model: VAE, x: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             device: str = "auto") -> dict[str, float]:
    """Mean negative ELBO over the examples of `x`: {"loss", "recon", "kl"} in nats per example.

    One reparameterised sample per example with eps = `eval_noise(seed, N, latent_dim)`, so the value is
    repeatable and independent of `batch_size`; in the model's dtype, eval mode, no gradients. The model is moved
    to `device`.
    """
    check_model(model, "evaluate")
    x = check_data(x, model.spec, "x", keep_uint8=True)  # uint8 stays uint8 on the device: x / 255 per batch
    batch_size = check_int("evaluate", "batch_size", batch_size, minimum=1)
    seed = check_int("evaluate", "seed", seed, minimum=0)
    dev = resolve_device(device)
    dtype = _compute_dtype(model)
    with exact_fp32(dev), flush_denormals():
        model.to(dev)
        eps = to_device(eval_noise(int(seed), len(x), model.spec.latent_dim), dev, dtype)  # (N, latent_dim)
        x = _data_to_device(x, dev, dtype)  # (N, D)
        means = (_sums(model, x, eps, batch_size) / len(x)).tolist()
    return dict(zip(("loss", "recon", "kl"), means))
