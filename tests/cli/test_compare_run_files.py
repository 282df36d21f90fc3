"""`vae compare` writes each backend's run.json beside its checkpoints, as `vae train` does into its --out, so that the
commands on a checkpoint find the run's data without --dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vae_core.cli import main
from vae_core.cli.compare import ORDER
from vae_core.cli.options import RUN_KEYS

TINY = ["--dataset", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "256", "--epochs", "1",
        "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory) -> Path:
    """One tiny `vae compare`."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    assert main(["compare", *TINY, "--out", str(out)]) == 0
    return out


def test_compare_writes_run_json_as_train_does(backend, compare_dir):
    if backend not in ORDER:
        pytest.skip(f"vae compare trains {', '.join(ORDER)}")
    folder = compare_dir / backend
    info = json.loads((folder / "run.json").read_text())
    assert set(info) == {*RUN_KEYS, "seed", "spec", "train_config", "argv"}  # `vae train`'s keys (run_record)
    summary = json.loads((compare_dir / "compare.json").read_text())
    assert info["spec"] == summary["spec"] and info["train_config"] == summary["train_config"]
    assert (info["backend"], info["out"], info["dataset"], info["seed"]) == (backend, str(folder), "digits", 3)
    assert (info["precision"], info["device"], info["data"], info["mlflow"]) == ("fp32", "auto", None, None)
    assert info["argv"][0] == "compare" and info["argv"][1:3] == ["--dataset", "digits"]


def test_commands_on_a_compare_checkpoint_need_no_dataset(backend, compare_dir, tmp_path, capsys, monkeypatch):
    if backend not in ORDER:
        pytest.skip(f"vae compare trains {', '.join(ORDER)}")
    checkpoint = str((compare_dir / backend / "last.safetensors").resolve())
    monkeypatch.chdir(tmp_path)  # from another folder: run.json holds what finds the data
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--k", "2", "--limit", "50", "--json", "eval.json"]) == 0
    result = json.loads(Path("eval.json").read_text())
    assert result["dataset"] == "digits" and result["backend"] == backend and result["n"] == 50
    assert main(["reconstruct", checkpoint, "-n", "4", "-o", "rec.png"]) == 0
    assert Path("rec.png").stat().st_size > 0
    assert "--dataset is required" not in capsys.readouterr().err
