"""`fit` and `evaluate` for the torch VAE.

The loop keeps the data as one tensor on the device, takes each epoch's order from
`vae_core.training.epoch_permutation` (indices gathered on the device), keeps the per-step losses on the
device and synchronises with the host once per epoch. Data order and noise are functions of
(config.seed, epoch), so a resumed run repeats an uninterrupted one bit for bit.

Loop state saved in checkpoints (`trainer_state`, JSON; the TF backend writes and reads the same keys):
    lr                         learning rate for the next epoch
    monitor                    "val_loss" or "train_loss": what the plateau, early stopping and best file watch
    best_loss, best_epoch      lowest monitored loss so far and its 1-based epoch (None before the first)
    plateau_bad_epochs         epochs since the last improvement or LR drop (ReduceLROnPlateau.num_bad_epochs)
    early_stopping_bad_epochs  epochs since the last improvement
    stopped_early              True once early stopping has fired
One rule for all three: an improvement is a strictly lower monitored loss. The LR is multiplied by
`lr_plateau_factor` once more than `lr_plateau_patience` epochs in a row fail to improve (torch's
ReduceLROnPlateau with threshold 0); training stops after `early_stopping_patience` epochs in a row
without one, and the weights of the best epoch are restored at the end (as the seed's loop does).
A checkpoint whose trainer_state lacks these keys is resumed by replaying its history through the rules.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from backends.torch.losses import negative_elbo, per_example
from backends.torch.model import VAE
from backends.torch.weights import export_weights, import_adam, import_weights
from vae_core.checkpoint import read_checkpoint, save_checkpoint
from vae_core.config import TrainConfig
from vae_core.training import (HISTORY_KEYS, NonFiniteLossError, check_data, check_fit_inputs, check_fp64_run,
                               empty_history, epoch_binarized, epoch_noise, epoch_permutation, eval_noise,
                               prepare_out_dir, resumed_learning_rate)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp64")
EVAL_BATCH_SIZE = 1000  # batch size of the validation pass inside fit (and evaluate's default)
_STATE_KEYS = ("lr", "best_loss", "best_epoch", "plateau_bad_epochs", "early_stopping_bad_epochs", "stopped_early")


# ---------------------------------------------------------------- argument checks


def resolve_device(device: Any, argument: str = "device") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu'; 'cuda' or 'cuda:N' (ValueError without CUDA)."""
    if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"{argument} must be one of 'auto', 'cpu', 'cuda' (or 'cuda:N'); got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{argument} must name an available device: {argument}={device!r}, but CUDA is not "
                         f"available to torch {torch.__version__}; pass {argument}='cpu' or 'auto'")
    return torch.device(device)


def _check_precision(precision: Any) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of 'fp32', 'bf16', 'fp64'; got {precision!r}")


def _param_dtype(model: VAE) -> torch.dtype:
    return next(model.parameters()).dtype


def _data_dtype(model: VAE) -> torch.dtype:
    """The dtype a model computes in, and so of the data, noise and losses fed to it: float64 for a float64 model
    (precision="fp64"), else float32 (bf16 autocasts from float32)."""
    return torch.float64 if _param_dtype(model) == torch.float64 else torch.float32


def _check_model_dtype(model: VAE, precision: str) -> None:
    dtype = _param_dtype(model)
    if dtype != torch.float32 and not (precision == "fp64" and dtype == torch.float64):
        fix = "pass precision='fp64', or call model.float()" if dtype == torch.float64 else "call model.float()"
        raise ValueError(f"fit: the model's parameters are {dtype}, but precision={precision!r} trains float32 "
                         f"weights; {fix}")


def _check_model(model: Any, caller: str) -> None:
    if not isinstance(model, VAE):
        raise TypeError(f"{caller}: model must be a torch VAE built by vae_core.build('torch', ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")


