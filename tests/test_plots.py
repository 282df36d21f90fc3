"""Plots render to valid PNG files of the expected size."""
import struct

import numpy as np

from vae_core.plots import plot_history, plot_image_grid


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_history_plot(tmp_path):
    hist = {k: [3.0, 2.0, 1.5] for k in ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl")}
    path = plot_history({"torch": hist, "tf": hist}, tmp_path / "curves.png")
    assert png_size(path) == (1300, 360)


def test_image_grid(tmp_path):
    images = np.random.default_rng(0).random((23, 64))
    path = plot_image_grid(images, (8, 8), tmp_path / "grid.png", ncols=10)
    w, h = png_size(path)
    assert w == 900 and h == 270  # 10 columns x 3 rows at 0.9 inch, 100 dpi
