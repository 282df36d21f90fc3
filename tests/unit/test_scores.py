"""What `vae score` reads and draws, without a framework: every image of a folder or array unsplit with its file
names (`read_images`), the file names of `load_images`' splits, and the scores histogram (`plot_scores`)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from vae_core.data import load_images, read_images
from vae_core.data.mapped import is_mapped
from vae_core.viz import plot_scores


@pytest.fixture
def folder(tmp_path):
    """tmp/images/{ants,bees}/NN.png: 7 grey 6x5 images, 3 ants then 4 bees, pixel (0, 0) = the image's number."""
    from PIL import Image

    for i in range(7):
        path = tmp_path / "images" / ("ants" if i < 3 else "bees") / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((6, 5), np.uint8)
        pixels[0, 0] = i
        Image.fromarray(pixels).save(path)
    return tmp_path / "images"


def test_read_images_gives_every_file_in_order_with_its_name_and_class_folder(folder):
    images = read_images(folder)
    assert images.x.shape == (7, 30) and images.x.dtype == np.uint8 and images.image_shape == (6, 5)
    assert images.x[:, 0].tolist() == list(range(7))  # sorted paths: file order
    assert images.files == tuple(f"{'ants' if i < 3 else 'bees'}/{i:02d}.png" for i in range(7))
    assert images.y.tolist() == [0, 0, 0, 1, 1, 1, 1] and images.class_names == ("ants", "bees")


def test_load_images_names_the_files_of_each_split(folder):
    data = load_images(folder, test_fraction=0.3, seed=1)
    for x, files in ((data.x_train, data.files_train), (data.x_test, data.files_test)):
        assert [int(f.split("/")[1][:2]) for f in files] == x[:, 0].tolist()  # each row's own file
    assert sorted(data.files_train + data.files_test) == list(read_images(folder).files)


def test_read_images_keeps_a_npy_mapped_and_refuses_nan_rows(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 4, 4, 3), np.float32))
    images = read_images(tmp_path / "x.npy")
    assert is_mapped(images.x) and images.x.shape == (5, 48) and images.image_shape == (4, 4, 3)
    assert images.files is None and images.class_names is None
    bad = np.zeros((5, 4, 4), np.float32)
    bad[[0, 3], 1, 1] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"read_images\.path must be finite float pixels .*NaN or inf in 2 of the 5"):
        read_images(tmp_path / "bad.npy")


def test_plot_scores_draws_a_png_of_its_size_with_a_reference_and_a_threshold(tmp_path):
    rng = np.random.default_rng(0)
    scores, reference = rng.normal(100, 10, 500), rng.normal(90, 8, 300)
    path = plot_scores(scores, tmp_path / "s.png", reference=reference, threshold=float(np.quantile(reference, 0.99)),
                       quantile=0.99, label="new", reference_label="train", title="t", dpi=50)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (350, 210)  # 7 x 4.2 in
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left
    with pytest.raises(ValueError, match=r"plot_scores\.scores must be finite scores; got '1 NaN or inf'"):
        plot_scores(np.array([1.0, np.nan]), tmp_path / "n.png")
    with pytest.raises(ValueError, match=r"plot_scores\.scores must be a non-empty 1-D array of scores"):
        plot_scores(np.zeros((2, 2)), tmp_path / "n.png")
