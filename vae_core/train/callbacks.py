"""Callbacks: code of yours that the one trainer (`vae_core.train.loop`) calls as training goes, in every backend.

`Callback` has Keras' hook names and meanings, so a Keras user knows them and a torch user gets the same:

- `on_train_begin(logs)`, `on_train_end(logs)`: around the run (`logs` at the end: the last epoch's values);
- `on_epoch_begin(epoch, logs)`, `on_epoch_end(epoch, logs)`: `epoch` 0-based, counting from the run's first
  epoch (a resumed run starts at the epoch it resumes); `logs` at the end holds that epoch's history values under
  the history's keys (`train_loss`, `train_recon`, `train_kl`, `val_*` with validation data, `lr`, `seconds`),
  after its checkpoint is written;
- `on_train_batch_end(batch, logs)`: after optimizer step `batch` (0-based, in the epoch) with that batch's means
  {"loss", "recon", "kl"}. Called only when a callback overrides it: then the torch backend reads each step's
  losses back as it runs (a host sync per step), and the TF backend calls it for every step of a compiled block
  once the block has run. An epoch with no batch hook pays nothing.

`self.model` is the native model (a `torch.nn.Module`, a `keras.Model`), set before `on_train_begin`. Setting
`self.model.stop_training = True`, the Keras way, stops training cleanly: after `on_epoch_end`, once that epoch's
checkpoint is written; after a batch, at that step boundary (TF: at the end of the block), with a step checkpoint
as SIGTERM writes (none for a stream of batches); `fit` then calls `on_train_end` and returns the history of the
epochs that ended.

Where callbacks run: in one process, there. With several processes (torchrun), on rank 0 only, unless a callback
sets `all_ranks = True`; a stop asked on any rank is agreed by all of them at the next check (as a signal is). A
callback that raises stops the run with `CallbackError`, which names it, the hook and its error; the last
checkpoint written stays.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

Logs = dict[str, float]

HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_end")


class Callback:
    """The base of callbacks: override the hooks you need (see the module docstring)."""

    model: Any = None  # the native model being trained, set by `set_model`
    all_ranks: bool = False  # with several processes: run on every rank, not on rank 0 alone

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch of the run."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch, or a stop asked by a callback or early stopping (not after an error)."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before epoch `epoch` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After epoch `epoch` (0-based), its history values in `logs`, its checkpoint written."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After optimizer step `batch` (0-based, in the epoch), its batch means in `logs`. Called only when
        overridden."""


class CallbackError(RuntimeError):
    """A callback raised; training stopped, and the last checkpoint written stays."""


def check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    """`fit(callbacks=...)`: None, or a list or tuple of `Callback` instances."""
    if callbacks is None:
        return ()
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of vae_core.callbacks.Callback instances (or None); got "
                        f"{type(callbacks).__name__}. Wrap one callback in a list: callbacks=[cb]")
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            kind = "a class, not an instance: call it" if isinstance(cb, type) else type(cb).__name__
            raise TypeError(f"fit: callbacks[{i}] must be a vae_core.callbacks.Callback instance (Keras' own "
                            f"callbacks go to Keras' model.fit); got {kind}")
    return tuple(callbacks)


class CallbackRunner:
    """Calls the hooks of `callbacks` in order, on the ranks they run on; a stop is `model.stop_training`."""

    def __init__(self, callbacks: Sequence[Callback], model: Any, rank: int):
        self.callbacks = [cb for cb in callbacks if rank == 0 or cb.all_ranks]
        self.model = model
        # only callbacks that override the batch hook are called per step; every rank reads the step losses back
        # when any callback has one, as the ranks all-reduce them together
        self.batch = [cb for cb in self.callbacks if _has_batch_hook(cb)]
        self.per_step = any(_has_batch_hook(cb) for cb in callbacks)
        self.saved: Callable[[], str | None] = lambda: None  # the last checkpoint written, for a raising callback
        if self.callbacks:
            _set_stop(model, False)
            for cb in self.callbacks:
                cb.set_model(model)

    @property
    def stop_requested(self) -> bool:
        return bool(self.callbacks) and bool(getattr(self.model, "stop_training", False))

    def call(self, hook: str, *args: Any) -> None:
        for cb in self.batch if hook == "on_train_batch_end" else self.callbacks:
            try:
                getattr(cb, hook)(*args)
            except Exception as e:
                saved = self.saved()
                kept = f"the last checkpoint, {saved!r}, stays" if saved else "no checkpoint had been written"
                raise CallbackError(f"callback {type(cb).__name__}.{hook} raised {type(e).__name__}: {e}; training "
                                    f"stopped, and {kept}") from e

    def batches(self, first: int, losses: Any) -> None:
        """on_train_batch_end for the steps first, first + 1, ... whose (k, 3) batch means are `losses`; none after a
        stop is asked."""
        for i, (loss, recon, kl) in enumerate(losses):
            if self.stop_requested:
                return
            self.call("on_train_batch_end", first + i, {"loss": float(loss), "recon": float(recon), "kl": float(kl)})

    def end(self) -> None:
        """The run is over: `stop_training` back to False, so a later `fit` of the same model starts clean."""
        if self.callbacks:
            _set_stop(self.model, False)


def _has_batch_hook(cb: Callback) -> bool:
    return type(cb).on_train_batch_end is not Callback.on_train_batch_end


def _set_stop(model: Any, value: bool) -> None:
    try:
        model.stop_training = value
    except AttributeError:  # a model that refuses new attributes: callbacks cannot stop it
        pass
