"""`vae score` end to end: the CSV (a row per example: index, file, label, class, score, flagged), the histogram
beside it, the --reference threshold and flags, --overwrite, and a refused write. Its bad inputs are cases of
tests/cli/bad_inputs.py. A one-epoch 64-16-2 model on the 8x8 digits keeps it to seconds."""
from __future__ import annotations

import csv
import errno
import re
import struct

import numpy as np
import pytest

import vae_core
from vae_core import TrainConfig, VAESpec
from vae_core.cli import main
from vae_core.data import load_dataset

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "run"
    vae_core.fit(vae_core.build("torch", SPEC, seed=0), digits.x_train, None, TrainConfig(epochs=1, batch_size=64),
                 out_dir=out, progress=False, device="cpu")
    return out / "last.safetensors"


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def test_vae_score_writes_a_row_per_example_a_histogram_and_flags_above_the_reference_quantile(
        backend, checkpoint, digits, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    argv = ["score", str(checkpoint), "--dataset", "digits", "--split", "train", "--limit", "60", "--k", "4",
            "--reference", "digits", "--quantile", "0.9", "--backend", backend, "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["index", "label", "class", "score", "flagged"] and len(rows) == 60
    assert [int(r["index"]) for r in rows] == list(range(60))
    assert [int(r["label"]) for r in rows] == digits.y_train[:60].tolist()
    assert [r["class"] for r in rows] == [digits.class_names[y] for y in digits.y_train[:60]]
    model = vae_core.load_checkpoint(checkpoint, "torch")  # the API's scores, in the other backend too
    expected = vae_core.score(model, digits.x_train[:60], k=4, seed=0, device="cpu")
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)
    reference = vae_core.score(model, digits.x_test[:60], k=4, seed=0, device="cpu")  # its test split, --limit
    threshold = np.quantile(reference, 0.9)
    assert [int(r["flagged"]) for r in rows] == (expected > threshold).astype(int).tolist()
    said = capsys.readouterr().out
    match = re.search(rf"threshold (\S+) nats, the 0\.9 quantile of 60 scores of digits test: "
                      rf"{int((expected > threshold).sum())} of 60 flagged", said)
    assert match and float(match[1]) == pytest.approx(threshold, abs=1e-3), said
    assert png_size(out.with_suffix(".png")) == (700, 420)  # the histogram, beside the CSV

    before = out.read_bytes()
    assert main(argv) == 2 and out.read_bytes() == before  # it exists: refused, untouched
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0  # a progress bar by default
    assert "IWAE k=4" in capsys.readouterr().err and out.read_bytes() != before


def test_vae_score_of_an_image_folder_names_each_file_and_its_class_folder(checkpoint, digits, tmp_path):
    from PIL import Image

    images = np.round(digits.x_test[:10] * 255).astype(np.uint8).reshape(-1, 8, 8)
    files = [f"{'cats' if i < 4 else 'dogs'}/{i:02d}.png" for i in range(10)]
    for name, image in zip(files, images):
        (tmp_path / "new" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "new" / name)
    np.save(tmp_path / "new.npy", images)
    common = ["--k", "3", "--no-progress", "--device", "cpu"]
    assert main(["score", str(checkpoint), "--data", str(tmp_path / "new"), "--out", str(tmp_path / "f.csv"),
                 *common]) == 0  # every image of the folder (--split all, the default with --data)
    rows = read_csv(tmp_path / "f.csv")
    assert list(rows[0]) == ["index", "file", "label", "class", "score"]
    assert [r["file"] for r in rows] == files and [r["class"] for r in rows] == ["cats"] * 4 + ["dogs"] * 6
    assert [r["label"] for r in rows] == ["0"] * 4 + ["1"] * 6
    assert main(["score", str(checkpoint), "--data", str(tmp_path / "new.npy"), "--out", str(tmp_path / "n.csv"),
                 *common]) == 0  # the same pixels in a .npy (read a batch at a time): the same scores
    npy_rows = read_csv(tmp_path / "n.csv")
    assert list(npy_rows[0]) == ["index", "score"]  # no files, no labels
    assert [r["score"] for r in npy_rows] == [r["score"] for r in rows]


def test_a_refused_write_exits_1_and_keeps_the_earlier_files(checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "scores.csv"
    argv = ["score", str(checkpoint), "--dataset", "digits", "--limit", "20", "--k", "2", "--no-progress", "--out",
            str(out), "--overwrite"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("vae_core.io.atomic.os.fsync", full_disk)
    assert main([*argv, "--seed", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(r"vae score: error: \[Errno 28\] cannot write '.*scores\.(png|csv)': No "
                                          r"space left on device; any earlier file there is untouched", err[0]), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left, nothing changed


def test_vae_score_has_help_that_warns_about_other_datasets(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["score", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert exc.value.code == 0 and "usage: vae score" in out and "simpler images can score as more likely" in out
