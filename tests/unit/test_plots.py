"""Plots render to valid PNG files of the expected pixel size; the gallery works with both backends."""
import struct
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from vae_core import VAESpec, build  # noqa: E402
from vae_core.viz import (gallery, plot_backend_comparison, plot_history, plot_image_grid,  # noqa: E402
                          plot_interpolation, plot_latent_scatter, plot_reconstructions, plot_samples,
                          plot_traversals, plot_tsne)
from vae_core.viz.figures import CELL, COL_TITLE, PAD, ROW_LABEL, TITLE  # noqa: E402
from vae_core.viz.curves import COMPARISON_SIZE, HISTORY_SIZE  # noqa: E402
from vae_core.viz.latent import SCATTER_SIZE, subsample  # noqa: E402
from tests.conftest import BACKEND_NAMES, missing_framework  # noqa: E402

DPI = 40  # small PNGs keep the tests fast
SHAPES = [(28, 28), (8, 8)]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "first chunk is not IHDR"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def pixels(width_in, height_in, dpi=DPI):
    return round(width_in * dpi), round(height_in * dpi)


def images(n, shape, seed=0):
    return np.random.default_rng(seed).random((n, shape[0] * shape[1]), dtype=np.float32)


def history(epochs=3, val=True, scale=1.0):
    h = {f"train_{t}": [scale * (10.0 - e) for e in range(epochs)] for t in ("loss", "recon", "kl")}
    h.update({f"val_{t}": [scale * (9.0 - e) for e in range(epochs)] if val else [] for t in ("loss", "recon", "kl")})
    return {**h, "lr": [1e-3] * epochs, "seconds": [1.0] * epochs}


# ------------------------------------------------------------------------------------------- image plots

def test_history_plot(tmp_path):
    hist = {k: [3.0, 2.0, 1.5] for k in ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl")}
    path = plot_history({"torch": hist, "tf": hist}, tmp_path / "curves.png")
    assert png_size(path) == (1300, 360) == pixels(*HISTORY_SIZE, dpi=100)


@pytest.mark.parametrize("hist", [history(1), history(4, val=False), {**history(2), "val_kl": [None, 1.0]}])
def test_history_plot_single_run_one_epoch_or_no_test_set(tmp_path, hist):
    assert png_size(plot_history(hist, tmp_path / "h.png", dpi=DPI)) == pixels(*HISTORY_SIZE)


def test_image_grid(tmp_path):
    path = plot_image_grid(images(23, (8, 8)), (8, 8), tmp_path / "grid.png", ncols=10)
    assert png_size(path) == (10 * 90 + 20, 3 * 90 + 20)  # 10 columns x 3 rows of 0.9 inch + 0.1 inch border


@pytest.mark.parametrize("shape", SHAPES)
def test_reconstructions(tmp_path, shape):
    x = images(12, shape)
    path = plot_reconstructions(x, x[::-1], shape, tmp_path / "r.png", labels=np.arange(12), n=10,
                                title="reconstructions", dpi=DPI)
    assert path == tmp_path / "r.png"
    assert png_size(path) == pixels(10 * CELL + 2 * PAD + ROW_LABEL, 2 * CELL + 2 * PAD + COL_TITLE + TITLE)
    # (N, H, W) input, no labels, fewer images than n: one column per image
    path = plot_reconstructions(x[:3].reshape(3, *shape), x[:3], shape, tmp_path / "r3.png", n=10, dpi=DPI)
    assert png_size(path) == pixels(3 * CELL + 2 * PAD + ROW_LABEL, 2 * CELL + 2 * PAD)


@pytest.mark.parametrize("shape", SHAPES)
def test_samples(tmp_path, shape):
    path = plot_samples(images(20, shape), shape, tmp_path / "s.png", ncols=5, dpi=DPI)
    assert png_size(path) == pixels(5 * CELL + 2 * PAD, 4 * CELL + 2 * PAD + TITLE)


@pytest.mark.parametrize("shape", SHAPES)
def test_traversals(tmp_path, shape):
    grid = images(3 * 7, shape).reshape(3, 7, -1)
    path = plot_traversals(grid, shape, tmp_path / "t.png", dims=[4, 0, 2], values=np.linspace(-3, 3, 7), dpi=DPI)
    assert png_size(path) == pixels(7 * CELL + 2 * PAD + ROW_LABEL, 3 * CELL + 2 * PAD + COL_TITLE + TITLE)
    path = plot_traversals(grid, shape, tmp_path / "t2.png", title=None, dpi=DPI)
    assert png_size(path) == pixels(7 * CELL + 2 * PAD + ROW_LABEL, 3 * CELL + 2 * PAD)


@pytest.mark.parametrize("shape", SHAPES)
def test_interpolation(tmp_path, shape):
    path = plot_interpolation(images(6, shape), shape, tmp_path / "i.png", dpi=DPI)
    assert png_size(path) == pixels(6 * CELL + 2 * PAD, CELL + 2 * PAD + COL_TITLE + TITLE)


@pytest.mark.parametrize("lit", ["column", "row"])
def test_images_are_not_transposed(tmp_path, lit):
    import matplotlib.image

    img = np.zeros((8, 8), dtype=np.float32)
    if lit == "column":
        img[:, 1] = 1.0  # the second column from the left is white
    else:
        img[1, :] = 1.0  # the second row from the top is white
    path = plot_image_grid(img.reshape(1, 64), (8, 8), tmp_path / "o.png", ncols=1, dpi=100)
    gray = matplotlib.image.imread(path)[..., :3].mean(axis=-1)
    rows, cols = np.nonzero(gray < 0.1)  # the black image cell on the white figure
    cell = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    size = cell.shape[0]
    bright_rows, bright_cols = np.nonzero(cell > 0.9)
    along, across = (bright_rows, bright_cols) if lit == "column" else (bright_cols, bright_rows)
    assert along.max() - along.min() > 0.9 * size  # the white line spans the cell ...
    assert across.max() < size / 4  # ... near its left (or top) edge, where it was drawn


# ------------------------------------------------------------------------------------------- latent plots

@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_latent_scatter(tmp_path, latent_dim):
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(300, latent_dim)), rng.integers(0, 10, 300)
    path = plot_latent_scatter(z, labels, tmp_path / "z.png", dpi=DPI)
    assert png_size(path) == pixels(*SCATTER_SIZE)


