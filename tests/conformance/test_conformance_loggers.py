"""The built-in loggers (`vae_core.callbacks.TensorBoard`, `vae_core.callbacks.MLflow`), one test body for every
backend (the `backend` argument, tests/conftest.py): what the event files and the MLflow run hold, read back with
tensorboard's EventAccumulator and MlflowClient, against the history `fit` returned. The refusals are cases of
tests/cli/bad_inputs.py; the flags of `vae train` and `vae compare` are in tests/cli/test_cli_loggers.py."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, fit
from vae_core.callbacks import Callback, MLflow, TensorBoard
from vae_core.data import load_dataset
from vae_core.registry import BACKENDS
from tests.conftest import missing_framework

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=3, image_shape=(8, 8))
CONFIG = TrainConfig(epochs=4, batch_size=256)
IMAGE_STEPS = [1, 3, 4]  # images_every=2: epochs 1 and 3, then the run's end (epoch 4)
TRAIN_TAGS = {"epoch_loss", "epoch_recon", "epoch_kl", "epoch_learning_rate", "epoch_seconds"}
VALIDATION_TAGS = {"epoch_loss", "epoch_recon", "epoch_kl"}
_RUNS: dict[str, tuple[Path, dict[str, list[float]]]] = {}  # backend -> (log_dir, history), one fit per process


def events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def logged_run(backend: str, root: Path) -> tuple[Path, dict[str, list[float]]]:
    """A 4-epoch run of `backend` on the digits with a TensorBoard callback: (its log_dir, the history)."""
    if backend not in _RUNS:
        data = load_dataset("digits")
        log_dir = root / backend
        callback = TensorBoard(log_dir, images_every=2, examples=data.x_test[:40], n_samples=16)
        history = fit(build(backend, SPEC, seed=0), data.x_train, data.x_test, CONFIG, progress=False,
                      callbacks=[callback])
        _RUNS[backend] = (log_dir, history)
    return _RUNS[backend]


@pytest.fixture(scope="module")
def log_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tensorboard")


def test_tensorboard_scalars_are_the_history_as_two_runs_under_keras_tags(backend, log_root):
    log_dir, history = logged_run(backend, log_root)
    train, validation = events(log_dir / "train"), events(log_dir / "validation")
    assert set(train.Tags()["scalars"]) == TRAIN_TAGS and set(validation.Tags()["scalars"]) == VALIDATION_TAGS
    for acc, prefix in ((train, "train_"), (validation, "val_")):
        for term in ("loss", "recon", "kl"):
            logged = acc.Scalars(f"epoch_{term}")
            assert [e.step for e in logged] == [1, 2, 3, 4]  # the epoch's number, as in history.csv
            # simple_value is float32, as TensorBoard stores every scalar
            assert [e.value for e in logged] == [float(np.float32(v)) for v in history[f"{prefix}{term}"]]
    for tag, key in (("epoch_learning_rate", "lr"), ("epoch_seconds", "seconds")):
        assert [e.value for e in train.Scalars(tag)] == [float(np.float32(v)) for v in history[key]]


def test_tensorboard_images_and_latent_histograms_at_their_epochs(backend, log_root):
    from PIL import Image

    log_dir, _ = logged_run(backend, log_root)
    train = events(log_dir / "train")
    assert set(train.Tags()["images"]) == {"samples", "reconstructions"}
    assert set(train.Tags()["histograms"]) == {"latent_means", "latent_means/z0", "latent_means/z1", "latent_means/z2"}
    for tag in ("samples", "reconstructions"):
        assert [e.step for e in train.Images(tag)] == IMAGE_STEPS
    # 16 samples as 4 x 4 cells and 8 examples above their reconstructions, 8x8 digits scaled 4x, 1-pixel gaps
    sizes = {tag: Image.open(io.BytesIO(train.Images(tag)[-1].encoded_image_string)).size
             for tag in ("samples", "reconstructions")}
    assert sizes == {"samples": (4 * 33, 4 * 33), "reconstructions": (8 * 33, 2 * 33)}
    pooled = train.Histograms("latent_means")
    assert [e.step for e in pooled] == IMAGE_STEPS
    assert all(e.histogram_value.num == 40 * 3 for e in pooled)  # 40 examples x 3 latent dims
    assert [e.histogram_value.num for e in train.Histograms("latent_means/z1")] == [40] * 3


def test_tensorboard_changes_nothing_in_the_run(backend, log_root):
    _, history = logged_run(backend, log_root)
    data = load_dataset("digits")
    plain = fit(build(backend, SPEC, seed=0), data.x_train, data.x_test, CONFIG, progress=False)
    assert {k: v for k, v in history.items() if k != "seconds"} == {k: v for k, v in plain.items() if k != "seconds"}


def test_tensorboard_event_files_of_every_backend_carry_the_same_tags(log_root):
    available = [name for name in BACKENDS if missing_framework(name) is None]
    if len(available) < 2:
        pytest.skip("needs two backends installed")
    tags = set()
    for backend in available:
        log_dir, _ = logged_run(backend, log_root)
        tags.add(tuple((run, kind, tuple(sorted(names))) for run in ("train", "validation")
                       for kind, names in sorted(events(log_dir / run).Tags().items())
                       if isinstance(names, list)))
    assert len(tags) == 1


class KeepCheckpoint(Callback):
    """Copies out_dir/last.safetensors after epoch `epoch` (0-based) to `to`: the checkpoint a stopped run left."""

    def __init__(self, out: Path, epoch: int, to: Path):
        self.out, self.epoch, self.to = out, epoch, to

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            shutil.copy(self.out / "last.safetensors", self.to)


def test_tensorboard_resumed_run_replaces_what_a_stopped_run_logged_after_its_checkpoint(backend, tmp_path):
    data = load_dataset("digits")
    x, config, log_dir, kept = data.x_train[:300], TrainConfig(epochs=3, batch_size=100), tmp_path / "tb", \
        tmp_path / "epoch2.safetensors"
    # a run logged 3 epochs, then stopped; the run resumed from its epoch-2 checkpoint logs epochs 3 and 4 again
    fit(build(backend, SPEC, seed=0), x, data.x_test, config, out_dir=tmp_path / "a", progress=False,
        callbacks=[TensorBoard(log_dir, images_every=0), KeepCheckpoint(tmp_path / "a", 1, kept)])
    resumed = fit(build(backend, SPEC), x, data.x_test, config.replace(epochs=4), progress=False,
                  resume_from=kept, callbacks=[TensorBoard(log_dir, images_every=0)])
    logged = events(log_dir / "validation").Scalars("epoch_loss")
    assert [e.step for e in logged] == [1, 2, 3, 4]
    assert [e.value for e in logged[2:]] == [float(np.float32(v)) for v in resumed["val_loss"][2:]]


def test_mlflow_run_holds_params_metrics_plots_and_the_best_checkpoint(backend, tmp_path):
    from mlflow.tracking import MlflowClient

    data = load_dataset("digits")
    store, out = tmp_path / "mlruns", tmp_path / "run"
    config = TrainConfig(epochs=2, batch_size=256)
    callback = MLflow("tests", run_name=f"digits-{backend}", tracking_uri=str(store), config=config,
                      checkpoint_dir=out, examples=data.x_test[:10], params={"dataset": "digits"})
    history = fit(build(backend, SPEC, seed=0), data.x_train, data.x_test, config, out_dir=out, progress=False,
                  callbacks=[callback])
    client = MlflowClient(store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.run_name == f"digits-{backend}" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["backend"] == backend and params["dataset"] == "digits"
    assert params["spec.latent_dim"] == "3" and params["train.epochs"] == "2" and params["train.batch_size"] == "256"
    for key, values in history.items():
        logged = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in sorted(logged, key=lambda m: m.step)] == list(enumerate(values, 1))
    files = {f.path for folder in ("plots", "checkpoints") for f in client.list_artifacts(run.info.run_id, folder)}
    assert files == {"plots/history.png", "plots/samples.png", "plots/reconstructions.png",
                     "checkpoints/best.safetensors"}
    local = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.safetensors", str(tmp_path / "dl")))
    assert local.read_bytes() == (out / "best.safetensors").read_bytes()
