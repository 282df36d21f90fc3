"""Shared pieces of the plot modules: lazy pyplot, saving, layout sizes and argument checks.

Figures have a fixed size in inches, so a PNG saved at `dpi` is (width * dpi, height * dpi) pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vae_core.checks import fail

DPI = 100  # default resolution of saved PNGs (pixels per inch)
CELL = 0.9  # inches per image in image grids
PAD = 0.1  # inches of blank border around an image grid
ROW_LABEL = 1.0  # inches on the left of an image grid holding row labels
COL_TITLE = 0.3  # inches above an image row holding per-column titles
TITLE = 0.4  # inches for a figure title


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported here, on first use, never at package import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | os.PathLike, dpi: int, *, tight: bool = True) -> Path:
    """Lay out, write `fig` as PNG at `dpi`, close it, and return the path."""
    path = Path(path)
    if tight:
        fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=dpi, format="png")
    pyplot().close(fig)
    return path


def check_path(owner: str, path: Any) -> None:
    if not isinstance(path, (str, os.PathLike)):
        fail(owner, "path", "a str or os.PathLike ending in .png", path)
    parent = Path(path).parent
    if not parent.is_dir():
        fail(owner, "path", "a file in an existing folder", str(path), f"Create {parent} first.")


def check_dpi(owner: str, dpi: Any) -> None:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or not 10 <= dpi <= 1000:
        fail(owner, "dpi", "an int in [10, 1000]", dpi)


def check_image_shape(owner: str, image_shape: Any) -> tuple[int, int, int]:
    """(H, W, C) of an image_shape (H, W) or (H, W, C), C being 1 (grey levels) or 3 (RGB)."""
    ok = (isinstance(image_shape, (tuple, list)) and len(image_shape) in (2, 3)
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_shape)
          and (len(image_shape) == 2 or image_shape[2] in (1, 3)))
    if not ok:
        fail(owner, "image_shape", "(H, W) or (H, W, C) with C 1 or 3, such as (28, 28) or (32, 32, 3)", image_shape,
             "Pass model.spec.image_shape or dataset.image_shape.")
    h, w, c = (*image_shape, 1)[:3]
    return int(h), int(w), int(c)


def check_images(owner: str, name: str, images: Any, image_shape: Any, *, ndim_lead: int = 1) -> np.ndarray:
    """`images` as float (*lead, H, W, C) in [0, 1]-scale, from flat (*lead, H*W*C), (*lead, H, W) for one channel,
    or (*lead, H, W, C), channels last; uint8 pixels are divided by 255. Clear errors otherwise.

    `ndim_lead` is the number of leading axes: 1 for a list of images, 2 for a grid (rows, columns).
    """
    h, w, c = check_image_shape(owner, image_shape)
    arr = np.asarray(images)
    if arr.dtype.kind not in "fiub":
        fail(owner, name, "a numeric array of images", f"dtype {arr.dtype}", "Convert it with np.asarray(...).")
    lead = "N" if ndim_lead == 1 else "rows, columns"
    shapes = [(h * w * c,), (h, w, c)] + ([(h, w)] if c == 1 else [])
    if not any(arr.ndim == ndim_lead + len(s) and arr.shape[ndim_lead:] == s for s in shapes):
        allowed = " or ".join(f"({lead}, {', '.join(map(str, s))})" for s in shapes)
        fail(owner, name, f"an array of shape {allowed} for image_shape {tuple(image_shape)}", f"shape {arr.shape}",
             "Pass the image_shape of the data (model.spec.image_shape), e.g. (28, 28) for MNIST or (8, 8) for "
             "digits.")
    if arr.size == 0:
        fail(owner, name, "at least one image", f"shape {arr.shape}")
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    arr = (arr.astype(np.float64) / scale).reshape(*arr.shape[:ndim_lead], h, w, c)
    if not np.isfinite(arr).all():
        fail(owner, name, "finite pixel values", "NaN or inf", "Check the model's output for divergence.")
    return arr


def check_labels(owner: str, labels: Any, n: int, *, name: str = "labels") -> np.ndarray | None:
    """None, or a 1-D array of `n` class labels."""
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        fail(owner, name, f"None or a 1-D array of {n} labels (one per example)", f"shape {arr.shape}",
             "Pass the labels of exactly the examples plotted, e.g. y_test[:len(x)].")
    return arr


def check_class_names(owner: str, class_names: Any, labels: np.ndarray | None) -> tuple[str, ...] | None:
    """None, or `class_names` as a tuple of str naming every one of `labels` (each label indexes it)."""
    if class_names is None:
        return None
    if not (isinstance(class_names, (list, tuple)) and class_names and all(isinstance(n, str) for n in class_names)):
        fail(owner, "class_names", "None or a non-empty sequence of str, the name of each label", class_names,
             "Pass dataset.class_names.")
    if labels is not None and len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0
                                               or labels.max() >= len(class_names)):
        fail(owner, "class_names", f"a name for every label (labels index it; {len(class_names)} names given)",
             f"labels {labels.dtype} in [{labels.min()}, {labels.max()}]",
             "Pass integer labels 0..len(class_names)-1, or class_names=None.")
    return tuple(class_names)


def label_text(label: Any, class_names: Sequence[str] | None, limit: int | None = None) -> str:
    """How a label is shown: its class name when there are names (cut to `limit` characters), else the label."""
    text = str(label) if class_names is None else class_names[int(label)]
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def check_positive(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        fail(owner, name, "an int >= 1", value)
    return int(value)


def image_grid_figure(cells: np.ndarray, *, row_labels: Sequence[str] | None = None,
                      col_titles: Sequence[str | None] | None = None, title: str | None = None) -> Any:
    """A figure showing cells (rows, cols, H, W, C) in [0, 1] (C 1 or 3) as a grid (NaN cells stay blank), drawn as
    one image.

    Each cell is CELL inches high (and CELL * (W + g) / (H + g) wide, i.e. CELL for square images), with a PAD
    border, ROW_LABEL inches on the left for `row_labels`, COL_TITLE on top for `col_titles` and TITLE for `title`:
    (cols * CELL + 2 * PAD [+ ROW_LABEL]) x (rows * CELL + 2 * PAD [+ COL_TITLE] [+ TITLE]) inches.
    One imshow of a mosaic (a g-pixel white gap after each image) instead of an Axes per image keeps it fast.
    """
    plt = pyplot()
    rows, cols, h, w, c = cells.shape
    gap = max(1, round(0.06 * max(h, w)))
    mosaic = np.full((rows * (h + gap), cols * (w + gap), c), np.nan)
    for i in range(rows):
        for j in range(cols):
            mosaic[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = cells[i, j]
    cell_h, cell_w = CELL, CELL * (w + gap) / (h + gap)
    left = PAD + (ROW_LABEL if row_labels is not None else 0.0)
    top = PAD + (COL_TITLE if col_titles is not None else 0.0) + (TITLE if title else 0.0)
    width, height = cols * cell_w + left + PAD, rows * cell_h + top + PAD
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, PAD / height, cols * cell_w / width, rows * cell_h / height))
    if c == 1:  # grey levels: NaN (gaps, blank cells) drawn white by the colour map
        ax.imshow(np.clip(mosaic[..., 0], 0.0, 1.0), cmap=plt.get_cmap("gray").with_extremes(bad="white"), vmin=0.0,
                  vmax=1.0, interpolation="nearest", aspect="auto")
    else:  # RGB: no colour map, so the gaps are painted white here
        ax.imshow(np.clip(np.nan_to_num(mosaic, nan=1.0), 0.0, 1.0), interpolation="nearest", aspect="auto")
    ax.axis("off")
    img_h, img_w = cell_h * h / (h + gap), cell_w * w / (w + gap)  # inches of one image inside its cell
    for i, label in enumerate(row_labels or []):
        fig.text((left - 0.08) / width, 1.0 - (top + i * cell_h + img_h / 2) / height, label, ha="right",
                 va="center", fontsize=9)
    for j, text in enumerate(col_titles or []):
        if text:
            fig.text((left + j * cell_w + img_w / 2) / width, 1.0 - (top - 0.05) / height, text, ha="center",
                     va="bottom", fontsize=9)
    if title:
        fig.suptitle(title, y=1.0 - (PAD + 0.5 * TITLE) / height, va="center", fontsize=11)
    return fig


def as_cells(images: np.ndarray, ncols: int) -> np.ndarray:
    """(N, H, W, C) -> (ceil(N / ncols), ncols, H, W, C), the missing cells of the last row NaN (blank)."""
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    cells = np.full((rows * ncols, h, w, c), np.nan)
    cells[:n] = images
    return cells.reshape(rows, ncols, h, w, c)