def test_latent_scatter_without_labels_or_with_many_classes(tmp_path):
    z = np.random.default_rng(0).normal(size=(100, 3))
    assert png_size(plot_latent_scatter(z, None, tmp_path / "a.png", dims=(2, 1), dpi=DPI)) == pixels(*SCATTER_SIZE)
    assert png_size(plot_latent_scatter(z, np.arange(100), tmp_path / "b.png", dpi=DPI)) == pixels(*SCATTER_SIZE)


def test_tsne_is_deterministic_and_subsampled(tmp_path):
    rng = np.random.default_rng(0)
    mu, labels = rng.normal(size=(400, 4)), rng.integers(0, 10, 400)
    a = plot_tsne(mu, labels, tmp_path / "a.png", seed=1, max_points=60, dpi=DPI)
    b = plot_tsne(mu, labels, tmp_path / "b.png", seed=1, max_points=60, dpi=DPI)
    assert png_size(a) == pixels(*SCATTER_SIZE)
    assert a.read_bytes() == b.read_bytes()
    idx = subsample(400, 120, 1)
    assert len(idx) == len(set(idx.tolist())) == 120 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, subsample(400, 120, 1)) and not np.array_equal(idx, subsample(400, 120, 2))
    assert np.array_equal(subsample(50, 120, 1), np.arange(50))


# ------------------------------------------------------------------------------------------- backend comparison

def test_backend_comparison(tmp_path):
    path = plot_backend_comparison({"tf": history(4, scale=1.01), "torch": history(4)}, tmp_path / "c.png", dpi=DPI)
    assert png_size(path) == pixels(*COMPARISON_SIZE)
    # different lengths (early stopping) and no test set: still one figure
    path = plot_backend_comparison({"torch": history(5, val=False), "tf": history(3, val=False)},
                                   tmp_path / "c2.png", dpi=DPI)
    assert png_size(path) == pixels(*COMPARISON_SIZE)


def test_backend_comparison_of_three_runs(tmp_path):
    """Two or more runs: each other run's difference from the reference (the first, or `reference`), in one figure."""
    runs = {"torch": history(4), "tf": history(4, scale=1.01), "jax": history(3, scale=0.99)}
    path = plot_backend_comparison(runs, tmp_path / "c3.png", dpi=DPI)
    assert png_size(path) == pixels(*COMPARISON_SIZE)
    other = plot_backend_comparison(runs, tmp_path / "c3-tf.png", dpi=DPI, reference="tf")
    assert png_size(other) == pixels(*COMPARISON_SIZE) and other.read_bytes() != path.read_bytes()
    with pytest.raises(ValueError, match=r"plot_backend_comparison\.reference must be None or one of the labels "
                                         r"of histories \['torch', 'tf', 'jax'\]; got 'mxnet'"):
        plot_backend_comparison(runs, tmp_path / "c4.png", reference="mxnet")


def test_backend_comparison_needs_two_histories(tmp_path):
    with pytest.raises(ValueError, match=r"two or more histories.*1 run"):
        plot_backend_comparison({"torch": history()}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="a single history"):
        plot_backend_comparison(history(), tmp_path / "c.png")


