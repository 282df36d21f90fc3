"""Image plots: grids of samples, reconstructions, latent traversals and interpolations, NumPy in, PNG out.

Images are flat (N, H*W*C) rows, or (N, H, W) / (N, H, W, C) arrays, in [0, 1] (or uint8), shaped by
`image_shape` (a spec's or dataset's, e.g. (28, 28), (8, 8) or (27, 29, 3): grey levels or RGB, any aspect).
Every function writes `path` and returns it as a Path; figures have a fixed size in inches (see each docstring), so the PNG is that size times `dpi` pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vae_core.checks import fail
from vae_core.viz.figures import (DPI, as_cells, check_class_names, check_dpi, check_images, check_labels, check_path,
                                  check_positive, image_grid_figure, label_text, save)

COLUMN_TITLE_CHARS = 12  # a longer class name is cut to this many characters to fit above its image


def plot_image_grid(images: np.ndarray, image_shape: tuple[int, ...], path: str | os.PathLike, *,
                    ncols: int = 10, title: str | None = None, dpi: int = DPI) -> Path:
    """A grid of images, `ncols` per row.

    Size: (ncols * CELL + 2 * PAD) x (rows * CELL + 2 * PAD (+ TITLE if title)) inches.
    """
    owner = "plot_image_grid"
    check_path(owner, path)
    check_dpi(owner, dpi)
    ncols = check_positive(owner, "ncols", ncols)
    images = check_images(owner, "images", images, image_shape)
    return save(image_grid_figure(as_cells(images, ncols), title=title), path, dpi, tight=False)


def plot_samples(samples: np.ndarray, image_shape: tuple[int, ...], path: str | os.PathLike, *,
                 ncols: int = 10, title: str | None = "samples from the prior", dpi: int = DPI) -> Path:
    """Decoded draws z ~ N(0, I) as a grid (the layout of `plot_image_grid`)."""
    return plot_image_grid(samples, image_shape, path, ncols=ncols, title=title, dpi=dpi)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, image_shape: tuple[int, ...],
                         path: str | os.PathLike, *, labels: Sequence | np.ndarray | None = None, n: int = 10,
                         title: str | None = None, class_names: Sequence[str] | None = None, dpi: int = DPI) -> Path:
    """The first `n` originals (top row) above their reconstructions, class labels as column titles (their
    `class_names`, when given, cut to COLUMN_TITLE_CHARS characters).

    Size: (k * CELL + 2 * PAD + ROW_LABEL) x (2 * CELL + 2 * PAD (+ COL_TITLE if labels) (+ TITLE if title))
    inches, k = min(n, N).
    """
    owner = "plot_reconstructions"
    check_path(owner, path)
    check_dpi(owner, dpi)
    n = check_positive(owner, "n", n)
    originals = check_images(owner, "originals", originals, image_shape)
    recons = check_images(owner, "reconstructions", reconstructions, image_shape)
    if len(recons) != len(originals):
        fail(owner, "reconstructions", f"one image per original ({len(originals)})", f"{len(recons)} images",
             "Pass model.reconstruct(originals) for the same originals.")
    labels = check_labels(owner, labels, len(originals))
    names = check_class_names(owner, class_names, labels)
    k = min(n, len(originals))
    titles = None if labels is None else [label_text(v, names, COLUMN_TITLE_CHARS) for v in labels[:k]]
    fig = image_grid_figure(np.stack([originals[:k], recons[:k]]), row_labels=["original", "reconstruction"],
                            col_titles=titles, title=title)
    return save(fig, path, dpi, tight=False)


def plot_traversals(grid: np.ndarray, image_shape: tuple[int, ...], path: str | os.PathLike, *,
                    dims: Sequence[int] | None = None, values: Sequence[float] | None = None,
                    title: str | None = "latent traversals", dpi: int = DPI) -> Path:
    """Latent traversals: grid (n_dims, n_values, H*W*C), one row per latent dim, one column per value.

    `dims` label the rows (z0, z1, ... by default), `values` the columns. Size: (n_values * CELL + 2 * PAD +
    ROW_LABEL) x (n_dims * CELL + 2 * PAD (+ COL_TITLE if values) (+ TITLE if title)) inches.
    """
    owner = "plot_traversals"
    check_path(owner, path)
    check_dpi(owner, dpi)
    grid = check_images(owner, "grid", grid, image_shape, ndim_lead=2)
    n_dims, n_values = grid.shape[:2]
    dims = list(range(n_dims)) if dims is None else list(dims)
    if len(dims) != n_dims:
        fail(owner, "dims", f"one latent index per row of grid ({n_dims})", dims)
    if values is not None:
        values = np.asarray(values, dtype=float)
        if values.shape != (n_values,):
            fail(owner, "values", f"one value per column of grid ({n_values})", f"shape {values.shape}")
    col_titles = None if values is None else ["0" if v == 0 else f"{v:+.3g}" for v in values]
    fig = image_grid_figure(grid, row_labels=[f"z{d}" for d in dims], col_titles=col_titles, title=title)
    return save(fig, path, dpi, tight=False)


def plot_interpolation(images: np.ndarray, image_shape: tuple[int, ...], path: str | os.PathLike, *,
                       title: str | None = "latent interpolation", start: str = "x1", end: str = "x2",
                       dpi: int = DPI) -> Path:
    """A row of images decoded along the line from x1's latent mean to x2's, ends titled `start` and `end`.

    Size: (k * CELL + 2 * PAD) x (CELL + 2 * PAD + COL_TITLE (+ TITLE if title)) inches, k images.
    """
    owner = "plot_interpolation"
    check_path(owner, path)
    check_dpi(owner, dpi)
    images = check_images(owner, "images", images, image_shape)
    if len(images) < 2:
        fail(owner, "images", "at least 2 images (x1 ... x2)", f"{len(images)} image(s)")
    col_titles = [start] + [None] * (len(images) - 2) + [end]
    return save(image_grid_figure(images[None], col_titles=col_titles, title=title), path, dpi, tight=False)

