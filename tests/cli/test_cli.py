"""The `vae` command: every subcommand on a tiny model of the 8x8 digits, in-process except where noted."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.stop_signals import StopAfterChecks
from vae_core import read_checkpoint
from vae_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "digits", "--hidden-dims", "32", "--latent-dim", "2", "--batch-size", "256",
        "--no-progress"]


def train(out: Path, *extra: str, epochs: int = 2) -> int:
    return main(["train", "--out", str(out), "--epochs", str(epochs), *TINY, *extra])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train(out, "--no-plots") == 0
    return out


def test_train_writes_checkpoints_history_and_run_options(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"last.safetensors", "best.safetensors", "run.json", "history.json", "history.csv"} <= names
    ckpt = read_checkpoint(run_dir / "last.safetensors")
    assert ckpt.epoch == 2 and ckpt.spec.latent_dim == 2 and ckpt.spec.hidden_dims == (32,)
    assert ckpt.spec.image_shape == (8, 8) and ckpt.train_config.batch_size == 256
    history = json.loads((run_dir / "history.json").read_text())
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,") and len(rows) == 3
    assert float(rows[2].split(",")[1]) == pytest.approx(history["train_loss"][1], rel=1e-12)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["backend"] == "torch" and info["dataset"] == "digits"


def test_config_file_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[spec]\nlatent_dim = 3\nhidden_dims = [16, 8]\n[train]\nepochs = 1\nlearning_rate = 0.002\n'
                    '[run]\ndataset = "digits"\n')
    out = tmp_path / "a"
    assert main(["train", "--config", str(toml), "--out", str(out), "--latent-dim", "4", "--no-plots",
                 "--no-progress"]) == 0
    ckpt = read_checkpoint(out / "last.safetensors")
    assert ckpt.spec.latent_dim == 4  # the flag beats the file
    assert ckpt.spec.hidden_dims == (16, 8) and ckpt.train_config.learning_rate == 0.002 and ckpt.epoch == 1
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("spec:\n  latent_dim: 5\n  hidden_dims: [16]\ntrain:\n  epochs: 1\nrun:\n  dataset: digits\n")
    out = tmp_path / "b"
    assert main(["train", "--config", str(yaml_file), "--out", str(out), "--no-plots", "--no-progress"]) == 0
    assert read_checkpoint(out / "last.safetensors").spec.latent_dim == 5


def test_resume_repeats_an_uninterrupted_run(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(whole, "--no-plots", epochs=3) == 0
    assert train(split, "--no-plots", epochs=1) == 0
    assert main(["train", "--out", str(split), "--resume", "--epochs", "3", "--no-plots", "--no-progress"]) == 0
    a, b = read_checkpoint(whole / "last.safetensors"), read_checkpoint(split / "last.safetensors")
    assert b.epoch == 3
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
    for key in ("train_loss", "val_loss", "lr"):
        assert a.history[key] == b.history[key], key


def test_resume_in_the_other_backend(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--no-plots", epochs=1) == 0
    first = read_checkpoint(out / "last.safetensors")
    assert main(["train", "--out", str(out), "--resume", "--backend", "tf", "--epochs", "2", "--no-plots",
                 "--no-progress"]) == 0
    ckpt = read_checkpoint(out / "last.safetensors")
    assert ckpt.backend == "tf" and ckpt.epoch == 2 and ckpt.spec == first.spec
    assert ckpt.history["train_loss"][0] == first.history["train_loss"][0]
    assert ckpt.history["train_loss"][1] < first.history["train_loss"][0]


def test_evaluate_sample_and_reconstruct(run_dir, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(run_dir / "last.safetensors"), "--k", "5", "--limit", "50",
                 "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["n"] == 50 and result["dataset"] == "digits" and result["neg_elbo"] > 0
    assert "neg_elbo" in capsys.readouterr().out
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    assert main(["sample", str(run_dir / "last.safetensors"), "-n", "12", "-o", str(png), "--npy", str(npy),
                 "--backend", "tf"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = np.load(npy, allow_pickle=False)
    assert samples.shape == (12, 64) and samples.dtype == np.float32 and 0 <= samples.min() <= samples.max() <= 1
    recon = tmp_path / "r.png"
    assert main(["reconstruct", str(run_dir / "last.safetensors"), "-n", "6", "-o", str(recon),
                 "--npy", str(tmp_path / "r.npy")]) == 0
    assert recon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and np.load(tmp_path / "r.npy").shape == (6, 64)


def test_plot_writes_every_plot(run_dir, tmp_path):
    from vae_core.viz import gallery

    assert main(["plot", str(run_dir / "best.safetensors"), "--out", str(tmp_path / "p")]) == 0
    written = {p.name for p in (tmp_path / "p").iterdir()}
    assert set(gallery.GALLERY_FILES) <= written  # history.png too: the checkpoint carries the history


def test_compare_lockstep_writes_figure_and_tables(tmp_path):
    from vae_core.cli.compare import ORDER

    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--epochs", "2", "--hidden-dims", "32", "--latent-dim", "2",
                 "--lockstep", "--out", str(out), "--no-progress"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"compare.png", "compare.md", "compare.json", "init.safetensors", *ORDER} <= names
    result = json.loads((out / "compare.json").read_text())
    torch_loss, tf_loss = (result["histories"][b]["val_loss"] for b in ORDER)  # vae compare's two backends
    assert len(torch_loss) == 2
    # Lockstep: same init, data order and noise, so only float32 rounding separates the backends.
    np.testing.assert_allclose(torch_loss, tf_loss, rtol=1e-4)
    text = (out / "compare.md").read_text()
    assert "| tf - torch |" in text
    command = ("vae compare --dataset digits --epochs 2 --hidden-dims 32 --latent-dim 2 --lockstep "
               f"--out {out} --no-progress")
    assert f"Command: `{command}`" in text and result["command"] == command
    # the default --backends torch,tf: compare.json's keys as vae compare has always written them
    assert set(result) == {"dataset", "n_train", "n_test", "spec", "train_config", "same_init", "lockstep", "device",
                           "command", "class_names", "summary", "histories"}
    assert list(result["histories"]) == list(ORDER) == ["torch", "tf"]
    assert list(result["summary"]) == ["final", "tf_minus_torch", "max_abs_epoch_difference", "per_class"]
    assert set(result["summary"]["per_class"][0]) == {"class", "label", "n", "torch", "tf"}


def test_compare_backends_in_another_order_takes_the_first_as_the_reference(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--backends", "tf,torch", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert list(result["histories"]) == ["tf", "torch"]
    summary = result["summary"]
    assert list(summary) == ["final", "torch_minus_tf", "max_abs_epoch_difference", "per_class"]
    final = summary["final"]
    assert summary["torch_minus_tf"]["test_loss"] == pytest.approx(final["torch"]["test_loss"] -
                                                                   final["tf"]["test_loss"])
    text = (out / "compare.md").read_text()
    assert text.startswith("# tf vs torch on digits") and "| torch - tf |" in text and "| tf - torch |" not in text
    assert "| class | images | tf | torch | torch - tf |" in text
    assert {p.name for p in out.iterdir()} >= {"tf", "torch", "compare.png"}


def _history(epochs: int, shift: float) -> dict[str, list[float]]:
    curve = [100.0 - 10 * i + shift for i in range(epochs)]
    return {**{f"{split}_{term}": list(curve) for split in ("train", "val") for term in ("loss", "recon", "kl")},
            "seconds": [1.0 + shift] * epochs, "lr": [1e-3] * epochs}


def test_compare_summary_and_tables_for_three_backends():
    """Any number of backends, the first the reference: a difference per other backend, the largest per-epoch
    difference over them and per backend, and the tables' columns (named by label: no backend needs registering)."""
    from vae_core.cli.compare import markdown, summarize

    histories = {"torch": _history(3, 0.0), "tf": _history(3, 0.5), "other": _history(2, -2.0)}
    summary = summarize(histories)
    assert list(summary) == ["final", "tf_minus_torch", "other_minus_torch", "max_abs_epoch_difference",
                             "max_abs_epoch_difference_by_backend"]
    assert summary["tf_minus_torch"]["train_loss"] == pytest.approx(0.5)
    assert summary["other_minus_torch"]["train_loss"] == pytest.approx(8.0)  # its last epoch (88) - torch's (80)
    assert summary["max_abs_epoch_difference_by_backend"]["tf"]["val_kl"] == pytest.approx(0.5)
    assert summary["max_abs_epoch_difference"]["val_kl"] == pytest.approx(2.0)
    summary["per_class"] = [{"class": "0", "label": 0, "n": 5, "torch": 1.0, "tf": 1.5, "other": 0.25}]
    meta = {"dataset": "digits", "n_train": 10, "n_test": 5, "spec": {"input_dim": 64, "hidden_dims": [8],
            "latent_dim": 2, "likelihood": "bernoulli"}, "train_config": {"epochs": 3, "batch_size": 4,
            "learning_rate": 1e-3, "seed": 0}, "lockstep": False, "same_init": True, "device": "cpu",
            "command": None}
    text = markdown(meta, summary, histories)
    assert text.startswith("# torch vs tf vs other on digits")
    assert "| tf - torch | +0.50 |" in text and "| other - torch | +8.00 |" in text
    assert "Largest per-epoch |tf - torch|: " in text and "Largest per-epoch |other - torch|: " in text
    assert "| epoch | torch test -ELBO | tf test -ELBO | other test -ELBO | torch s | tf s | other s |" in text
    assert "| 3 | 80.00 | 80.50 | nan | 1.0 | 1.5 | nan |" in text  # the run that stopped early: nan
    assert "| class | images | torch | tf | other | tf - torch | other - torch |" in text
    assert "| 0 | 5 | 1.00 | 1.50 | 0.25 | +0.50 | -0.75 |" in text