# ------------------------------------------------------------------------------------------- bad inputs

def test_image_size_must_match_image_shape(tmp_path):
    with pytest.raises(ValueError, match=r"plot_reconstructions\.originals must be an array of shape \(N, 64\) or "
                                         r"\(N, 8, 8, 1\) or \(N, 8, 8\) for image_shape \(8, 8\); got 'shape \(5, 784\)'.*image_shape"):
        plot_reconstructions(images(5, (28, 28)), images(5, (28, 28)), (8, 8), tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"plot_samples|plot_image_grid"):
        plot_samples(images(5, (8, 8)), (28, 28), tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"plot_traversals\.grid must be an array of shape \(rows, columns, 64\)"):
        plot_traversals(images(5, (8, 8)), (8, 8), tmp_path / "t.png")
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(H, W, C\) with C 1 or 3"):
        plot_interpolation(images(5, (8, 8)), 64, tmp_path / "i.png")


def test_mismatched_lengths_and_values(tmp_path):
    x = images(5, (8, 8))
    with pytest.raises(ValueError, match=r"reconstructions must be one image per original \(5\); got '4 images'"):
        plot_reconstructions(x, x[:4], (8, 8), tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"labels must be None or a 1-D array of 5 labels.*got 'shape \(4,\)'"):
        plot_reconstructions(x, x, (8, 8), tmp_path / "r.png", labels=[1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"labels must be None or a 1-D array of 300 labels"):
        plot_latent_scatter(np.zeros((300, 2)), np.zeros(299), tmp_path / "z.png")
    with pytest.raises(ValueError, match="finite pixel values"):
        plot_samples(np.full((2, 64), np.nan), (8, 8), tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"dims must be one latent index per row of grid \(2\)"):
        plot_traversals(x[:4].reshape(2, 2, 64), (8, 8), tmp_path / "t.png", dims=[0])
    with pytest.raises(ValueError, match=r"dims must be two different latent indices in \[0, 2\)"):
        plot_latent_scatter(np.zeros((3, 2)), None, tmp_path / "z.png", dims=(0, 2))
    with pytest.raises(ValueError, match=r"history with the key 'train_kl'"):
        plot_history({"torch": {"train_loss": [1.0], "train_recon": [1.0]}}, tmp_path / "h.png")
    with pytest.raises(ValueError, match=r"\['val_loss'\] must be 2 values"):
        plot_history({"torch": {**history(2), "val_loss": [1.0]}}, tmp_path / "h.png")
    with pytest.raises(ValueError, match=r"path must be a file in an existing folder"):
        plot_samples(x, (8, 8), tmp_path / "missing" / "s.png")


def test_plot_modules_import_without_matplotlib_or_frameworks():
    code = ("import sys, vae_core.viz; bad = [m for m in ('matplotlib', 'torch', 'tensorflow', "
            "'keras', 'sklearn') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------- gallery (models)

@pytest.fixture(scope="module")
def digits():
    from vae_core.data import load_dataset

    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    return data.x_test[:200], data.y_test[:200]


def small_model(backend, latent_dim):
    if missing_framework(backend):
        pytest.skip(missing_framework(backend))
    return build(backend, VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=latent_dim, image_shape=(8, 8)), seed=0)


def test_plot_all_writes_every_file(tmp_path, digits, backend):
    latent_dim = (2, 3)[BACKEND_NAMES.index(backend) % 2]  # both sizes of traversal grid, one plot_all per backend
    x, y = digits
    out = gallery.plot_all(small_model(backend, latent_dim), x, y, tmp_path / "g", history=history(3), n=6,
                           tsne_points=100, dpi=DPI)
    assert list(out) == list(gallery.GALLERY_FILES)
    for name, path in out.items():
        assert path == tmp_path / "g" / name and png_size(path)[0] > 0
    assert png_size(out[gallery.SAMPLES_PNG]) == pixels(6 * CELL + 2 * PAD, 6 * CELL + 2 * PAD + TITLE)
    assert png_size(out[gallery.TRAVERSALS_PNG]) == pixels(9 * CELL + 2 * PAD + ROW_LABEL,
                                                           latent_dim * CELL + 2 * PAD + COL_TITLE + TITLE)
    assert png_size(out[gallery.INTERPOLATION_PNG]) == pixels(6 * CELL + 2 * PAD, CELL + 2 * PAD + COL_TITLE + TITLE)


def test_plot_all_without_history_or_labels(tmp_path, digits):
    out = gallery.plot_all(small_model("torch", 3), digits[0][:60], None, tmp_path, n=3, tsne_points=30, dpi=DPI)
    assert sorted(out) == sorted(set(gallery.GALLERY_FILES) - {gallery.HISTORY_PNG})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(out)
    assert png_size(out[gallery.RECONSTRUCTIONS_PNG]) == pixels(3 * CELL + 2 * PAD + ROW_LABEL, 2 * CELL + 2 * PAD)


def test_traversal_grid_is_backend_neutral(digits):
    grids = {}
    for backend in BACKEND_NAMES:  # every installed backend, against torch's
        if not missing_framework(backend):
            grids[backend] = gallery.traversal_grid(small_model(backend, 3), dims=[2, 0], values=[-2.0, 0.0, 2.0])
    if len(grids) < 2:
        pytest.skip(f"only {sorted(grids)} installed: nothing to compare")
    g = grids["torch"]
    assert g.shape == (2, 3, 64) and g.dtype == np.float32 and 0 < g.min() and g.max() < 1
    for backend, grid in grids.items():
        np.testing.assert_allclose(grid, g, atol=1e-5, err_msg=backend)  # same seed, same weights, same pictures
    np.testing.assert_allclose(g[0, 1], g[1, 1], atol=1e-6)  # value 0 on any dim decodes the base z = 0
    assert np.abs(g[0, 0] - g[0, 2]).max() > 1e-4 and np.abs(g[0, 0] - g[1, 0]).max() > 1e-4
    base = gallery.traversal_grid(small_model("torch", 3), dims=[1], values=[0.5], base=[0.5, 0.5, 0.5])
    np.testing.assert_allclose(base[0, 0], gallery.traversal_grid(small_model("torch", 3), dims=[0],
                                                                     values=[0.5], base=[0.5, 0.5, 0.5])[0, 0],
                               atol=1e-6)


def test_encode_mean_is_batched_and_to_numpy_converts(digits, backend):
    from vae_core.registry import backend_module

    x, _ = digits
    model = small_model(backend, 2)
    mu = gallery.encode_mean(model, x, batch_size=64)
    assert mu.shape == (200, 2) and mu.dtype == np.float32
    with backend_module(backend).device.inference(model) as native:  # x as the model's own input
        np.testing.assert_allclose(mu, gallery.to_numpy(model.encode(native(x))[0]), atol=1e-6)
    np.testing.assert_allclose(gallery.encode_mean(model, x, batch_size=7), mu, atol=1e-6)
    assert gallery.to_numpy([1, 2]).dtype == np.float32


def test_plot_all_bad_inputs(tmp_path, digits):
    x, y = digits
    model = small_model("torch", 2)
    with pytest.raises(ValueError, match=r"plot_all\.labels must be None or a 1-D array of 200 labels"):
        gallery.plot_all(model, x, y[:10], tmp_path)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 64\)"):
        gallery.plot_all(model, np.zeros((5, 784), np.float32), None, tmp_path)
    with pytest.raises(ValueError, match=r"traversal_grid\.dims must be None or a non-empty list"):
        gallery.traversal_grid(model, dims=[2])
    with pytest.raises(ValueError, match=r"traversal_grid\.base must be None or 2 finite numbers"):
        gallery.traversal_grid(model, base=[0.0])
    with pytest.raises(ValueError, match=r"plot_all\.history must be a history with the key 'train_kl'"):
        gallery.plot_all(model, x, y, tmp_path, history={"train_loss": [1.0], "train_recon": [1.0]})
    with pytest.raises(ValueError, match=r"encode_mean\.batch_size must be an int >= 1"):
        gallery.encode_mean(model, x, batch_size=0)
    with pytest.raises(TypeError, match="model must be a vae_core model"):
        gallery.plot_all(object(), x, y, tmp_path)
    no_shape = build("torch", VAESpec(input_dim=60, hidden_dims=(8,), latent_dim=2), seed=0)
    with pytest.raises(ValueError, match=r"plot_all\.model must be a model whose spec has an image_shape"):
        gallery.plot_all(no_shape, np.zeros((5, 60), np.float32), None, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_rgb_and_non_square_images_are_drawn_in_colour(tmp_path):
    from PIL import Image

    from vae_core.viz.grids import plot_image_grid

    images = np.zeros((4, 27, 29, 3), np.uint8)
    images[..., 1] = 255  # pure green, as uint8 (divided by 255 for the plot)
    path = plot_image_grid(images.reshape(4, -1), (27, 29, 3), tmp_path / "rgb.png", ncols=2, dpi=50)
    pixels = np.asarray(Image.open(path).convert("RGB"), np.int16)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 50) & (pixels[..., 2] < 50)
    assert green.mean() > 0.3  # the images are green, not grey, in a white frame
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(H, W, C\) with C 1 or 3"):
        plot_image_grid(images.reshape(4, -1), (27, 29, 4), tmp_path / "bad.png")
