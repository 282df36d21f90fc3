"""A finished run is never lost by accident (issue 32): each way the CLI and `fit` used to replace a finished run's
best.safetensors, run.json and history, in each backend, now refuses and leaves every byte of the run as it was;
`--overwrite` and `fit(overwrite=True)` replace a run, leaving none of the old run's files behind."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_bad_inputs import snapshot
from vae_core import TrainConfig, build, fit, read_checkpoint
from vae_core.callbacks import Callback
from vae_core.cli import main
from vae_core.io.run_files import RunExistsError
from vae_core.train.callbacks import CallbackError

FAST = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "256", "--epochs", "1",
        "--no-progress", "--no-plots"]


@pytest.fixture(scope="module")
def finished(backend, tmp_path_factory) -> Path:
    """A finished `vae train` run of `backend` (1 epoch of the digits), copied by each test before it is touched."""
    out = tmp_path_factory.mktemp(f"finished-{backend}") / "run"
    assert main(["train", "--out", str(out), "--backend", backend, *FAST]) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def refused(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit status 2 and one line on stderr, and return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_new_run_into_a_finished_run_is_refused(finished, backend, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    before = snapshot(run)
    for spec in (["--latent-dim", "2"], ["--latent-dim", "3"]):  # the same spec, or another one
        line = refused(["train", "--out", str(run), "--backend", backend, *FAST, *spec], capsys)
        assert re.search(r"--out '.*run' holds a run \(last\.safetensors, best\.safetensors, run\.json, "
                         r"history\.json, history\.csv\); pass --resume to continue it, --overwrite to replace "
                         r"it", line)
        assert snapshot(run) == before


def test_resume_without_last_checkpoint_never_starts_over(finished, backend, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    (run / "last.safetensors").unlink()
    before = snapshot(run)
    line = refused(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--no-plots"], capsys)
    assert "holds a run (best.safetensors, run.json, history.json, history.csv) but no last.safetensors" in line
    assert snapshot(run) == before
    (run / "last.safetensors").mkdir()  # a folder where the checkpoint was
    before = snapshot(run)
    line = refused(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress", "--no-plots"], capsys)
    assert re.search(r"'.*run/last\.safetensors' is a folder, not the run's checkpoint file", line)
    assert snapshot(run) == before


def test_every_path_of_the_run_is_checked_before_a_file_is_replaced(finished, backend, tmp_path, capsys):
    """A folder where the run writes a file, or a file where it writes its plots folder: refused at the start, by
    --resume and by --overwrite alike, with every byte of the run kept."""
    for i, (flag, name, kind) in enumerate([("--resume", "best.safetensors", "folder"),
                                            ("--resume", "history.json", "folder"),
                                            ("--overwrite", "run.json", "folder"),
                                            ("--resume", "plots", "file"),
                                            ("--overwrite", "plots", "file")]):
        run = Path(shutil.copytree(finished, tmp_path / str(i)))
        if (run / name).exists():
            (run / name).unlink()
        (run / name).mkdir() if kind == "folder" else (run / name).write_text("not the plots")
        before = snapshot(run)
        extra = ["--epochs", "2", "--no-progress"] if flag == "--resume" else [*FAST[:-1], "--backend", backend]
        line = refused(["train", "--out", str(run), flag, *extra], capsys)  # plots on: the plots folder is checked
        where = "file" if kind == "folder" else "folder"
        assert f"{name} is a {kind}, where the run writes a {where}; move it away" in line, (flag, name, line)
        assert snapshot(run) == before, (flag, name)


def test_no_output_replaces_a_checkpoint_or_a_runs_metadata(finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    before = snapshot(run)
    ckpt = str(run / "best.safetensors")
    for argv in (["evaluate", ckpt, "--json", str(run / "run.json")],
                 ["evaluate", ckpt, "--json", str(run / "history.json")],
                 ["score", ckpt, "--out", str(run / "history.csv"), "--overwrite"],
                 ["plot", ckpt, "--out", str(run / "last.safetensors")]):
        line = refused(argv, capsys)
        assert re.search(r"is the (run\.json|history\.json|history\.csv) of the run in|is a file; pass a folder",
                         line), line
        assert snapshot(run) == before, argv


def test_overwrite_replaces_the_run_and_leaves_none_of_its_files(finished, backend, tmp_path):
    run = copy_of(finished, tmp_path)
    (run / "plots").mkdir()
    (run / "plots" / "samples.png").write_bytes(b"an old plot")
    (run / "plots" / "notes.txt").write_text("the user's own file")
    (run / ".last.safetensors.abc.tmp").write_bytes(b"a write killed mid-way")
    assert main(["train", "--out", str(run), "--overwrite", "--backend", backend, *FAST, "--latent-dim", "3"]) == 0
    names = {str(p.relative_to(run)) for p in run.rglob("*")}
    assert names == {"last.safetensors", "best.safetensors", "run.json", "history.json", "history.csv",
                     ".vae-run.lock", "plots", "plots/notes.txt"}, names  # the old plot is gone (--no-plots)
    for name in ("last.safetensors", "best.safetensors"):  # the new run's, not the old one's
        ckpt = read_checkpoint(run / name)
        assert ckpt.spec.latent_dim == 3 and ckpt.epoch == 1 and ckpt.backend == backend
    assert json.loads((run / "run.json").read_text())["spec"]["latent_dim"] == 3


def test_resume_into_a_new_folder_starts_a_run(backend, tmp_path, capsys):
    out = tmp_path / "new"
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--backend", backend, *FAST]) == 0
    assert f"no last.safetensors in {str(out)!r} yet; starting from scratch" in capsys.readouterr().err
    assert read_checkpoint(out / "last.safetensors").epoch == 1


class _FailAtStart(Callback):
    def on_train_begin(self, logs=None):
        raise RuntimeError("stop here")


def test_fit_refuses_a_folder_that_holds_a_run_unless_it_resumes_or_overwrites(finished, backend, tmp_path):
    from vae_core.data.datasets import load_dataset

    run = copy_of(finished, tmp_path)
    spec = read_checkpoint(run / "last.safetensors").spec
    x = load_dataset("digits").x_train[:64]
    config = TrainConfig(epochs=1, batch_size=32)
    before = snapshot(run)
    with pytest.raises(RunExistsError, match=r"out_dir '.*run' holds a run \(last\.safetensors, best\.safetensors\); "
                                             r"pass resume_from='.*last\.safetensors' to continue it, overwrite=True"):
        fit(build(backend, spec, seed=0), x, None, config, out_dir=run, progress=False)
    assert snapshot(run) == before
    # overwrite=True removes the old checkpoints before the first step: a run that fails at once leaves none of them
    with pytest.raises(CallbackError):
        fit(build(backend, spec, seed=0), x, None, config, out_dir=run, overwrite=True, progress=False,
            callbacks=[_FailAtStart()])
    assert not (run / "last.safetensors").exists() and not (run / "best.safetensors").exists()
    assert (run / "run.json").read_bytes() == (finished / "run.json").read_bytes()  # not fit's: kept
    fit(build(backend, spec, seed=1), x, None, config, out_dir=run, overwrite=True, progress=False)
    new = read_checkpoint(run / "last.safetensors")
    assert new.epoch == 1 and read_checkpoint(run / "best.safetensors").epoch == 1
    assert not all(np.array_equal(new.weights[k], read_checkpoint(finished / "last.safetensors").weights[k])
                   for k in new.weights)


def test_an_output_path_is_checked_against_checkpoints_and_run_metadata(tmp_path):
    """`check_not_run_file`, which every output flag goes through (`vae_core.cli.common.check_output_file`): a
    vae-core checkpoint by its header, whatever its folder; run.json and the history only in a run's folder."""
    from vae_core import VAESpec, init_weights, write_checkpoint
    from vae_core.io.checkpoint import Checkpoint
    from vae_core.io.run_files import check_not_run_file

    spec = VAESpec(input_dim=4, hidden_dims=(3,), latent_dim=2)
    ckpt = write_checkpoint(tmp_path / "model.safetensors", Checkpoint(spec=spec, weights=init_weights(spec, 0)))
    with pytest.raises(ValueError, match=r"--x '.*model\.safetensors' is a vae-core checkpoint; write the output to "
                                         r"another file name"):
        check_not_run_file(ckpt, "--x")
    (tmp_path / "other.safetensors").write_bytes(b"not a checkpoint")
    check_not_run_file(tmp_path / "other.safetensors", "--x")  # not vae-core's: a command may replace it
    check_not_run_file(tmp_path / "run.json", "--x")  # no run here: an output file like any other
    (tmp_path / "best.safetensors").write_bytes(ckpt.read_bytes())
    for name in ("run.json", "history.json", "history.csv"):
        with pytest.raises(ValueError, match=rf"--x '.*{name}' is the {name} of the run in"):
            check_not_run_file(tmp_path / name, "--x")
