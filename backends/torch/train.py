"""`fit` and `evaluate` for the torch VAE.

The loop keeps the data as one tensor on the device, takes each epoch's order from
`vae_core.training.epoch_permutation` (indices gathered on the device), keeps the per-step losses on the
device and synchronises with the host once per epoch. Data order and noise are functions of
(config.seed, epoch), so a resumed run repeats an uninterrupted one bit for bit.

The LR plateau, early stopping and the best loss are `vae_core.trainer_state.TrainerState`, the one state machine
of both backends, stored as the checkpoint's JSON `trainer_state`; this loop applies its `lr` to Adam every epoch
and restores the best weights at the end when early stopping is on (as the seed's loop does).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from backends.torch.losses import negative_elbo, per_example
from backends.torch.model import VAE
from backends.torch.optim import make_optimizer
from backends.torch.weights import export_weights, import_adam, import_weights
from vae_core.checkpoint import BEST_FILE, LAST_FILE, save_checkpoint
from vae_core.config import TrainConfig
from vae_core.resume import open_resume
from vae_core.trainer_state import TrainerState
from vae_core.training import (NonFiniteLossError, check_data, check_fit_inputs, check_fp64_run, empty_history,
                               epoch_binarized, epoch_noise, epoch_permutation, eval_noise, prepare_out_dir)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp64")
EVAL_BATCH_SIZE = 1000  # batch size of the validation pass inside fit (and evaluate's default)


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
        optimizer = make_optimizer(model, config)
        state = TrainerState(config.learning_rate, "val_loss" if val is not None else "train_loss")
        history, start_epoch, last_good = empty_history(), 0, None
        best_weights: dict[str, np.ndarray] | None = None
        if resume_from is not None:
            start_epoch, history, state, best_weights = _resume(model, optimizer, Path(resume_from), config,
                                                                state.monitor)
            last_good = str(resume_from)
        history = _train(model, optimizer, state, config, train, val, history, start_epoch, best_weights, out,
                         last_good, shared_noise, dev, precision, progress, compile)
    return history


def _resume(model: VAE, optimizer: torch.optim.Adam, path: Path, config: TrainConfig, monitor: str
            ) -> tuple[int, dict[str, list[float]], TrainerState, dict[str, np.ndarray] | None]:
    point = open_resume(path, model.spec, config, monitor)
    import_weights(model, point.checkpoint.weights)
    if point.checkpoint.adam is not None:
        import_adam(model, optimizer, point.checkpoint.adam)
    return point.epoch, point.history, point.state, point.best_weights


def _train(model: VAE, optimizer: torch.optim.Adam, state: TrainerState, config: TrainConfig, train: np.ndarray,
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

    epochs = range(start_epoch, config.epochs) if not state.stopped_early else range(0)
    bar = tqdm(epochs, desc="torch fit", unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in bar:  # 0-based here; 1-based in history, checkpoints and errors
        t0 = time.perf_counter()
        lr = state.lr
        for group in optimizer.param_groups:  # the state machine sets the LR; the optimizer applies it
            group["lr"] = lr
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
        improved = state.update(epoch + 1, history[state.monitor][-1], config)
        if improved and config.early_stopping:
            best_weights = export_weights(model)
        history["seconds"].append(time.perf_counter() - t0)
        if out is not None:
            kwargs = dict(train_config=config, epoch=epoch + 1, history=history, optimizer=optimizer,
                          trainer_state=state.to_dict())
            if improved:
                save_checkpoint(out / BEST_FILE, model, **kwargs)
            last_good = str(save_checkpoint(out / LAST_FILE, model, **kwargs))
        bar.set_postfix({"loss": f"{train_means[0]:.2f}", **({"val": f"{val_means[0]:.2f}"} if val_means else {}),
                         "lr": f"{lr:.2g}"})
        if state.stopped_early:
            bar.close()
            if progress:
                print(state.stop_message(epoch + 1), file=sys.stderr)
            break
    bar.close()
    if config.early_stopping and best_weights is not None:
        import_weights(model, best_weights)
    return history
