"""Latent-space plots: codes (N, latent_dim) and class labels in, PNG out. t-SNE needs scikit-learn."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vae_core.checks import check_float, fail
from vae_core.viz.figures import (DPI, check_class_names, check_dpi, check_labels, check_path, check_positive,
                                  label_text, pyplot, save)

SCATTER_SIZE = (6.4, 5.0)  # inches, plot_latent_scatter and plot_tsne
MAX_LEGEND_CLASSES = 20  # more distinct labels than this get a colorbar instead of a legend
TSNE_MIN_POINTS = 5  # fewer points leave t-SNE no neighbours to embed by


def _codes(owner: str, name: str, z: Any) -> np.ndarray:
    arr = np.asarray(z)
    if arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        fail(owner, name, "a numeric array of shape (N, latent_dim) with N >= 1",
             f"shape {arr.shape}, dtype {arr.dtype}", "Pass the encoder means, e.g. gallery.encode_mean(model, x).")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        fail(owner, name, "finite values", "NaN or inf")
    return arr


def _scatter(xy: np.ndarray, labels: np.ndarray | None, path: str | os.PathLike, dpi: int, *,
             title: str, xlabel: str, ylabel: str, names: tuple[str, ...] | None = None,
             class_y: bool = False) -> Path:
    """Points coloured by class: a legend for up to MAX_LEGEND_CLASSES classes (the class `names` when given), else
    a colorbar. `class_y`: y is the label, and its ticks name the classes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=SCATTER_SIZE)
    size = float(np.clip(3000.0 / len(xy), 3.0, 30.0))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, lw=0, rasterized=True)
    else:
        classes = np.unique(labels)
        if len(classes) <= MAX_LEGEND_CLASSES:
            cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
            for i, c in enumerate(classes):
                pts = xy[labels == c]
                ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=0.7, lw=0, color=cmap(i), label=label_text(c, names),
                           rasterized=True)
            ax.legend(title="class", fontsize=8, title_fontsize=8, markerscale=max(1.0, 25.0 / size) ** 0.5,
                      loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=size, alpha=0.7, lw=0, cmap="viridis",
                                rasterized=True)
            fig.colorbar(points, ax=ax, label="label")
    if class_y and labels is not None and names is not None:
        classes = np.unique(labels)
        ax.set_yticks(classes.astype(float), [label_text(c, names) for c in classes], fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.2)
    return save(fig, path, dpi)


def plot_latent_scatter(z: np.ndarray, labels: Sequence | np.ndarray | None, path: str | os.PathLike, *,
                        dims: tuple[int, int] = (0, 1), title: str | None = None,
                        class_names: Sequence[str] | None = None, dpi: int = DPI) -> Path:
    """Scatter of two latent coordinates (`dims`, the first two by default) coloured by class; the legend shows
    `class_names[label]` when given, else the label.

    With latent_dim 1, z0 is plotted against the class label. Size: SCATTER_SIZE inches.
    """
    owner = "plot_latent_scatter"
    check_path(owner, path)
    check_dpi(owner, dpi)
    z = _codes(owner, "z", z)
    labels = check_labels(owner, labels, len(z))
    names = check_class_names(owner, class_names, labels)
    latent_dim = z.shape[1]
    if latent_dim == 1:
        y = np.zeros(len(z)) if labels is None else labels.astype(float)
        return _scatter(np.stack([z[:, 0], y], axis=1), labels, path, dpi, title=title or "latent space (1-D)",
                        xlabel="z0", ylabel="class", names=names, class_y=True)
    ok = (isinstance(dims, (tuple, list)) and len(dims) == 2 and dims[0] != dims[1]
          and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d < latent_dim for d in dims))
    if not ok:
        fail(owner, "dims", f"two different latent indices in [0, {latent_dim})", dims)
    i, j = int(dims[0]), int(dims[1])
    default = "latent means" if latent_dim == 2 else f"latent means: dims {i}, {j} of {latent_dim}"
    return _scatter(z[:, [i, j]], labels, path, dpi, title=title or default, xlabel=f"z{i}", ylabel=f"z{j}",
                    names=names)


def subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of min(n, max_points) distinct rows, a function of (n, max_points, seed) alone."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def plot_tsne(mu: np.ndarray, labels: Sequence | np.ndarray | None, path: str | os.PathLike, *, seed: int = 0,
              max_points: int = 2000, perplexity: float = 30.0, title: str | None = None,
              class_names: Sequence[str] | None = None, dpi: int = DPI) -> Path:
    """2-D t-SNE (scikit-learn) of the latent means, on at most `max_points` rows chosen by `seed`, coloured by class
    (`class_names[label]` in the legend when given).

    The same inputs and seed give the same picture (t-SNE runs single-threaded). Size: SCATTER_SIZE inches.
    """
    owner = "plot_tsne"
    check_path(owner, path)
    check_dpi(owner, dpi)
    max_points = check_positive(owner, "max_points", max_points)
    check_float(owner, "perplexity", perplexity, low=0.0, low_open=True)
    mu = _codes(owner, "mu", mu)
    labels = check_labels(owner, labels, len(mu))
    names = check_class_names(owner, class_names, labels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail(owner, "seed", "an int >= 0", seed)
    if len(mu) < TSNE_MIN_POINTS:
        fail(owner, "mu", f"at least {TSNE_MIN_POINTS} points for t-SNE", f"{len(mu)}")
    try:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError as e:
        raise ImportError("plot_tsne needs scikit-learn; install it with: pip install scikit-learn") from e
    idx = subsample(len(mu), max_points, int(seed))
    pts = mu[idx]
    tsne = TSNE(n_components=2, perplexity=min(float(perplexity), (len(pts) - 1) / 3.0),
                init="pca" if pts.shape[1] >= 2 else "random", random_state=int(seed))
    # One thread: the result does not depend on the thread count, and on small shared machines OpenMP's
    # busy-waiting (worse with torch's own OpenMP runtime loaded) makes multi-threaded t-SNE slower than serial.
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(pts)
    return _scatter(xy, None if labels is None else labels[idx], path, dpi,
                    title=title or f"t-SNE of the latent means ({len(pts)} points)", xlabel="t-SNE 1",
                    ylabel="t-SNE 2", names=names)
