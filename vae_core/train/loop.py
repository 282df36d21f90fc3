"""The training loop of every backend, written once.

`run(backend, spec, args)` trains through a `vae_core.train.backend.TrainerBackend` and owns the policy:
- the epochs, each in the order `epoch_permutation(seed, epoch, N)` (a stream of batches: the order it yields, an
  interrupted epoch restarting from its first batch), with `epoch_noise` when shared_noise is on
  and a fresh 0/1 sample per epoch with dynamic binarization: all functions of (seed, epoch), so a resumed run
  repeats an uninterrupted one;
- the history (`vae_core.train.history.HISTORY_KEYS`), and `last.safetensors` every epoch and `best.safetensors` when
  the monitored loss improves;
- step checkpoints: with `TrainConfig.checkpoint_every_steps`, `last.safetensors` also every N optimizer steps,
  holding the position inside the epoch (its JSON `trainer_state["position"]`: the epoch, the steps done, and
  their batch losses, so the epoch's means come out exactly as without the interruption);
- preemption: SIGTERM and SIGINT stop at the next step boundary with a step checkpoint, then raise
  `TrainingInterrupted` (`vae_core.train.interrupt`); one run per out_dir (`vae_core.io.run_lock`);
- resume (`vae_core.train.resume.open_resume`: what is restored, trimmed or refused), mid-epoch from a step checkpoint;
- a run folder is never replaced by accident: `check_fit_arguments` refuses an out_dir that holds a checkpoint unless
  resume_from or overwrite is given, and `overwrite` removes the old checkpoints here (`vae_core.io.run_files`);
- the LR plateau and early stopping (`vae_core.train.state.TrainerState`, stored as the checkpoint's JSON);
- the non-finite stop: `NonFiniteLossError` at the first non-finite step, before any later checkpoint is written;
- progress (one tqdm bar counting optimizer steps, on stderr) and messages;
- callbacks (`vae_core.train.callbacks`): Keras' hooks, and a stop asked by one (`model.stop_training = True`),
  agreed by every process as a signal is, but ending the run cleanly: a checkpoint, the history returned;
- the processes of a distributed run (`vae_core.train.world`, the backend's `world`): every rank agrees on each stop
  decision and on the epoch times, so every rank returns the same history; rank 0 alone holds the run lock,
  writes checkpoints and shows progress. A checkpoint's position counts global steps of the global batch, so it
  resumes on any number of processes.

`check_fit_arguments` makes the checks every backend's `fit` makes at its boundary.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import numpy as np

from vae_core.io.checkpoint import BEST_FILE, LAST_FILE, Checkpoint, CheckpointError, write_checkpoint
from vae_core.io.run_files import CHECKPOINT_FILES, remove_run
from vae_core.io.run_lock import run_lock
from vae_core.model.spec import VAESpec
from vae_core.train.arguments import FitArguments
from vae_core.train.backend import TrainerBackend
from vae_core.train.callbacks import CallbackRunner
from vae_core.train.history import TRAIN_KEYS, VAL_KEYS, NonFiniteLossError, empty_history
from vae_core.train.interrupt import StopSignals, TrainingInterrupted
from vae_core.train.resume import open_resume
from vae_core.train.schedule import epoch_binarized, epoch_noise, epoch_permutation, eval_noise
from vae_core.train.state import TrainerState
from vae_core.train.world import SINGLE, World


def run(backend: TrainerBackend, spec: VAESpec, args: FitArguments) -> dict[str, list[float]]:
    """Train through `backend`; returns the history. Resume warnings point at the caller of the backend's fit.

    With an out_dir the run holds the folder's run lock (`vae_core.io.run_lock`); with `overwrite` the checkpoints
    of the run it replaces are removed under that lock, before the first step (`vae_core.io.run_files`). SIGTERM or
    SIGINT stops it at the next step boundary with a checkpoint of that step
    (`vae_core.train.interrupt.TrainingInterrupted`).
    """
    world: World = getattr(backend, "world", SINGLE)  # a backend without one trains in one process
    writer = args.out is not None and world.rank == 0
    with run_lock(args.out) if writer else contextlib.nullcontext(), StopSignals() as signals:
        trainer = _Run(backend, spec, args, _AgreedStop(signals, world))
        if writer and args.overwrite:  # every check has passed: the replaced run's checkpoints go before step 1
            remove_run(args.out, CHECKPOINT_FILES)
        return trainer.train()


AGREE_EVERY = 8  # with several processes, a stop is agreed on before every 8th step (one small all-reduce)
CALLBACK_STOP = 1  # a stop asked by a callback, agreed as a signal number: below every real one, so a signal wins


class _CallbackStop(Exception):
    """A callback asked to stop inside an epoch: `train` ends the run cleanly."""


class _AgreedStop:
    """Whether a stop signal arrived; with several processes, whether any of them received one, agreed on by a
    collective (a max over the ranks), so every rank takes the same decision and `requested` is the signal on every
    rank. All processes make the same calls in the same order (the trainer's control flow is the same on every
    rank).

    Calling it agrees at once: the trainer's own checks, at the ends of runs of steps and of epochs.
    `between_steps` is the backend's check before each step: with several processes it agrees before every
    AGREE_EVERY-th step only, and says no in between."""

    def __init__(self, signals: StopSignals, world: World):
        self.signals, self.world, self.requested, self.steps = signals, world, None, 0
        self.callbacks: CallbackRunner | None = None  # whose `stop_requested` counts as a local stop

    @property
    def by_callback(self) -> bool:
        """The agreed stop is a callback's (end cleanly), not a signal's (raise TrainingInterrupted)."""
        return self.requested == CALLBACK_STOP

    def __call__(self) -> bool:
        if self.requested is None:
            local = self.signals.requested if self.signals() else \
                CALLBACK_STOP if self.callbacks is not None and self.callbacks.stop_requested else None
            if self.world.size > 1:
                local = int(self.world.max(np.array([local or 0]))[0]) or None  # the largest signal number
            self.requested = local
        return self.requested is not None

    def between_steps(self) -> bool:
        if self.requested is None and self.world.size > 1:
            self.steps += 1
            if self.steps % AGREE_EVERY:
                return False
        return self()


class _Run:
    """The state of one `run`: the policy state, the history, the position, and where checkpoints go."""

    def __init__(self, backend: TrainerBackend, spec: VAESpec, args: FitArguments, signals: _AgreedStop):
        self.backend, self.spec, self.args, self.config, self.signals = backend, spec, args, args.config, signals
        self.world = signals.world
        self.writes = args.out is not None and self.world.rank == 0  # rank 0 writes the checkpoints
        self.monitor = "val_loss" if args.val is not None else "train_loss"
        self.state, self.history = TrainerState(self.config.learning_rate, self.monitor), empty_history()
        self.start_epoch, self.best_weights, self.last_good, self.position = 0, None, None, None
        # a stream of batches (`vae_core.data.stream.BatchStream`) keeps its own order and restarts an interrupted
        # epoch; every other training set is read in the trainer's order and resumes mid-epoch
        self.sequential = bool(getattr(args.train, "sequential", False))
        if self.sequential and self.world.size > 1:
            raise ValueError(f"train is a stream of batches ({args.train!r}), which this run's {self.world.size} "
                             f"processes would each read whole, in orders of their own; a data-parallel run needs "
                             f"a training set the trainer shards: pass the map-style dataset behind it (e.g. "
                             f"loader.dataset) or an array")
        self.callbacks = CallbackRunner(args.callbacks, backend.model, self.world.rank)
        self.callbacks.saved = lambda: self.last_good
        signals.callbacks = self.callbacks
        n, batch = len(args.train), self.config.batch_size
        self.n_steps = -(-n // batch)
        self.rows = np.minimum(batch, n - batch * np.arange(self.n_steps))  # (n_steps,) examples per step
        if args.resume_from is not None:
            self._resume()

    def _resume(self) -> None:
        point = open_resume(self.args.resume_from, self.spec, self.config, self.monitor)
        self.backend.import_weights(point.checkpoint.weights)
        if point.checkpoint.adam is not None:
            self.backend.import_adam(point.checkpoint.adam)
        self.start_epoch, self.history, self.state, self.best_weights = \
            point.epoch, point.history, point.state, point.best_weights
        self.last_good = str(self.args.resume_from)
        self.position = check_position(point.checkpoint.trainer_state.get("position"), point.epoch,
                                       len(self.args.train), self.config.batch_size, self.args.resume_from)
        if self.position is not None and self.sequential:
            raise CheckpointError(
                f"resume_from={str(self.args.resume_from)!r} stopped at step {self.position['step']} of epoch "
                f"{point.epoch + 1} (a step checkpoint), but train is a stream of batches, which cannot be read from "
                f"the middle of an epoch; resume it with the training set as an array or a map-style dataset (e.g. "
                f"loader.dataset), or from a checkpoint written at the end of an epoch")

    def train(self) -> dict[str, list[float]]:
        from tqdm.auto import tqdm

        config, args, backend = self.config, self.args, self.backend
        backend.set_data(args.train, args.val,
                         None if args.val is None else eval_noise(config.seed, len(args.val), self.spec.latent_dim))
        epochs = range(0) if self.state.stopped_early else range(self.start_epoch, config.epochs)
        done_before = 0 if self.position is None else self.position["step"]
        bar = tqdm(total=max(0, len(epochs) * self.n_steps - done_before), desc=f"{backend.name} fit", unit="step",
                   disable=not args.progress or self.world.rank != 0, dynamic_ncols=True, file=sys.stderr)
        try:
            self.callbacks.call("on_train_begin", {})
            for epoch in epochs:  # 0-based here and in the callbacks; 1-based in history, checkpoints and errors
                self.callbacks.call("on_epoch_begin", epoch, {})
                train_means, seconds = self._train_epoch(epoch, bar)
                val_means = None if args.val is None else backend.validate()
                if val_means is not None and not np.isfinite(val_means).all():
                    raise NonFiniteLossError(epoch + 1, self.n_steps, self.last_good, phase="validation")
                self._end_epoch(epoch, train_means, val_means, seconds)
                self.callbacks.call("on_epoch_end", epoch, self._logs())
                bar.set_postfix({"epoch": epoch + 1, "loss": f"{train_means[0]:.2f}",
                                 **({"val": f"{val_means[0]:.2f}"} if val_means else {}),
                                 "lr": f"{self.history['lr'][-1]:.2g}"})
                if self.signals():
                    if self.signals.by_callback:
                        break
                    raise TrainingInterrupted(self.signals.requested, epoch + 1, self.n_steps, self._saved())
                if self.state.stopped_early:
                    bar.close()
                    if args.progress and self.world.rank == 0:
                        print(self.state.stop_message(epoch + 1), file=sys.stderr)
                    break
        except _CallbackStop:  # asked inside an epoch: the epochs that ended are the history
            pass
        finally:
            bar.close()
            self.callbacks.end()
        if config.early_stopping and self.best_weights is not None:  # as the seed's loop: end on the best weights
            backend.import_weights(self.best_weights)
        self.callbacks.call("on_train_end", self._logs())
        return self.history

    def _logs(self) -> dict[str, float]:
        """The last epoch's history values, under the history's keys (empty before the first epoch ends)."""
        return {key: values[-1] for key, values in self.history.items() if values}

    def _train_epoch(self, epoch: int, bar: Any) -> tuple[np.ndarray, float]:
        """The epoch's optimizer steps, from a resumed position if there is one; returns the (3,) exact means over
        the examples and the seconds it took."""
        config, n, every = self.config, len(self.args.train), self.config.checkpoint_every_steps
        step, losses, seconds = 0, np.zeros((0, 3)), 0.0
        if self.position is not None:  # continue a step checkpoint of this epoch
            step, losses, seconds = self.position["step"], np.asarray(self.position["losses"], np.float64), \
                float(self.position["seconds"])
            self.position = None
        start = time.perf_counter()
        self.backend.set_learning_rate(self.state.lr)
        images = epoch_binarized(self.args.train, config.seed, epoch) if config.dynamic_binarization else None
        eps = epoch_noise(config.seed, epoch, n, self.spec.latent_dim) if self.args.shared_noise else None
        order = np.arange(n) if self.sequential else epoch_permutation(config.seed, epoch, n)  # (N,)
        self.backend.begin_epoch(epoch, order, images, eps)
        while step < self.n_steps:
            done = epoch * self.n_steps + step  # optimizer steps of the run so far
            # up to the next step checkpoint (every `every` steps of the run), or to the end of the epoch
            stop = self.n_steps if every is None else \
                min(self.n_steps, (done // every + 1) * every - epoch * self.n_steps)
            # none when a stop came first
            result = self.backend.train_steps(step, stop, self.signals.between_steps, self._on_steps(step, bar),
                                              self.callbacks.per_step)
            finite = np.isfinite(result.losses).all(axis=1)  # (k,)
            if not finite.all():
                raise NonFiniteLossError(epoch + 1, step + int(np.argmin(finite)) + 1, self.last_good)
            step += len(result.losses)
            if step == 0 and self.signals.by_callback:
                raise _CallbackStop
            if step == 0:  # stopped before this epoch's first step: the previous epoch's end is the position
                raise TrainingInterrupted(self.signals.requested, epoch, self.n_steps if epoch else 0, self._saved())
            losses = np.concatenate([losses, result.losses])
            if not result.weights_finite:
                raise NonFiniteLossError(epoch + 1, step, self.last_good)
            if 0 < step < self.n_steps and not self.sequential and \
                    (self.signals() or (every and (epoch * self.n_steps + step) % every == 0)):
                self._write_step_checkpoint(epoch, step, losses, seconds + time.perf_counter() - start)
            if step < self.n_steps and self.signals():
                if self.signals.by_callback:
                    raise _CallbackStop
                raise TrainingInterrupted(self.signals.requested, epoch + 1, step, self._saved(),
                                          restarts_epoch=self.sequential)
        means = (losses * self.rows[:, None]).sum(axis=0) / n  # (3,) exact means: each example counts once
        seconds += time.perf_counter() - start
        return means, float(self.world.max(np.array([seconds]))[0])  # the slowest process's time, on every rank

    def _on_steps(self, first: int, bar: Any) -> Any:
        """The backend's on_steps for a run of steps from `first`: the progress bar, and the batch hooks."""
        done = first

        def on_steps(k: int, losses: np.ndarray | None) -> None:
            nonlocal done
            bar.update(k)
            if self.callbacks.per_step and losses is not None:
                self.callbacks.batches(done, losses)
            done += k

        return on_steps

    def _saved(self) -> str | None:
        """The checkpoint that holds the current position, with an out_dir: the last one written, or the one this
        run resumed from when it has not written any yet (a stop is only seen after a write or before any step)."""
        return self.last_good if self.args.out is not None else None

    def _checkpoint(self, epoch: int, trainer_state: dict[str, Any]) -> Checkpoint:
        return Checkpoint(spec=self.spec, weights=self.backend.export_weights(), train_config=self.config,
                          epoch=epoch, history=self.history, adam=self.backend.export_adam(),
                          trainer_state=trainer_state, backend=self.backend.name)

    def _write(self, name: str, ckpt: Checkpoint) -> str:
        """Write `ckpt` as out_dir/name on rank 0; every rank returns its path."""
        path = self.args.out / name
        return str(write_checkpoint(path, ckpt) if self.writes else path)

    def _write_step_checkpoint(self, epoch: int, step: int, losses: np.ndarray, seconds: float) -> None:
        if self.args.out is None:
            return
        position = {"epoch": epoch + 1, "step": step, "n_examples": len(self.args.train),
                    "batch_size": self.config.batch_size, "losses": losses.tolist(), "seconds": seconds}
        ckpt = self._checkpoint(epoch, {**self.state.to_dict(), "position": position})
        self.last_good = self._write(LAST_FILE, ckpt)

    def _end_epoch(self, epoch: int, train_means: np.ndarray, val_means: Any, seconds: float) -> None:
        _append(self.history, TRAIN_KEYS, train_means)
        if val_means is not None:
            _append(self.history, VAL_KEYS, val_means)
        self.history["lr"].append(self.state.lr)
        improved = self.state.update(epoch + 1, self.history[self.monitor][-1], self.config)
        if improved and self.config.early_stopping:
            self.best_weights = self.backend.export_weights()
        self.history["seconds"].append(seconds)
        if self.args.out is not None:
            ckpt = self._checkpoint(epoch + 1, self.state.to_dict())
            if improved:
                self._write(BEST_FILE, ckpt)
            self.last_good = self._write(LAST_FILE, ckpt)


