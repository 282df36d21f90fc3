"""`MLflow`: a `fit` run as an MLflow run, from any backend: params, per-epoch metrics, plots and the checkpoint.

The run is written through `mlflow.tracking.MlflowClient` (no fluent, process-wide active run), to a local file
store by default (`./mlruns`, no server; `mlflow-skinny` is enough for it), or to any tracking URI.

MLflow 3 keeps the file store in maintenance mode and refuses to open one unless `MLFLOW_ALLOW_FILE_STORE=true`;
for a `file:` store this callback sets that variable when it is unset (`mlflow ui --backend-store-uri ./mlruns`
needs it too). A database store (`sqlite:///mlflow.db`) needs SQLAlchemy and alembic, which the full `mlflow`
package brings.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vae_core.callbacks import views
from vae_core.checks import caller_stacklevel, check_int
from vae_core.config import TrainConfig
from vae_core.data.dataset import import_optional
from vae_core.io.checkpoint import BEST_FILE, LAST_FILE
from vae_core.io.out_dir import check_writable_dir
from vae_core.registry import backend_of
from vae_core.train.callbacks import Callback, Logs

MLFLOW_EXTRA = 'pip install "vae-core[mlflow]"'
VIZ_EXTRA = 'pip install "vae-core[viz]"'
DEFAULT_STORE = "mlruns"  # the local file store, relative to the working folder when the callback is made
PLOTS, CHECKPOINTS = "plots", "checkpoints"  # the run's artifact folders


def local_store(tracking_uri: str | None) -> Path | None:
    """The folder of a local file store URI (`file:...`, or a plain path), None for any other scheme."""
    if tracking_uri is None:
        return None
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(tracking_uri) if parsed.scheme == "" or len(parsed.scheme) == 1 else None  # C:\... on Windows


class MLflow(Callback):
    """Log a `fit` run to MLflow, in any backend.

    At the start: the model's spec (`spec.<field>`), `config` (`train.<field>`), the backend and `params` as the
    run's params. Every epoch: each value of the history (`train_loss`, `val_loss`, ..., `lr`, `seconds`) as a
    metric at step = the epoch's number (1-based, as in history.csv). At the end (`on_train_end`), as artifacts:
    `plots/` (history.png, samples.png, and with `examples` reconstructions.png) and `checkpoints/` (the
    `checkpoint_dir`'s best.safetensors, else its last.safetensors); then the run is marked FINISHED. A run that
    stops with an error is marked FAILED at the next `fit` of this callback.

    experiment: the MLflow experiment's name (created if missing). run_name: the run's name (None: MLflow picks
    one). tracking_uri: None for $MLFLOW_TRACKING_URI if set, else the file store `./mlruns` (made absolute now);
    a path or `file:` URI for another local store; `http(s)://...` or `databricks` for a server.
    config: the run's TrainConfig, logged as params. checkpoint_dir: the `out_dir` given to `fit`, whose best
    checkpoint is logged. examples: a few fixed examples to plot reconstructions of. plots: False logs no plots.
    """

    def __init__(self, experiment: str = "vae-core", run_name: str | None = None, tracking_uri: str | None = None,
                 *, config: TrainConfig | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 examples: Any = None, params: dict[str, Any] | None = None, plots: bool = True, seed: int = 0):
        owner = "MLflow"
        _check_str(owner, "experiment", experiment, "a non-empty str, the experiment's name")
        if run_name is not None:
            _check_str(owner, "run_name", run_name, "None or a non-empty str")
        if tracking_uri is not None:
            _check_str(owner, "tracking_uri", tracking_uri,
                       "None (./mlruns) or a non-empty str: a folder, file:/..., http(s)://..., sqlite:///...")
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"{owner}.config must be None or a vae_core.TrainConfig (the one given to fit); got "
                            f"{type(config).__name__}")
        if params is not None and not (isinstance(params, dict) and all(isinstance(k, str) for k in params)):
            raise TypeError(f"{owner}.params must be None or a dict of str keys; got {params!r}"[:300])
        if not isinstance(plots, bool):
            raise TypeError(f"{owner}.plots must be True or False; got {plots!r}")
        self.experiment, self.run_name, self.config, self.params = experiment, run_name, config, dict(params or {})
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(f"{owner}.checkpoint_dir must be None or the out_dir given to fit (a str or "
                            f"os.PathLike); got {type(checkpoint_dir).__name__}")
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.examples = views.check_examples(owner, examples)
        self.plots, self.seed = plots, check_int(owner, "seed", seed, minimum=0)
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            Path(DEFAULT_STORE).resolve().as_uri()
        store = local_store(self.tracking_uri)
        if store is not None:  # a local store: checked for writes before training, made absolute
            check_writable_dir(store, f"{owner}.tracking_uri")
            self.tracking_uri = store.resolve().as_uri()
        self._tracking = import_optional("mlflow.tracking", "vae_core.callbacks.MLflow", MLFLOW_EXTRA)
        self._entities = import_optional("mlflow.entities", "vae_core.callbacks.MLflow", MLFLOW_EXTRA)
        if plots:
            import_optional("matplotlib", "vae_core.callbacks.MLflow(plots=True)", VIZ_EXTRA)
        self.run_id: str | None = None
        self.history: dict[str, list[float]] = {}

    def _client(self) -> Any:
        if local_store(self.tracking_uri) is not None:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
        return self._tracking.MlflowClient(tracking_uri=self.tracking_uri)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        client = self._client()
        if self.run_id is not None:  # an earlier fit of this callback that raised
            client.set_terminated(self.run_id, "FAILED")
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(self.experiment)
        backend = backend_of(self.model)[0]
        self.run_id = client.create_run(experiment_id, run_name=self.run_name,
                                        tags={"vae_core.backend": backend}).info.run_id
        self.history = {}
        params = {**{f"spec.{k}": v for k, v in self.model.spec.to_dict().items()},
                  **({} if self.config is None else {f"train.{k}": v for k, v in self.config.to_dict().items()}),
                  "backend": backend, **self.params}
        client.log_batch(self.run_id, params=[self._entities.Param(k, str(v)) for k, v in params.items()])

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        now = int(time.time() * 1000)
        metrics = [self._entities.Metric(k, float(v), now, epoch + 1) for k, v in (logs or {}).items()]
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._client().log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, logs: Logs | None = None) -> None:
        client, status = self._client(), "FAILED"
        try:
            with tempfile.TemporaryDirectory(prefix="vae-mlflow-") as folder:
                if self.plots and self._plot(Path(folder)):
                    client.log_artifacts(self.run_id, folder, PLOTS)
            checkpoint = self._checkpoint()
            if checkpoint is not None:
                client.log_artifact(self.run_id, str(checkpoint), CHECKPOINTS)
            status = "FINISHED"
        finally:
            client.set_terminated(self.run_id, status)
            self.run_id = None

    def _checkpoint(self) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        found = [self.checkpoint_dir / name for name in (BEST_FILE, LAST_FILE)
                 if (self.checkpoint_dir / name).is_file()]
        if not found:
            import warnings

            warnings.warn(f"MLflow: no {BEST_FILE} or {LAST_FILE} in checkpoint_dir {str(self.checkpoint_dir)!r} to "
                          f"log; pass the out_dir given to fit", UserWarning, stacklevel=caller_stacklevel())
            return None
        return found[0]

    def _plot(self, folder: Path) -> bool:
        """The plots of the run into `folder`; False when there is nothing to plot."""
        from vae_core.viz.curves import plot_history
        from vae_core.viz.grids import plot_reconstructions, plot_samples

        model, wrote = self.model, False
        if self.history.get("train_loss"):
            plot_history({backend_of(model)[0]: self.history}, folder / "history.png")
            wrote = True
        shape = model.spec.image_shape
        if shape is not None:
            plot_samples(views.samples(model, 100, self.seed), shape, folder / "samples.png")
            wrote = True
            rows = views.spec_examples("MLflow", self.examples, model)
            if rows is not None:
                shown = rows[:10]
                plot_reconstructions(shown, views.reconstructions(model, shown), shape, folder / "reconstructions.png")
        return wrote


def _check_str(owner: str, name: str, value: Any, expected: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be {expected}; got {type(value).__name__} {value!r}"[:300])
    if not value.strip():
        raise ValueError(f"{owner}.{name} must be {expected}; got {value!r}")
