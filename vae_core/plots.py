"""Plots: NumPy in, PNG out (matplotlib's Agg backend, imported only when a plot is made)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(histories: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike) -> Path:
    """Train and validation curves of total, recon and KL, one line style per run (e.g. per backend)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for (label, hist), color in zip(histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        epochs = np.arange(1, len(hist["train_loss"]) + 1)
        for ax, term in zip(axes, ("loss", "recon", "kl")):
            ax.plot(epochs, hist[f"train_{term}"], color=color, ls="--", label=f"{label} train")
            if any(v is not None for v in hist.get(f"val_{term}", [])):
                ax.plot(epochs, hist[f"val_{term}"], color=color, label=f"{label} test")
    for ax, title in zip(axes, ("-ELBO (nats)", "reconstruction NLL", "KL")):
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, image_shape: tuple[int, int], path: str | os.PathLike, *,
                    ncols: int = 10, title: str | None = None) -> Path:
    """A grid of flattened images (N, H*W) with values in [0, 1]."""
    plt = _pyplot()
    images = np.asarray(images).reshape(-1, *image_shape)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 0.9 + (0.4 if title else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, images):
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path