def check_position(position: Any, epoch: int, n_examples: int, batch_size: int, path: Any) -> dict[str, Any] | None:
    """A step checkpoint's position inside epoch `epoch + 1`, if it is one, checked against this run's data."""
    if position is None:
        return None
    keys = ("epoch", "step", "n_examples", "batch_size", "losses", "seconds")
    bad = not isinstance(position, dict) or any(k not in position for k in keys) or position["epoch"] != epoch + 1
    if not bad:
        steps = position["step"]
        try:
            losses = np.asarray(position["losses"], dtype=np.float64)
        except (TypeError, ValueError):  # not a table of numbers
            losses = np.zeros(0)
        bad = (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or losses.shape != (steps, 3)
               or not np.isfinite(losses).all() or not isinstance(position["seconds"], (int, float)))
    if bad:
        shown = repr(position if not isinstance(position, dict) else {k: position.get(k) for k in keys[:4]})[:200]
        raise CheckpointError(f"resume_from={str(path)!r}: its trainer_state position ({shown}) does not describe a "
                              f"step of epoch {epoch + 1} with its batch losses; the file was not written by this "
                              f"trainer, or was edited")
    if (position["n_examples"], position["batch_size"]) != (n_examples, batch_size):
        raise CheckpointError(
            f"resume_from={str(path)!r} stopped at step {position['step']} of epoch {epoch + 1} of a run with "
            f"{position['n_examples']} training examples and batch_size {position['batch_size']}, but this run has "
            f"{n_examples} and {batch_size}; resume mid-epoch with the same data and batch size")
    if position["step"] >= -(-n_examples // batch_size):
        raise CheckpointError(f"resume_from={str(path)!r}: its position, step {position['step']} of epoch "
                              f"{epoch + 1}, is past the epoch's {-(-n_examples // batch_size)} steps")
    return position


def _append(history: dict[str, list[float]], keys: tuple[str, ...], values: Any) -> None:
    for key, value in zip(keys, values):
        history[key].append(float(value))
