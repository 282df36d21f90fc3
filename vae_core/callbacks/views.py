"""What the built-in callbacks show of a model of any backend, as NumPy: samples, reconstructions, posterior means,
and image grids of them.

The model is the native one the trainer hands to callbacks; `sample`, `reconstruct` (no gradients, eval mode, the
noise of `sample(seed=)` from NumPy) and `vae_core.viz.gallery.encode_mean` work on it in every backend, and draw
nothing from the framework's random streams, so a logging callback leaves the run's numbers unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vae_core.checks import fail
from vae_core.data.rows import check_data
from vae_core.viz.figures import as_cells
from vae_core.viz.gallery import encode_mean, to_numpy

MIN_CELL = 28  # pixels: smaller images (the 8x8 digits) are scaled up by a whole factor to at least this


def check_examples(owner: str, examples: Any) -> np.ndarray | None:
    """None, or `examples` as a non-empty numeric array of at least 2 axes with finite values (its layout against
    the model's spec is checked once the model is known: `spec_examples`)."""
    if examples is None:
        return None
    arr = np.asarray(examples) if isinstance(examples, (np.ndarray, list, tuple)) else None
    if arr is None or arr.dtype.kind not in "fiu" or arr.ndim < 2 or len(arr) == 0:
        got = f"shape {arr.shape}, dtype {arr.dtype}" if arr is not None else type(examples).__name__
        fail(owner, "examples", "None or a non-empty array of examples, (N, D) rows or (N, H, W[, C]) images", got,
             "Pass a few validation images, e.g. data.x_test[:500]")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        fail(owner, "examples", "finite values", "NaN or inf", "Drop or clean those examples")
    return arr


def spec_examples(owner: str, examples: np.ndarray | None, model: Any) -> np.ndarray | None:
    """`examples` as (N, D) float32 rows for `model.spec` (uint8 scaled by 1/255), or a ValueError naming `owner`."""
    if examples is None:
        return None
    return np.asarray(check_data(examples, model.spec, f"{owner}.examples"))


def samples(model: Any, n: int, seed: int) -> np.ndarray:
    """(n, D) float32: the means of p(x|z) at n draws z ~ N(0, I) fixed by `seed` (the same z in every backend)."""
    return to_numpy(model.sample(n, seed=seed))


def reconstructions(model: Any, x: np.ndarray) -> np.ndarray:
    """(N, D) float32: the means of p(x|z) at z = mu(x)."""
    return to_numpy(model.reconstruct(x))


def latent_means(model: Any, x: np.ndarray) -> np.ndarray:
    """(N, latent_dim) float32: the encoder's means mu(x), where the model computes."""
    return encode_mean(model, x)


def grid(rows: np.ndarray, image_shape: tuple[int, ...], ncols: int) -> np.ndarray:
    """(N, D) pixels in [0, 1] (values outside are clipped) as one (H', W', C) uint8 image: `ncols` images a row,
    a 1-pixel white gap after each, small images scaled up to MIN_CELL pixels by a whole factor."""
    h, w, c = (*image_shape, 1)[:3]
    scale = max(1, -(-MIN_CELL // max(h, w)))
    images = np.clip(rows.reshape(-1, h, w, c), 0.0, 1.0)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour upscaling
    cells = np.nan_to_num(as_cells(images, ncols), nan=1.0)  # (rows, ncols, h', w', c), blank cells white
    n_rows, n_cols, hh, ww, _ = cells.shape
    mosaic = np.ones((n_rows, hh + 1, n_cols, ww + 1, c))
    mosaic[:, :hh, :, :ww] = cells.transpose(0, 2, 1, 3, 4)
    return np.round(mosaic.reshape(n_rows * (hh + 1), n_cols * (ww + 1), c) * 255).astype(np.uint8)


def reconstruction_rows(x: np.ndarray, recon: np.ndarray, ncols: int) -> np.ndarray:
    """Originals and reconstructions (N, D) interleaved by rows of `ncols`: originals, their reconstructions
    below, the next originals, ... (the last pair of rows padded with blank, NaN, cells)."""
    n, d = x.shape
    pad = -n % ncols
    x, recon = (np.concatenate([a, np.full((pad, d), np.nan, np.float32)]) for a in (x, recon))
    pairs = np.stack([x.reshape(-1, ncols, d), recon.reshape(-1, ncols, d)], axis=1)  # (pairs, 2, ncols, D)
    return pairs.reshape(-1, d)
