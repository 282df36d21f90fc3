"""`vae train --resume` with nothing to train (issue 32): one line that says how many epochs the run has and how to
train more, exit status 0, and not a byte of the run written; with epochs to train, it trains them."""
import hashlib
import json

from vae_core.cli import main
from vae_core.io.checkpoint import read_checkpoint

TRAIN = ["train", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--no-plots", "--no-progress"]


def _files(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_with_nothing_to_train_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 0
    before = _files(out)
    for extra, asked in ((["--epochs", "1"], 1), ([], 2)):  # without --epochs: the run's own 2
        capsys.readouterr()
        assert main(["train", "--out", str(out), "--resume", *extra]) == 0
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.splitlines() == [
            f"vae train: {str(out)!r} already has 2 epochs and --epochs is {asked} (the total to reach, not the "
            f"epochs to add), so there is nothing to train; to train more, pass the new total, e.g. --epochs 3; "
            f"nothing written"]
        assert _files(out) == before
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3"]) == 0  # the fix the line gives works
    assert read_checkpoint(out / "last.safetensors").epoch == 3
    assert len(json.loads((out / "history.json").read_text())["train_loss"]) == 3
