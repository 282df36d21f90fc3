"""Training curves: NumPy/lists in, PNG out. A history is the per-epoch dict both backends' `fit` return
(train_loss, train_recon, train_kl, val_loss, val_recon, val_kl, lr, seconds; val_* empty without test data).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vae_core.checks import fail
from vae_core.viz.figures import DPI, check_dpi, check_path, pyplot, save

History = Mapping[str, Sequence[float]]
TERMS = (("loss", "-ELBO (nats)"), ("recon", "reconstruction NLL (nats)"), ("kl", "KL(q(z|x) || p(z)) (nats)"))
HISTORY_SIZE = (13.0, 3.6)  # inches, plot_history
COMPARISON_SIZE = (13.0, 6.4)  # inches, plot_backend_comparison


def check_history(owner: str, argument: str, hist: Any) -> dict[str, np.ndarray]:
    """{"train_loss": (E,), ..., "val_kl": (E,) or absent} as float arrays (None -> NaN), checked."""
    if not isinstance(hist, Mapping):
        fail(owner, argument, "a history dict as returned by fit()", type(hist).__name__)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        for term, _ in TERMS:
            key = f"{split}_{term}"
            values = hist.get(key)
            if values is None and split == "train":
                fail(owner, argument, f"a history with the key {key!r} (as returned by fit())",
                     f"keys {sorted(hist)}")
            if values is None or len(values) == 0:
                continue
            out[key] = np.array([np.nan if v is None else v for v in values], dtype=float)
    n = len(out["train_loss"])
    if n == 0:
        fail(owner, argument, "at least one epoch of train_loss", "an empty list")
    for key, values in out.items():
        if len(values) != n:
            fail(owner, f"{argument}[{key!r}]", f"{n} values (one per epoch, like train_loss) or none",
                 f"{len(values)} values")
    return out


def _runs(owner: str, histories: Any) -> dict[str, dict[str, np.ndarray]]:
    if isinstance(histories, Mapping) and "train_loss" in histories:
        histories = {"": histories}  # one history passed directly
    if not isinstance(histories, Mapping) or not histories:
        fail(owner, "histories", "a non-empty dict {label: history}, e.g. {'torch': fit(...)}", histories)
    return {str(label): check_history(owner, f"histories[{str(label)!r}]", hist) for label, hist in histories.items()}


def _style_axis(ax: Any, title: str | None = None, ylabel: str | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_xlabel("epoch")
    if title:
        ax.set_title(title, fontsize=10)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=9)


def _plot_run(axes: Sequence[Any], label: str, curves: Mapping[str, np.ndarray], color: str) -> None:
    epochs = np.arange(1, len(curves["train_loss"]) + 1)
    marker = "o" if len(epochs) <= 20 else None
    prefix = f"{label} " if label else ""
    for ax, (term, _) in zip(axes, TERMS):
        ax.plot(epochs, curves[f"train_{term}"], color=color, ls="--", marker=marker, ms=3, label=f"{prefix}train")
        if f"val_{term}" in curves:
            ax.plot(epochs, curves[f"val_{term}"], color=color, marker=marker, ms=3, label=f"{prefix}test")


def plot_history(histories: Mapping[str, History] | History, path: str | os.PathLike, *, dpi: int = DPI) -> Path:
    """Train (dashed) and test (solid) curves of -ELBO, reconstruction NLL and KL, one colour per run.

    `histories`: {label: history} (e.g. {"torch": h1, "tf": h2}) or a single history. Size: HISTORY_SIZE inches.
    """
    owner = "plot_history"
    check_path(owner, path)
    check_dpi(owner, dpi)
    runs = _runs(owner, histories)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=HISTORY_SIZE)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, curves) in enumerate(runs.items()):
        _plot_run(axes, label, curves, colors[i % len(colors)])
    for ax, (_, title) in zip(axes, TERMS):
        _style_axis(ax, title)
    axes[0].legend(fontsize=8)
    return save(fig, path, dpi)


def _ordered_pair(owner: str, histories: Any) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """The two runs as (reference, other): torch first when the labels are torch and tf, else in given order."""
    if isinstance(histories, Mapping) and "train_loss" in histories:
        fail(owner, "histories", "a dict of exactly two histories, {'torch': h_torch, 'tf': h_tf}",
             "a single history", "Pass both backends' histories, keyed by backend name.")
    runs = _runs(owner, histories)
    if len(runs) != 2:
        fail(owner, "histories", "a dict of exactly two histories, {'torch': h_torch, 'tf': h_tf}",
             f"{len(runs)} run(s): {list(runs)}")
    labels = ["torch", "tf"] if set(runs) == {"torch", "tf"} else list(runs)
    return (labels[0], runs[labels[0]]), (labels[1], runs[labels[1]])


def plot_backend_comparison(histories: Mapping[str, History], path: str | os.PathLike, *, dpi: int = DPI) -> Path:
    """Two runs side by side: top row, both runs' train/test curves per term (-ELBO, recon, KL); bottom row,
    their per-epoch difference (tf - torch, or second - first) for train and test, over the epochs both have.

    Size: COMPARISON_SIZE inches.
    """
    owner = "plot_backend_comparison"
    check_path(owner, path)
    check_dpi(owner, dpi)
    (ref_label, ref), (other_label, other) = _ordered_pair(owner, histories)
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=COMPARISON_SIZE, sharex="col")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    _plot_run(axes[0], ref_label, ref, colors[0])
    _plot_run(axes[0], other_label, other, colors[1])
    n = min(len(ref["train_loss"]), len(other["train_loss"]))
    epochs = np.arange(1, n + 1)
    for j, (term, title) in enumerate(TERMS):
        ax = axes[1, j]
        ax.axhline(0.0, color="0.5", lw=0.8)
        for split, ls, name in (("train", "--", "train"), ("val", "-", "test")):
            key = f"{split}_{term}"
            if key in ref and key in other:
                ax.plot(epochs, other[key][:n] - ref[key][:n], color=colors[2], ls=ls,
                        marker="o" if n <= 20 else None, ms=3, label=name)
        _style_axis(axes[0, j], title)
        _style_axis(ax, ylabel=f"{other_label} − {ref_label}")
        axes[0, j].set_xlabel("")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3), useOffset=False)
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8, title="difference", title_fontsize=8)
    return save(fig, path, dpi)
