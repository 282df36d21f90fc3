"""The model-facing side of the plots: a trained model (either backend) and data in, a folder of PNGs out.

Backend-neutral: it uses only the methods both backends' models share (encode, decode, reconstruct, sample,
interpolate, .spec) and turns their tensors into NumPy with `to_numpy`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from vae_core.checks import fail
from vae_core.data.rows import check_data
from vae_core.metrics.api import posterior_means
from vae_core.registry import backend_of
from vae_core.viz import curves, grids, latent
from vae_core.viz.curves import check_history
from vae_core.viz.figures import DPI, check_class_names, check_dpi, check_labels, check_positive, label_text

# File names written by plot_all (keys of its result), for the CLI (`vae plot`) and the README.
RECONSTRUCTIONS_PNG = "reconstructions.png"
SAMPLES_PNG = "samples.png"
LATENT_SCATTER_PNG = "latent_scatter.png"
LATENT_TSNE_PNG = "latent_tsne.png"
TRAVERSALS_PNG = "traversals.png"
INTERPOLATION_PNG = "interpolation.png"
HISTORY_PNG = "history.png"
GALLERY_FILES = (RECONSTRUCTIONS_PNG, SAMPLES_PNG, LATENT_SCATTER_PNG, LATENT_TSNE_PNG, TRAVERSALS_PNG,
                 INTERPOLATION_PNG, HISTORY_PNG)

TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 9)
MAX_TRAVERSAL_DIMS = 10  # plot_all shows the latent dims whose means vary most over x, at most this many
ENCODE_BATCH = 1024


def to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor, TF tensor or array-like as a float32 NumPy array (detached, on the CPU)."""
    if hasattr(tensor, "detach"):  # torch.Tensor
        tensor = tensor.detach().cpu().numpy()
    elif hasattr(tensor, "numpy"):  # tf.Tensor / keras variable
        tensor = tensor.numpy()
    return np.asarray(tensor, dtype=np.float32)


@contextlib.contextmanager
def _native(model: Any) -> Iterator[Any]:
    """Yields a function NumPy float32 -> the model's input type, with autograd off (the backend's `inference`)."""
    with backend_of(model)[1].device.inference(model) as native:
        yield native


def _data_mean(model: Any, out: np.ndarray) -> np.ndarray:
    """The mean of p(x|z) from decoder outputs: sigmoid(logits) for Bernoulli, else the first D columns."""
    spec = model.spec
    if spec.likelihood == "bernoulli":
        return (1.0 / (1.0 + np.exp(-out.astype(np.float64)))).astype(np.float32)
    return out[:, :spec.input_dim]


