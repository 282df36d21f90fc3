"""The NumPy side of the built-in loggers (`vae_core.callbacks`): their packages imported only when one is made, with
an ImportError naming the extra; history keys to TensorBoard runs and tags; the PNG encoder and the image grids.
What they log from a real run is in tests/conformance/test_conformance_loggers.py."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from vae_core.callbacks import events, views
from vae_core.callbacks.tensorboard import scalar_tag


def test_importing_the_callbacks_imports_no_logger_package_or_framework():
    code = ("import sys, vae_core, vae_core.callbacks; print(sorted(m for m in "
            "('tensorboard', 'mlflow', 'matplotlib', 'torch', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kind, module, extra", [("TensorBoard", "tensorboard", "tensorboard"),
                                                  ("MLflow", "mlflow", "mlflow")])
def test_a_missing_package_is_an_import_error_naming_the_extra(kind, module, extra, tmp_path, monkeypatch):
    from vae_core import callbacks

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    where = {"log_dir": tmp_path / "tb"} if kind == "TensorBoard" else {"tracking_uri": str(tmp_path / "mlruns")}
    with pytest.raises(ImportError, match=rf"needs the optional package '{module}'; install it with: pip install "
                                          rf"\"vae-core\[{extra}\]\""):
        getattr(callbacks, kind)(**where)
    assert not any(tmp_path.iterdir())  # nothing written


def test_history_keys_map_to_keras_runs_and_tags():
    assert [scalar_tag(k) for k in ("train_loss", "val_loss", "train_kl", "val_recon", "lr", "seconds", "beta")] == [
        ("train", "epoch_loss"), ("validation", "epoch_loss"), ("train", "epoch_kl"), ("validation", "epoch_recon"),
        ("train", "epoch_learning_rate"), ("train", "epoch_seconds"), ("train", "epoch_beta")]


@pytest.mark.parametrize("channels", [1, 3])
def test_png_encoder_round_trips_through_pillow(channels):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    image = Image.open(io.BytesIO(events.encode_png(pixels)))
    assert image.mode == ("L" if channels == 1 else "RGB") and image.size == (7, 5)
    assert np.array_equal(np.asarray(image).reshape(5, 7, channels), pixels)


def test_grid_scales_small_images_and_leaves_blank_cells_white():
    rows = np.zeros((5, 64), np.float32)  # five black 8x8 images, three to a row: one blank cell
    out = views.grid(rows, (8, 8), ncols=3)
    cell = 8 * 4 + 1  # 8x8 scaled 4x to 32 pixels, then a 1-pixel gap
    assert out.shape == (2 * cell, 3 * cell, 1) and out.dtype == np.uint8
    assert out[:32, :32].max() == 0 and out[32, :].min() == 255  # an image, then its gap row
    assert out[cell:cell + 32, 2 * cell:2 * cell + 32].min() == 255  # the blank sixth cell


def test_reconstruction_rows_interleave_originals_and_reconstructions():
    x, recon = np.arange(5)[:, None] * np.ones((1, 2)), -np.arange(5)[:, None] * np.ones((1, 2))
    rows = views.reconstruction_rows(x, recon, ncols=3)  # originals 0-2, their recons, originals 3-4 + blank, ...
    assert rows.shape == (12, 2)
    np.testing.assert_array_equal(rows[:, 0], [0, 1, 2, 0, -1, -2, 3, 4, np.nan, -3, -4, np.nan])