@pytest.mark.parametrize("given, expected", [("torch,tf", ("torch", "tf")), (" tf , torch ", ("tf", "torch")),
                                             (["tf", "torch"], ("tf", "torch"))])
def test_check_backends_takes_two_or_more_registered_names(given, expected):
    from vae_core.cli.compare import check_backends

    assert check_backends(given) == expected


@pytest.mark.parametrize("given, problem", [
    (("torch", "tf", "tf"), r"'tf' is named twice; name each backend once"),
    (("torch",), r"only 'torch'; add a backend to compare it with"),
    ((), r"no backend; pass e\.g\. backends=\(.torch., .tf.\)"),
    ("torch,mxnet", r"'mxnet' is not a registered backend"),
    (["torch", 3], r"not a comma-separated string or a sequence of names"),
])
def test_compare_backends_refuses_bad_backends_before_anything(given, problem, tmp_path):
    from vae_core.cli.compare import compare_backends

    with pytest.raises(ValueError, match=rf"^compare_backends\.backends must be two or more of the registered "
                                         rf"backends .*; got .*{problem}"):
        compare_backends(dataset="digits", out=tmp_path / "cmp", backends=given)
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_backend_whose_framework_is_missing(tmp_path, capsys, monkeypatch):
    from vae_core.registry import BACKENDS

    monkeypatch.setitem(BACKENDS, "nothere", ("backends.nothere", ("no_such_framework_xyz",), "nothere"))
    capsys.readouterr()
    assert main(["compare", "--backends", "torch,nothere", *TINY, "--epochs", "1", "--out",
                 str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vae compare: error: --backends names backend 'nothere', which needs 'no_such_framework_xyz', "
                   "which is not installed; install it with: pip install 'vae-core[nothere]', or leave nothere out "
                   "of --backends"]
    assert not (tmp_path / "cmp").exists()


BAD_ARGUMENTS = {
    "unknown backend": ["train", "--backend", "no-such-backend"],
    "unknown likelihood": ["train", "--likelihood", "poisson"],
    "epochs not an int": ["train", "--epochs", "many"],
    "zero epochs": ["train", "--epochs", "0"],
    "negative learning rate": ["train", "--learning-rate", "-1"],
    "zero latent dim": ["train", "--latent-dim", "0"],
    "bad hidden dims": ["train", "--hidden-dims", "4,x"],
    "input dim against the data": ["train", "--input-dim", "10"],
    "missing config file": ["train", "--config", "nope.toml"],
    "evaluate without a checkpoint": ["evaluate"],
    "missing checkpoint": ["evaluate", "missing.safetensors"],
    "sample count": ["sample", "missing.safetensors", "-n", "0"],
    "sample output suffix": ["sample", "missing.safetensors", "-o", "samples.jpg"],
    "unknown dataset": ["train", "--dataset", "cifar"],
    "unknown architecture": ["train", "--architecture", "resnet"],
    "images too small for the convs": ["train", "--architecture", "conv", "--conv-channels", "8,8,8,8"],
    "--data and --dataset": ["train", "--data", "images.npy"],
    "--image-size without --data": ["train", "--image-size", "4,4"],
    "--test-fraction without --data": ["train", "--test-fraction", "0.2"],
    "--image-size not H,W": ["train", "--data", "images", "--image-size", "4"],
}


@pytest.mark.parametrize("argv", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_exit_2_with_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main([*argv, *(["--dataset", "digits", "--out", "o"] if argv[0] == "train"
                                        and "--dataset" not in argv else [])]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "o").exists()  # nothing written


def test_console_script_error_has_no_traceback(tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "evaluate", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "not a readable safetensors checkpoint" in proc.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "reconstruct", "plot", "compare"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: vae {command}" in capsys.readouterr().out


def test_divergence_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_checkpoint(backend, tmp_path,
                                                                                           capsys):
    out = tmp_path / "run"
    assert train(out, "--no-plots", "--backend", backend) == 0
    good = (out / "last.safetensors").read_bytes()
    # An LR of 1000 on the resumed run makes the loss overflow within the first steps of epoch 3.
    status = main(["train", "--out", str(out), "--resume", "--epochs", "4", "--learning-rate", "1000",
                   "--no-plots", "--no-progress"])
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"non-finite loss at epoch 3, step \d+ .* last good checkpoint is .*last\.safetensors", err), err
    assert (out / "last.safetensors").read_bytes() == good  # untouched
    for name in ("last.safetensors", "best.safetensors"):
        assert read_checkpoint(out / name).epoch <= 2  # loads, so every weight is finite


def test_ctrl_c_while_training_exits_130_with_one_line_and_a_step_checkpoint(backend, tmp_path, capsys, monkeypatch):
    import signal

    import vae_core.train.loop

    out = tmp_path / "run"
    monkeypatch.setattr(vae_core.train.loop, "StopSignals", lambda: StopAfterChecks(3, signal.SIGINT))
    status = main(["train", "--backend", backend, "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2",
                   "--batch-size", "8",  # 180 steps an epoch: several TF blocks, so the stop lands mid-epoch
                   "--epochs", "2", "--out", str(out), "--device", "cpu", "--no-plots", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 130, err
    assert re.fullmatch(rf"vae train: stopped by SIGINT at epoch 1, step (\d+) \(1-based, the last step done\); "
                        rf"resume with: vae train --out {re.escape(str(out))} --resume", err[-1]), err
    position = read_checkpoint(out / "last.safetensors").trainer_state["position"]
    assert position["step"] == int(re.search(r"step (\d+)", err[-1])[1]) and not (out / "history.json").exists()


def _rgb_folder(root: Path, shapes) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(shapes):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        red = np.zeros((h, w, 3), np.uint8)
        red[..., 0] = rng.integers(128, 256, (h, w))  # red images: an RGB plot is visibly not grey
        Image.fromarray(red).save(root / f"class{i % 2}" / f"{i:02d}.png")
    return root


def test_train_a_conv_model_on_a_folder_of_rgb_images_then_evaluate_it(backend, tmp_path, capsys):
    from PIL import Image

    folder, out = _rgb_folder(tmp_path / "images", [(12, 10)] * 24), tmp_path / "run"
    assert main(["train", "--backend", backend, "--data", str(folder), "--architecture", "conv", "--conv-channels",
                 "4,8", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--batch-size", "8",
                 "--test-fraction", "0.25", "--no-progress", "--out", str(out)]) == 0
    ckpt = read_checkpoint(out / "last.safetensors")
    assert (ckpt.spec.architecture, ckpt.spec.image_shape, ckpt.spec.conv_channels) == ("conv", (12, 10, 3), (4, 8))
    assert json.loads((out / "run.json").read_text())["data"] == str(folder)
    recon = np.asarray(Image.open(out / "plots" / "reconstructions.png").convert("RGB"), np.int16)
    assert (recon[..., 0] - recon[..., 2]).max() > 100  # the originals' red shows: the plot is in colour
    scores = tmp_path / "scores.json"
    assert main(["evaluate", str(out / "last.safetensors"), "--k", "0", "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["n"] == 6  # run.json's images, split as in training: 25% of 24


def test_train_refuses_images_of_mixed_sizes_naming_the_file(tmp_path, capsys):
    folder = _rgb_folder(tmp_path / "images", [(12, 10)] * 3 + [(11, 10)])
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["train", "--data", str(folder), "--out", str(tmp_path / "o"), "--no-progress"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert "03.png' has size 11x10" in err[0] and "--image-size H,W" in err[0]
    assert not (tmp_path / "o").exists()
