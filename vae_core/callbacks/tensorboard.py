"""`TensorBoard`: a run's curves, images and latent histograms as TensorBoard event files, from any backend.

The layout is Keras' own TensorBoard callback's: the training values in `log_dir/train`, the validation values in
`log_dir/validation`, under the same tags (`epoch_loss`, `epoch_recon`, `epoch_kl`), so TensorBoard draws the two
runs of a tag in one chart. The files are written through `vae_core.callbacks.events` (the `tensorboard` package's
protocol buffers, no TensorFlow, no torch), so a torch run and a TF run write the same tags the same way.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from vae_core.callbacks import views
from vae_core.callbacks.events import EventWriter, tensorboard_modules
from vae_core.checks import caller_stacklevel, check_int
from vae_core.io.out_dir import check_writable_dir
from vae_core.train.callbacks import Callback, Logs

TRAIN_RUN, VALIDATION_RUN = "train", "validation"  # the two runs' folders under log_dir, as Keras names them
# history keys that are not a pass's means, and their tags in the train run (Keras' name for the learning rate)
OTHER_TAGS = {"lr": "epoch_learning_rate", "seconds": "epoch_seconds"}
SAMPLES_TAG, RECONSTRUCTIONS_TAG, LATENT_TAG = "samples", "reconstructions", "latent_means"
GRID_COLUMNS = 8  # images a row in the reconstructions grid


def scalar_tag(key: str) -> tuple[str, str]:
    """(run, tag) of a history key: "train_loss" -> ("train", "epoch_loss"), "val_kl" -> ("validation",
    "epoch_kl"), "lr" -> ("train", "epoch_learning_rate"), any other key k -> ("train", "epoch_k")."""
    if key.startswith("val_"):
        return VALIDATION_RUN, f"epoch_{key[4:]}"
    if key.startswith("train_"):
        return TRAIN_RUN, f"epoch_{key[6:]}"
    return TRAIN_RUN, OTHER_TAGS.get(key, f"epoch_{key}")


class TensorBoard(Callback):
    """Log a `fit` run for TensorBoard (`tensorboard --logdir LOG_DIR`), in any backend.

    Every epoch, at step = the epoch's number (1-based, as in history.csv; Keras' own callback counts from 0):
    each value of the history under `scalar_tag(key)` (the training means in `log_dir/train`, the validation
    means in `log_dir/validation`, under one tag each: `epoch_loss`, `epoch_recon`, `epoch_kl`; the learning
    rate as `epoch_learning_rate` and the epoch's seconds as `epoch_seconds` in `train`). The events are flushed to
    the file at each epoch's end, so a killed run keeps its curves.

    At the run's first epoch, every `images_every` epochs after it (epochs 1, 1 + N, 1 + 2N, ...) and at the end of
    the run (the model `fit` returns), in `log_dir/train`: the image grid `samples` (`n_samples` draws from the
    prior, the same z each time, fixed by `seed`) and, with `examples`, `reconstructions` (the first
    `n_reconstructions` examples, each above its reconstruction) and the histograms of the examples' posterior means
    (`latent_means`: all dims together; `latent_means/z<i>`: dim i). Grids need `model.spec.image_shape`.

    log_dir: the folder (created when training starts; checked for writes now). images_every: epochs between the
    image grids and histograms, 0 for none. examples: None (samples only) or a few fixed examples of the data,
    (N, D) rows or images (e.g. `data.x_test[:500]`). A resumed run continues the curves: its first step replaces
    whatever a stopped run had logged from there on.
    """

    def __init__(self, log_dir: str | os.PathLike, *, images_every: int = 5, examples: Any = None,
                 n_samples: int = 64, n_reconstructions: int = 8, seed: int = 0):
        owner = "TensorBoard"
        self.log_dir = check_writable_dir(log_dir, f"{owner}.log_dir").absolute()  # as of now, whatever chdir follows
        self.images_every = check_int(owner, "images_every", images_every, minimum=0,
                                      fix="0 writes no images or histograms; N writes them every N epochs")
        self.examples = views.check_examples(owner, examples)
        self.n_samples = check_int(owner, "n_samples", n_samples, minimum=0, fix="0 draws no samples")
        self.n_reconstructions = check_int(owner, "n_reconstructions", n_reconstructions, minimum=0,
                                           fix="0 shows no reconstructions")
        self.seed = check_int(owner, "seed", seed, minimum=0)
        # the package is there: an ImportError naming the extra now, not mid-run
        tensorboard_modules("vae_core.callbacks.TensorBoard")
        self.writers: dict[str, EventWriter] = {}
        self._rows: np.ndarray | None = None  # the examples as the model's rows, once the model is known
        self._last_epoch: int | None = None  # the last epoch logged (1-based)
        self._imaged: int | None = None  # the last epoch whose images were written (1-based)
        self._started = False

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.close()  # a writer left open by an earlier fit of this callback that raised
        self._rows = views.spec_examples("TensorBoard", self.examples, self.model)
        if self.images_every and self.model.spec.image_shape is None and self.n_samples + self.n_reconstructions:
            warnings.warn("TensorBoard: the model's spec has no image_shape, so no image grids are written (the "
                          "latent histograms are); build it with VAESpec(image_shape=(H, W)) to see them",
                          UserWarning, stacklevel=caller_stacklevel())
        self._last_epoch = self._imaged = None
        self._started = False

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        step = epoch + 1
        if not self._started:  # a resumed run replaces what a stopped one logged from its first step on
            for run in (TRAIN_RUN, VALIDATION_RUN):
                if any(scalar_tag(key)[0] == run for key in logs or {}):
                    self._writer(run).restart(step)
            self._started = True
        for key, value in (logs or {}).items():
            run, tag = scalar_tag(key)
            self._writer(run).scalar(tag, value, step)
        if self.images_every and (step - 1) % self.images_every == 0:
            self._log_model(step)
        self._last_epoch = step
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        try:
            if self.images_every and self._last_epoch is not None and self._imaged != self._last_epoch:
                self._log_model(self._last_epoch)
                self._writer(TRAIN_RUN).flush()
        finally:
            self.close()

    def close(self) -> None:
        """Close the event files (`on_train_end` does); a later epoch opens new ones."""
        writers, self.writers = self.writers, {}
        for writer in writers.values():
            writer.close()

    def _writer(self, run: str) -> EventWriter:
        if run not in self.writers:
            self.writers[run] = EventWriter(self.log_dir / run)
        return self.writers[run]

    def _log_model(self, step: int) -> None:
        """The image grids and the latent histograms of the model as it is now, at `step`."""
        model, writer = self.model, self._writer(TRAIN_RUN)
        shape = model.spec.image_shape
        if shape is not None and self.n_samples:
            ncols = int(np.ceil(np.sqrt(self.n_samples)))
            writer.image(SAMPLES_TAG, views.grid(views.samples(model, self.n_samples, self.seed), shape, ncols), step)
        if self._rows is not None:
            shown = self._rows[:self.n_reconstructions]
            if shape is not None and len(shown):
                ncols = min(GRID_COLUMNS, len(shown))
                rows = views.reconstruction_rows(shown, views.reconstructions(model, shown), ncols)
                writer.image(RECONSTRUCTIONS_TAG, views.grid(rows, shape, ncols), step)
            mu = views.latent_means(model, self._rows)  # (N, L)
            writer.histogram(LATENT_TAG, mu, step)
            for i in range(mu.shape[1]):
                writer.histogram(f"{LATENT_TAG}/z{i}", mu[:, i], step)
        self._imaged = step

