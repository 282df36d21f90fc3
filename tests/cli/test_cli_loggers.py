"""`vae train --tensorboard DIR --mlflow [URI]` and `vae compare --tensorboard DIR` end to end on the 8x8 digits: the
event files and the MLflow run hold the run's history, a config file's [run] table sets them, and a logger whose
write fails stops the run with exit status 1 and one line, its last checkpoint kept. The refusals (exit 2) are
cases of tests/cli/bad_inputs.py."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np

from vae_core.cli import main
from tests.conformance.test_conformance_loggers import events

TINY = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "256", "--no-progress",
        "--no-plots"]


def _scalars(folder: Path, tag: str) -> list[float]:
    return [e.value for e in events(folder).Scalars(tag)]


def _float32(values: list[float]) -> list[float]:
    return [float(np.float32(v)) for v in values]


def test_train_logs_to_tensorboard_and_mlflow(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # --mlflow alone: the file store ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert main(["train", *TINY, "--epochs", "2", "--out", "runs/d", "--tensorboard", "tb", "--mlflow"]) == 0
    history = json.loads(Path("runs/d/history.json").read_text())
    for folder, prefix in (("tb/train", "train_"), ("tb/validation", "val_")):
        assert _scalars(tmp_path / folder, "epoch_loss") == _float32(history[f"{prefix}loss"])
    assert {"samples", "reconstructions"} <= set(events(tmp_path / "tb/train").Tags()["images"])
    run_options = json.loads(Path("runs/d/run.json").read_text())
    assert run_options["tensorboard"] == str(tmp_path / "tb") and run_options["mlflow"] == ""
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("vae-core").experiment_id])
    assert run.info.run_name == "d" and run.data.params["dataset"] == "digits"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")] == history["val_loss"]
    assert {f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")} == {"checkpoints/best.safetensors"}


def test_config_file_run_table_sets_the_loggers(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    Path("run.toml").write_text('[run]\ntensorboard = "logs"\nmlflow = "store"\n')
    assert main(["train", *TINY, "--epochs", "1", "--out", "runs/c", "--config", "run.toml"]) == 0
    assert len(_scalars(tmp_path / "logs/validation", "epoch_kl")) == 1
    client = MlflowClient((tmp_path / "store").as_uri())
    assert len(client.search_runs([client.get_experiment_by_name("vae-core").experiment_id])) == 1


def test_compare_writes_each_backend_as_a_run_with_train_and_validation(tmp_path):
    from vae_core.cli.compare import ORDER

    out, log_dir = tmp_path / "cmp", tmp_path / "tb"
    assert main(["compare", "--dataset", "digits", "--epochs", "2", "--hidden-dims", "16", "--latent-dim", "2",
                 "--out", str(out), "--tensorboard", str(log_dir), "--no-progress"]) == 0
    histories = json.loads((out / "compare.json").read_text())["histories"]
    assert sorted(p.relative_to(log_dir).as_posix() for p in log_dir.glob("*/*")) == \
        sorted(f"{b}/{run}" for b in ORDER for run in ("train", "validation"))
    for backend in ORDER:
        for run, prefix in (("train", "train_"), ("validation", "val_")):
            assert _scalars(log_dir / backend / run, "epoch_loss") == _float32(histories[backend][f"{prefix}loss"])


def test_a_failing_event_write_exits_1_with_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    from vae_core.callbacks import events as event_files

    calls = {"n": 0}
    flush = event_files.EventWriter.flush

    def full_disk(self):
        calls["n"] += 1
        if calls["n"] > 4:  # the two files' first flushes, then epoch 1's two: epoch 2's fails
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(self)

    monkeypatch.setattr(event_files.EventWriter, "flush", full_disk)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "3", "--out", str(out), "--tensorboard", str(tmp_path / "tb")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("vae train: training:"), lines  # the start line, then the error
    assert lines[1].startswith("vae train: error: callback TensorBoard.on_epoch_end raised OSError") and \
        "No space left on device" in lines[1] and "last.safetensors" in lines[1], lines[1]
    from vae_core import read_checkpoint

    assert read_checkpoint(out / "last.safetensors").epoch == 2  # written before the callback ran
