"""`vae train --dataset torchvision:...` on tiny offline roots, the commands that find its data again through run.json,
and `vae compare`: the classes are named (Fashion-MNIST's "T-shirt/top", an image folder's folder names) in the
plots and in the comparison."""
from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torchvision")
pytest.importorskip("matplotlib")

from tests import torchvision_roots as roots  # noqa: E402
from vae_core import read_checkpoint  # noqa: E402
from vae_core.cli import main  # noqa: E402
from vae_core.data.dataset import FASHION_MNIST_CLASSES  # noqa: E402

TINY = ["--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--batch-size", "16", "--no-progress"]


def shown_texts(monkeypatch) -> dict[str, list[str]]:
    """{PNG file name: the texts of its figure}, for every latent plot and image grid saved from now on."""
    import matplotlib.text

    from vae_core.viz import grids, latent

    texts: dict[str, list[str]] = {}
    for module in (grids, latent):
        monkeypatch.setattr(module, "save", lambda fig, path, *a, save=module.save, **k: texts.update(
            {os.path.basename(path): [t.get_text() for t in fig.findobj(matplotlib.text.Text)]}) or
            save(fig, path, *a, **k))
    return texts


def test_train_on_torchvision_then_evaluate_plot_reconstruct_name_the_classes(tmp_path, monkeypatch, backend):
    roots.idx_root(tmp_path / "data", "FashionMNIST")
    monkeypatch.chdir(tmp_path)
    texts = shown_texts(monkeypatch)
    assert main(["train", "--backend", backend, "--dataset", "torchvision:fashion-mnist", "--data-dir", "data",
                 "--out", "run", *TINY]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["dataset"] == "torchvision:fashion-mnist" and info["data_dir"] == str(tmp_path / "data")
    for plot in ("latent_scatter.png", "latent_tsne.png", "reconstructions.png"):
        assert "T-shirt/top" in texts[plot] and "Ankle boot" in texts[plot], (plot, texts[plot])
        assert not {"0", "9"} & set(texts[plot]), (plot, texts[plot])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run.json's data_dir is absolute: the commands find the data from anywhere
    ckpt = str(tmp_path / "run" / "best.safetensors")
    texts.clear()
    assert main(["evaluate", ckpt, "--k", "2", "--json", "test.json"]) == 0
    assert main(["evaluate", ckpt, "--k", "0", "--split", "train", "--limit", "10", "--json", "train.json"]) == 0
    scores = {s: json.loads((elsewhere / f"{s}.json").read_text()) for s in ("test", "train")}
    assert scores["test"]["n"] == 20 and scores["train"]["n"] == 10 and scores["test"]["dataset"] == info["dataset"]
    assert main(["plot", ckpt, "--out", "plots"]) == 0
    assert main(["reconstruct", ckpt, "-n", "4", "-o", "recon.png"]) == 0
    assert set(FASHION_MNIST_CLASSES) <= set(texts["latent_scatter.png"])
    assert [t for t in texts["recon.png"] if t in FASHION_MNIST_CLASSES] == ["T-shirt/top", "Trouser", "Pullover",
                                                                               "Dress"]


def test_image_folder_of_two_sizes_trains_resized(tmp_path, monkeypatch, backend):
    pics = roots.image_folder(tmp_path / "pics", per_class=5)
    roots.image_folder(pics, classes=("owl",), per_class=1, shape=(10, 8), seed=3)  # owl/000.png: 10x8, not 8x8
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--backend", backend, "--dataset", "torchvision:image-folder", "--data-dir", "pics",
                 "--image-size", "6,6", "--out", "run", "--no-plots", *TINY]) == 0
    assert read_checkpoint(tmp_path / "run" / "last.safetensors").spec.image_shape == (6, 6)
    assert main(["evaluate", "run/last.safetensors", "--k", "0"]) == 0  # run.json's --image-size again


def test_compare_names_the_classes(tmp_path, monkeypatch):
    roots.image_folder(tmp_path / "pics", per_class=5)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--dataset", "torchvision:image-folder", "--data-dir", "pics", "--out", "cmp",
                 *TINY]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["class_names"] == ["cat", "dog", "owl"]
    assert [(r["class"], r["n"]) for r in result["summary"]["per_class"]] == [("cat", 1), ("dog", 1), ("owl", 1)]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| class | images | torch | tf | tf - torch |" in table
    assert all(f"| {name} | 1 |" in table for name in ("cat", "dog", "owl"))
