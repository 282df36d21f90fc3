"""Per-example scores (`vae_core.score`: −log p̂(x) in nats) as a histogram: NumPy in, PNG out.

With a reference set (the data the model should find typical, such as its own test split), the reference's
histogram is drawn over the scores', and a threshold (a quantile of the reference scores) as a vertical line, with
the share of scores above it. Both histograms are densities on shared bins, so sets of different sizes compare.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.checks import fail
from vae_core.io.atomic import atomic_write
from vae_core.viz.figures import DPI, check_dpi, check_path, pyplot

SCORES_SIZE = (7.0, 4.2)  # inches
BINS = 60  # shared bins over the range of both sets
COLORS = ("tab:blue", "tab:orange")  # the scores, the reference


def _check_scores(owner: str, name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "fiu":
        fail(owner, name, "a non-empty 1-D array of scores (one per example)",
             f"{type(values).__name__} of shape {arr.shape} and dtype {arr.dtype}", "Pass vae_core.score(model, x).")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        fail(owner, name, "finite scores", f"{int((~np.isfinite(arr)).sum())} NaN or inf",
             "Score finite data; vae_core.score raises on a non-finite estimate.")
    return arr


def scores_png(scores: np.ndarray, *, reference: np.ndarray | None = None, threshold: float | None = None,
               quantile: float | None = None, label: str = "data", reference_label: str = "reference",
               title: str | None = None, dpi: int = DPI) -> bytes:
    """The histogram of `scores` (N,) as PNG bytes (SCORES_SIZE inches at `dpi`); with `reference` (M,), its
    histogram too; with `threshold` (nats; `quantile`, the reference quantile it is, for the legend), a vertical line
    and the count of scores above it. `label` and `reference_label` name the two sets in the legend."""
    owner = "plot_scores"
    scores = _check_scores(owner, "scores", scores)
    reference = None if reference is None else _check_scores(owner, "reference", reference)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating))
                                  or not math.isfinite(threshold)):
        fail(owner, "threshold", "None or a finite number of nats", threshold)
    check_dpi(owner, dpi)
    plt = pyplot()
    both = scores if reference is None else np.concatenate([scores, reference])
    edges = np.histogram_bin_edges(both, bins=BINS)  # (BINS + 1,) shared by the two sets
    fig, ax = plt.subplots(figsize=SCORES_SIZE)
    ax.hist(scores, bins=edges, density=True, color=COLORS[0], alpha=0.6, label=f"{label} (n={len(scores):,})")
    if reference is not None:
        ax.hist(reference, bins=edges, density=True, color=COLORS[1], alpha=0.5, histtype="stepfilled",
                label=f"{reference_label} (n={len(reference):,})")
    if threshold is not None:
        above = int((scores > threshold).sum())
        which = f"{quantile:g} quantile of {reference_label}" if quantile is not None else "threshold"
        ax.axvline(threshold, color="black", ls="--", lw=1.2,
                   label=f"{which}: {threshold:.1f} nats; {above:,} of {len(scores):,} {label} above "
                         f"({100 * above / len(scores):.1f}%)")
    ax.set_xlabel("score: −log p̂(x), nats (higher: less likely under the model)")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout(pad=0.4)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    return buffer.getvalue()


def plot_scores(scores: np.ndarray, path: str | os.PathLike, *, reference: np.ndarray | None = None,
                threshold: float | None = None, quantile: float | None = None, label: str = "data",
                reference_label: str = "reference", title: str | None = None, dpi: int = DPI) -> Path:
    """Write `scores_png(...)` to `path` atomically (a reader sees the old file or the new one) and return it."""
    check_path("plot_scores", path)
    png = scores_png(scores, reference=reference, threshold=threshold, quantile=quantile, label=label,
                     reference_label=reference_label, title=title, dpi=dpi)
    return atomic_write(path, png)
