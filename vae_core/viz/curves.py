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


def _ordered_runs(owner: str, histories: Any, reference: str | None) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The runs as [(label, curves), ...], the reference first, then the others in the given order. The reference:
    `reference`, else torch when the labels are exactly torch and tf (the figure's tf - torch), else the first."""
    expected = "a dict of two or more histories, {label: history}, e.g. {'torch': h_torch, 'tf': h_tf}"
    if isinstance(histories, Mapping) and "train_loss" in histories:
        fail(owner, "histories", expected, "a single history",
             "Pass two or more backends' histories, keyed by backend name.")
    runs = _runs(owner, histories)
    if len(runs) < 2:
        fail(owner, "histories", expected, f"{len(runs)} run(s): {list(runs)}")
    if reference is None:
        reference = "torch" if set(runs) == {"torch", "tf"} else next(iter(runs))
    elif str(reference) not in runs:
        fail(owner, "reference", f"None or one of the labels of histories {list(runs)}", reference)
    reference = str(reference)
    return [(reference, runs[reference]), *((label, curves) for label, curves in runs.items() if label != reference)]


def plot_backend_comparison(histories: Mapping[str, History], path: str | os.PathLike, *, dpi: int = DPI,
                            reference: str | None = None) -> Path:
    """Two or more runs side by side: top row, every run's train/test curves per term (-ELBO, recon, KL); bottom
    row, each other run's per-epoch difference from the reference (other - reference, e.g. tf - torch) for train
    and test, over the epochs both have.

    reference: the label of `histories` the differences are taken against; None: torch when the labels are exactly
    torch and tf, else the first run given. Size: COMPARISON_SIZE inches.
    """
    owner = "plot_backend_comparison"
    check_path(owner, path)
    check_dpi(owner, dpi)
    (ref_label, ref), *others = _ordered_runs(owner, histories, reference)
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=COMPARISON_SIZE, sharex="col")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    _plot_run(axes[0], ref_label, ref, colors[0])
    for i, (label, curves) in enumerate(others, start=1):
        _plot_run(axes[0], label, curves, colors[i % len(colors)])
    # one other run: its difference in a colour of its own (the third); more: each in its run's colour, labelled
    several = len(others) > 1
    for j, (term, title) in enumerate(TERMS):
        ax = axes[1, j]
        ax.axhline(0.0, color="0.5", lw=0.8)
        for i, (label, other) in enumerate(others, start=1):
            n = min(len(ref["train_loss"]), len(other["train_loss"]))
            epochs = np.arange(1, n + 1)
            for split, ls, name in (("train", "--", "train"), ("val", "-", "test")):
                key = f"{split}_{term}"
                if key in ref and key in other:
                    ax.plot(epochs, other[key][:n] - ref[key][:n], color=colors[(i if several else 2) % len(colors)],
                            ls=ls, marker="o" if n <= 20 else None, ms=3,
                            label=f"{label} {name}" if several else name)
        _style_axis(axes[0, j], title)
        _style_axis(ax, ylabel=f"run − {ref_label}" if several else f"{others[0][0]} − {ref_label}")
        axes[0, j].set_xlabel("")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3), useOffset=False)
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8, title="difference", title_fontsize=8)
    return save(fig, path, dpi)