def _check_positive_int(caller: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{caller}: {name} must be an int >= {minimum}; got {value!r}")


def _to_device(x: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if not x.flags.writeable:  # torch.from_numpy warns on read-only arrays; we never write, but copy to be safe
        x = x.copy()
    return torch.from_numpy(x).to(device=device, dtype=dtype)  # (N, D)


@contextlib.contextmanager
def _float64_weights(model: VAE, enabled: bool):
    """precision="fp64": the model's parameters in float64 while the block runs, back in their dtype after."""
    if not enabled:
        yield
        return
    dtype = _param_dtype(model)
    model.double()
    try:
        yield
    finally:
        model.to(dtype)


@contextlib.contextmanager
def _exact_fp32(device: torch.device):
    """TF32 off on CUDA while the loop runs (fp32 stays fp32), restoring the caller's settings after."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------- evaluation


def _sums(model: VAE, x: torch.Tensor, eps: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sums over the examples of (loss, recon, kl), float64 on the device, one single-sample ELBO each."""
    spec = model.spec
    total = torch.zeros(3, dtype=torch.float64, device=x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb, eb = x[start:start + batch_size], eps[start:start + batch_size]  # (b, D), (b, latent_dim)
                out, mu, log_var = model(xb, eb)
                recon, kl = (t.double() for t in per_example(xb, out, mu, log_var, likelihood=spec.likelihood))
                total += torch.stack([(recon + spec.beta * kl).sum(), recon.sum(), kl.sum()])  # (3,)
    finally:
        model.train(was_training)
    return total


def evaluate(model: VAE, x: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             device: str = "auto") -> dict[str, float]:
    """Mean negative ELBO over the examples of `x`: {"loss", "recon", "kl"} in nats per example.

    One reparameterised sample per example with eps = `eval_noise(seed, N, latent_dim)`, so the
    value is repeatable and independent of `batch_size`. In the model's dtype (float32, or float64 after
    `model.double()`), in eval mode, without gradients. The model is moved to `device`.
    """
    _check_model(model, "evaluate")
    x = check_data(x, model.spec, "x")
    _check_positive_int("evaluate", "batch_size", batch_size, 1)
    _check_positive_int("evaluate", "seed", seed, 0)
    dev = resolve_device(device)
    dtype = _data_dtype(model)
    with _exact_fp32(dev):
        model.to(dev)
        eps = _to_device(eval_noise(seed, len(x), model.spec.latent_dim), dev, dtype)  # (N, latent_dim)
        means = (_sums(model, _to_device(x, dev, dtype), eps, batch_size) / len(x)).tolist()
    return dict(zip(("loss", "recon", "kl"), means))


# ---------------------------------------------------------------- training


def _noise_seed(seed: int, epoch: int) -> int:
    """A torch seed for the reparameterisation noise of (config.seed, 0-based epoch)."""
    return int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _epoch_eps(config: TrainConfig, epoch: int, n: int, latent_dim: int, shared: bool,
               device: torch.device) -> torch.Tensor:
    """(n, latent_dim) noise for one epoch; row i belongs to the i-th example in that epoch's order."""
    if shared:
        return torch.from_numpy(epoch_noise(config.seed, epoch, n, latent_dim)).to(device)
    gen = torch.Generator(device=device).manual_seed(_noise_seed(config.seed, epoch))
    return torch.randn(n, latent_dim, generator=gen, device=device)


def _make_step(model: VAE, optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device,
               precision: str, compile: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One optimisation step on a batch; returns the detached (3,) tensor (loss, recon, kl) (batch means)."""
    spec, params = model.spec, list(model.parameters())
    bf16 = precision == "bf16"

    def losses(xb: torch.Tensor, eb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out, mu, log_var = model(xb, eb)  # (b, output_dim), (b, latent_dim), (b, latent_dim)
        # The loss itself is float32: negative_elbo widens bf16 activations first.
        return negative_elbo(xb, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta)

    # Compiled for full batches only (static shapes: one graph per fit); a partial last batch runs eagerly, as a
    # dynamic-shape recompile made every later step slower. Dynamo keeps at most torch._dynamo.config.
    # recompile_limit (8) graphs for this function per process; past that, later fits run eagerly, with a warning.
    compiled = torch.compile(losses, dynamic=False) if compile else losses

    def step(xb: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        total, recon, kl = (compiled if xb.shape[0] == config.batch_size else losses)(xb, eb)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
        optimizer.step()
        return torch.stack([total, recon, kl]).detach()  # (3,)

    return step


def _make_optimizer(model: VAE, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    # Fused Adam (one kernel for all parameters) is available for float32 and float64 on CPU and CUDA and is the
    # fastest; the math is torch.optim.Adam's (eps added to sqrt(v_hat)).
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps, fused=True)


class _Loop:
    """Plateau schedule, early stopping and the best loss: the JSON-able part of the loop."""

    def __init__(self, optimizer: torch.optim.Adam, config: TrainConfig, monitor: str) -> None:
        self.optimizer, self.config, self.monitor = optimizer, config, monitor
        self.scheduler = None
        if config.reduce_lr_on_plateau:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=config.lr_plateau_factor, patience=config.lr_plateau_patience,
                threshold=0.0, threshold_mode="abs")  # improvement: strictly lower, as for early stopping
        self.best_loss: float | None = None
        self.best_epoch: int | None = None
        self.early_stopping_bad_epochs = 0
        self.stopped_early = False

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """The LR of the next epoch, in the optimizer and in the scheduler's record of it."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scheduler is not None:
            self.scheduler._last_lr = [lr]

    def end_epoch(self, epoch: int, loss: float) -> bool:
        """Record the monitored loss of 1-based `epoch`; returns whether it improved on the best."""
        improved = self.best_loss is None or loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.early_stopping_bad_epochs = loss, epoch, 0
        else:
            self.early_stopping_bad_epochs += 1
        if self.scheduler is not None:
            self.scheduler.step(loss)
        if self.config.early_stopping and self.early_stopping_bad_epochs >= self.config.early_stopping_patience:
            self.stopped_early = True
        return improved

    def state(self) -> dict[str, Any]:
        return {"lr": self.lr, "monitor": self.monitor, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "plateau_bad_epochs": 0 if self.scheduler is None else int(self.scheduler.num_bad_epochs),
                "early_stopping_bad_epochs": self.early_stopping_bad_epochs, "stopped_early": self.stopped_early}

    def restore(self, state: dict[str, Any], history: dict[str, list[float]], epoch: int) -> None:
        """Continue from a checkpoint's trainer_state, or replay its history when the state is foreign."""
        if not all(k in state for k in _STATE_KEYS):
            losses = history.get(self.monitor) or []
            warnings.warn(f"resume: trainer_state has no {[k for k in _STATE_KEYS if k not in state]}; "
                          f"replaying the plateau and early-stopping rules over {len(losses)} recorded "
                          f"{self.monitor!r} values instead", stacklevel=3)
            for i, loss in enumerate(losses, 1):
                self.end_epoch(i, float(loss))
            return
        self.set_lr(float(state["lr"]))
        self.best_loss = None if state["best_loss"] is None else float(state["best_loss"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.early_stopping_bad_epochs = int(state["early_stopping_bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        if self.scheduler is not None:  # with threshold 0 the scheduler's best is the best loss
            self.scheduler.best = math.inf if self.best_loss is None else self.best_loss
            self.scheduler.num_bad_epochs = int(state["plateau_bad_epochs"])
            self.scheduler.last_epoch = epoch


def fit(model: VAE, train: np.ndarray, val: np.ndarray | None = None, config: TrainConfig = TrainConfig(), *,
        out_dir: str | os.PathLike | None = None, resume_from: str | os.PathLike | None = None,
        shared_noise: bool = False, device: str = "auto", precision: str = "fp32", progress: bool = True,
        compile: bool = False) -> dict[str, list[float]]:
    """Train `model` with Adam on the negative ELBO; returns the history (`vae_core.training.HISTORY_KEYS`).

    train, val: (N, D) arrays (float32/float64 in [0, 1] for Bernoulli, or uint8 images).
    out_dir: writes `last.safetensors` every epoch and `best.safetensors` when the monitored loss
        (val_loss, or train_loss without val) improves; schema-v1 checkpoints with Adam and loop state.
    resume_from: a schema-v1 checkpoint from either backend; restores weights, Adam, epoch, history and
        loop state, then trains on up to `config.epochs` epochs in total.
    shared_noise: draw eps from `vae_core.training.epoch_noise` (the same in every backend).
    device: "auto" | "cpu" | "cuda"; the model is moved there and stays there.
    precision: "fp32" (TF32 off on CUDA); "bf16" (torch.autocast; loss, weights and Adam stay float32); or
        "fp64", a numerical check: weights, activations, loss and Adam in float64 (the data and noise are the
        float32 values, widened), the weights rounded back to the model's dtype at the end, so it takes no
        out_dir or resume_from. A float64 model (`model.double()`) takes only "fp64". The parity suite uses fp64
        for 200-step lockstep runs.
    compile: torch.compile the forward pass and loss of full batches (static shapes; a partial last batch runs
        eagerly). Costs 5-15 s once; on this project's 2-core CPU it made bf16 steps 1.2-1.35x faster
        (scripts/results/bench_torch_cpu.md). Needs a C++ compiler on the CPU.

    Each call starts a fresh Adam; to continue a run with its optimizer and loop state, pass resume_from.
    History lists are per epoch; train_* and val_* are exact means over the examples (every example
    counts once, the last partial batch included). Without `val`, the val_* lists stay empty.
    Raises NonFiniteLossError at the first NaN/inf loss (checked at the end of each epoch from the
    per-step losses), before writing any checkpoint for that epoch; the model then holds the non-finite
    weights, and the error names the last good checkpoint.
    """
    _check_model(model, "fit")
    spec = model.spec
    train, val = check_fit_inputs(spec, train, val, config)
    dev = resolve_device(device)
    _check_precision(precision)
    check_fp64_run(precision, out_dir, resume_from)
    _check_model_dtype(model, precision)
    for name, flag in (("shared_noise", shared_noise), ("progress", progress), ("compile", compile)):
        if not isinstance(flag, bool):
            raise ValueError(f"fit: {name} must be True or False; got {flag!r}")
    out = prepare_out_dir(out_dir)

    with _exact_fp32(dev), _float64_weights(model, precision == "fp64"):
        model.to(dev)
        optimizer = _make_optimizer(model, config, dev)
        loop = _Loop(optimizer, config, "val_loss" if val is not None else "train_loss")
        history, start_epoch, last_good = empty_history(), 0, None
        best_weights: dict[str, np.ndarray] | None = None
        if resume_from is not None:
            start_epoch, history, best_weights = _resume(model, optimizer, loop, Path(resume_from), config)
            last_good = str(resume_from)
        history = _train(model, optimizer, loop, config, train, val, history, start_epoch, best_weights, out,
                         last_good, shared_noise, dev, precision, progress, compile)
    return history


def _resume(model: VAE, optimizer: torch.optim.Adam, loop: _Loop, path: Path, config: TrainConfig
            ) -> tuple[int, dict[str, list[float]], dict[str, np.ndarray] | None]:
    ckpt = read_checkpoint(path)
    if ckpt.spec != model.spec:
        raise ValueError(f"resume_from {str(path)!r} holds a model of spec {ckpt.spec.to_dict()}, but this "
                         f"model's spec is {model.spec.to_dict()}; build the model from the checkpoint's spec")
    if ckpt.train_config is not None and ckpt.train_config.seed != config.seed:
        warnings.warn(f"resume: the checkpoint was trained with seed {ckpt.train_config.seed}, this config has "
                      f"seed {config.seed}; the remaining epochs will not repeat the original run", stacklevel=3)
    import_weights(model, ckpt.weights)
    if ckpt.adam is not None:
        import_adam(model, optimizer, ckpt.adam)
    else:
        warnings.warn(f"resume_from={str(path)!r} has no Adam state; resuming with fresh Adam moments",
                      RuntimeWarning, stacklevel=3)
    history = {k: [float(v) for v in (ckpt.history.get(k) or [])][:ckpt.epoch] for k in HISTORY_KEYS}
    loop.restore(ckpt.trainer_state, history, ckpt.epoch)
    loop.set_lr(resumed_learning_rate(ckpt.train_config, config, loop.lr))
    best = None
    if config.early_stopping and loop.best_epoch is not None:
        if loop.best_epoch == ckpt.epoch:
            best = ckpt.weights
        else:  # the best weights live in best.safetensors beside the checkpoint, if that is from the same run
            candidate = path.parent / "best.safetensors"
            if candidate.is_file() and (b := read_checkpoint(candidate)).epoch == loop.best_epoch \
                    and b.spec == model.spec:
                best = b.weights
            else:
                warnings.warn(f"resume: the best weights (epoch {loop.best_epoch}) are not in {str(candidate)!r}; "
                              f"early stopping can only restore the best weights of the epochs still to run",
                              stacklevel=3)
    return ckpt.epoch, history, best


def _train(model: VAE, optimizer: torch.optim.Adam, loop: _Loop, config: TrainConfig, train: np.ndarray,
           val: np.ndarray | None, history: dict[str, list[float]], start_epoch: int,
           best_weights: dict[str, np.ndarray] | None, out: Path | None, last_good: str | None,
           shared_noise: bool, dev: torch.device, precision: str, progress: bool,
           compile: bool) -> dict[str, list[float]]:
    from tqdm.auto import tqdm

    spec = model.spec
    n, batch = len(train), config.batch_size
    n_steps = -(-n // batch)
    dtype = _data_dtype(model)  # float64 inside precision="fp64"
    x_train = _to_device(train, dev, dtype)  # (N, D)
    x_val = None if val is None else _to_device(val, dev, dtype)  # (M, D)
    eps_val = None if val is None else _to_device(eval_noise(config.seed, len(val), spec.latent_dim), dev,
                                                  dtype)  # (M, latent_dim)
    sizes = torch.tensor([min(batch, n - s * batch) for s in range(n_steps)], dtype=torch.float64,
                         device=dev)  # (n_steps,)
    params = list(model.parameters())
    step = _make_step(model, optimizer, config, dev, precision, compile)

    epochs = range(start_epoch, config.epochs) if not loop.stopped_early else range(0)
    bar = tqdm(epochs, desc="torch fit", unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in bar:  # 0-based here; 1-based in history, checkpoints and errors
        t0 = time.perf_counter()
        lr = loop.lr
        perm = torch.from_numpy(epoch_permutation(config.seed, epoch, n)).to(dev)  # (N,)
        eps = _epoch_eps(config, epoch, n, spec.latent_dim, shared_noise, dev).to(dtype)  # (N, latent_dim)
        x_epoch = _to_device(epoch_binarized(train, config.seed, epoch), dev, dtype) \
            if config.dynamic_binarization else x_train  # (N, D): a fresh 0/1 sample each epoch, or the data
        step_losses = torch.empty(n_steps, 3, device=dev, dtype=dtype)  # per-step batch means (loss, recon, kl)
        model.train()
        for s in range(n_steps):
            idx = perm[s * batch:(s + 1) * batch]  # (b,)
            step_losses[s] = step(x_epoch.index_select(0, idx), eps[s * batch:(s + 1) * batch])
        # Everything the host needs from this epoch, in one transfer.
        finite_steps = torch.isfinite(step_losses).all(dim=1)  # (n_steps,)
        pieces = [(step_losses.double() * sizes[:, None]).sum(0) / n,  # exact means over examples
                  torch.stack([p.isfinite().all() for p in params]).all().double().reshape(1),
                  finite_steps.double()]
        if x_val is not None:
            pieces.insert(1, _sums(model, x_val, eps_val, EVAL_BATCH_SIZE) / len(x_val))
        host = torch.cat(pieces).tolist()
        train_means, host = host[:3], host[3:]
        val_means, host = (host[:3], host[3:]) if x_val is not None else (None, host)
        weights_finite, steps_finite = host[0] == 1.0, host[1:]
        if not all(f == 1.0 for f in steps_finite):
            raise NonFiniteLossError(epoch + 1, steps_finite.index(0.0) + 1, last_good)
        if not weights_finite or (val_means is not None and not all(map(math.isfinite, val_means))):
            raise NonFiniteLossError(epoch + 1, n_steps, last_good)

        for key, value in zip(("train_loss", "train_recon", "train_kl"), train_means):
            history[key].append(value)
        if val_means is not None:
            for key, value in zip(("val_loss", "val_recon", "val_kl"), val_means):
                history[key].append(value)
        history["lr"].append(lr)
        monitored = history[loop.monitor][-1]
        improved = loop.end_epoch(epoch + 1, monitored)
        if improved and config.early_stopping:
            best_weights = export_weights(model)
        history["seconds"].append(time.perf_counter() - t0)
        if out is not None:
            kwargs = dict(train_config=config, epoch=epoch + 1, history=history, optimizer=optimizer,
                          trainer_state=loop.state())
            if improved:
                save_checkpoint(out / "best.safetensors", model, **kwargs)
            last_good = str(save_checkpoint(out / "last.safetensors", model, **kwargs))
        bar.set_postfix({"loss": f"{train_means[0]:.2f}", **({"val": f"{val_means[0]:.2f}"} if val_means else {}),
                         "lr": f"{lr:.2g}"})
        if loop.stopped_early:
            break
    bar.close()
    if config.early_stopping and best_weights is not None:
        import_weights(model, best_weights)
    return history