def encode_mean(model: Any, x: Any, *, batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """Encoder means mu(x) (N, latent_dim) float32, `batch_size` examples at a time."""
    batch_size = check_positive("encode_mean", "batch_size", batch_size)
    # The model stays where it is: a torch model on its own device, TF on its default placement.
    return posterior_means(model, x, batch_size, device=backend_of(model)[1].device.model_device(model))


def traversal_grid(model: Any, *, dims: Sequence[int] | None = None,
                   values: Sequence[float] | np.ndarray = TRAVERSAL_VALUES,
                   base: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Decoded latent traversals (n_dims, n_values, D): row i decodes `base` with dim dims[i] set to each value.

    `dims` default to all latent dims, `base` to the prior mean 0. Pixels are the mean of p(x|z).
    """
    latent = model.spec.latent_dim
    dims = list(range(latent)) if dims is None else list(dims)
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d < latent
                           for d in dims):
        fail("traversal_grid", "dims", f"None or a non-empty list of latent indices in [0, {latent})", dims)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        fail("traversal_grid", "values", "a non-empty 1-D sequence of finite numbers", values)
    base_z = np.zeros(latent) if base is None else np.asarray(base, dtype=np.float64)
    if base_z.shape != (latent,) or not np.isfinite(base_z).all():
        fail("traversal_grid", "base", f"None or {latent} finite numbers (one latent code)",
             f"shape {base_z.shape}", "Pass e.g. encode_mean(model, x[:1])[0].")
    z = np.tile(base_z, (len(dims), len(values), 1))  # (n_dims, n_values, L)
    for i, d in enumerate(dims):
        z[i, :, d] = values
    with _native(model) as native:
        out = to_numpy(model.decode(native(z.reshape(-1, latent))))  # (n_dims * n_values, D|2D)
    return _data_mean(model, out).reshape(len(dims), len(values), model.spec.input_dim)


def _check_plot_all_args(model: Any, x: Any, labels: Any, history: Any, n: Any, seed: Any, tsne_points: Any,
                         dpi: Any, class_names: Any) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Every argument checked before anything is written."""
    owner = "plot_all"
    backend_of(model)
    shape = model.spec.image_shape
    if shape is None:
        fail(owner, "model", "a model whose spec has an image_shape", f"input_dim {model.spec.input_dim}",
             "Build it with VAESpec(input_dim=..., image_shape=(H, W)).")
    x = check_data(x, model.spec, "x")
    labels = check_labels(owner, labels, len(x))
    check_class_names(owner, class_names, labels)
    check_positive(owner, "n", n)
    check_positive(owner, "tsne_points", tsne_points)
    check_dpi(owner, dpi)
    if history is not None:
        check_history(owner, "history", history)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail(owner, "seed", "an int >= 0", seed)
    return x, labels, shape


def _traversal_title(shown: int, latent_dim: int) -> str:
    if shown < latent_dim:
        return f"latent traversals: the {shown} of {latent_dim} dims whose means vary most, others at 0"
    return "latent traversals (other dims at 0)"


def _interpolation_ends(labels: np.ndarray | None, picks: np.ndarray) -> tuple[int, int]:
    """Two of the picked examples, of different classes when labels allow."""
    first = int(picks[0])
    others = [int(i) for i in picks[1:] if labels is None or labels[i] != labels[first]]
    return first, (others[0] if others else int(picks[-1]))


def plot_all(model: Any, x: Any, labels: Sequence | np.ndarray | None, out_dir: str | os.PathLike, *,
             history: Mapping[str, Sequence[float]] | None = None, seed: int = 0, n: int = 10,
             tsne_points: int = 2000, class_names: Sequence[str] | None = None,
             dpi: int = DPI) -> dict[str, Path]:
    """Write the gallery of `model` on `x` (N, D) with class `labels` into `out_dir`; returns {file name: path}.
    `class_names[label]` names each label in the legends and titles (a dataset's `class_names`), else the label.

    Files: RECONSTRUCTIONS_PNG (n examples chosen by `seed`), SAMPLES_PNG (n*n prior samples), LATENT_SCATTER_PNG,
    LATENT_TSNE_PNG (at most `tsne_points` points; left out for fewer than latent.TSNE_MIN_POINTS), TRAVERSALS_PNG
    (the up-to-MAX_TRAVERSAL_DIMS dims whose means vary most over x), INTERPOLATION_PNG (n steps between two examples), and HISTORY_PNG if `history`.
    """
    x, labels, shape = _check_plot_all_args(model, x, labels, history, n, seed, tsne_points, dpi, class_names)
    names = None if class_names is None else tuple(class_names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picks = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
    picked_labels = None if labels is None else labels[picks]
    mu = encode_mean(model, x)  # (N, L)
    dims = np.argsort(-mu.var(axis=0), kind="stable")[:MAX_TRAVERSAL_DIMS].tolist()
    a, b = _interpolation_ends(labels, picks)
    ends = ("x1", "x2") if labels is None else (f"x1 ({label_text(labels[a], names, grids.COLUMN_TITLE_CHARS)})",
                                                 f"x2 ({label_text(labels[b], names, grids.COLUMN_TITLE_CHARS)})")

    files = {
        RECONSTRUCTIONS_PNG: lambda p: grids.plot_reconstructions(
            x[picks], to_numpy(model.reconstruct(x[picks])), shape, p, labels=picked_labels, n=n,
            class_names=names, dpi=dpi),
        SAMPLES_PNG: lambda p: grids.plot_samples(to_numpy(model.sample(n * n, seed=seed)), shape, p, ncols=n,
                                                  dpi=dpi),
        LATENT_SCATTER_PNG: lambda p: latent.plot_latent_scatter(mu, labels, p, class_names=names, dpi=dpi),
        LATENT_TSNE_PNG: lambda p: latent.plot_tsne(mu, labels, p, seed=seed, max_points=tsne_points,
                                                    class_names=names, dpi=dpi),
        TRAVERSALS_PNG: lambda p: grids.plot_traversals(
            traversal_grid(model, dims=dims), shape, p, dims=dims, values=TRAVERSAL_VALUES,
            title=_traversal_title(len(dims), model.spec.latent_dim), dpi=dpi),
        INTERPOLATION_PNG: lambda p: grids.plot_interpolation(
            to_numpy(model.interpolate(x[a], x[b], max(n, 2))), shape, p, start=ends[0], end=ends[1], dpi=dpi),
    }
    if len(x) < latent.TSNE_MIN_POINTS:  # a handful of test images (a small folder of the user's): no embedding
        del files[LATENT_TSNE_PNG]
    if history is not None:
        files[HISTORY_PNG] = lambda p: curves.plot_history({backend_of(model)[0]: history}, p, dpi=dpi)
    return {name: make(out / name) for name, make in files.items()}
