"""Examples as rows: the layouts a batch may take, and the checks every API boundary makes on them."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vae_core.checks import listed
from vae_core.data.items import ItemRows
from vae_core.data.lazy import LazyRows
from vae_core.data.mapped import MappedRows, is_mapped
from vae_core.data.examples import refuse_masked
from vae_core.data.sources import as_source
from vae_core.data.stream import BatchStream
from vae_core.model.spec import VAESpec


def example_layouts(spec: VAESpec) -> str:
    """The shapes a batch of this spec's examples may take, for messages: "(N, D)" and the image layouts."""
    layouts = [f"(N, {spec.input_dim})"]
    if spec.image_shape is not None:
        h, w, c = (*spec.image_shape, 1)[:3]
        layouts.append(f"(N, {h}, {w}, {c})")
        if c == 1:
            layouts.append(f"(N, {h}, {w})")
    return " or ".join(layouts)

def rows_shape(shape: tuple[int, ...], spec: VAESpec, argument: str, *, single: bool = False) -> tuple[int, int]:
    """The (N, D) rows a batch of `shape` is, in channels-last order: (N, D), or images (N, H, W, C), and (N, H, W)
    when C is 1, of the spec's image_shape. `single`: one example (D,) counts too, as (1, D).

    Raises ValueError naming `argument`, the shapes allowed and the shape found.
    """
    shape = tuple(int(s) for s in shape)
    d = spec.input_dim
    image = None if spec.image_shape is None else (*spec.image_shape, 1)[:3]  # (H, W, C)
    if len(shape) == 2 and shape[1] == d:
        return shape[0], d
    if single and shape == (d,):
        return 1, d
    if image is not None and (shape[1:] == image or (image[2] == 1 and shape[1:] == image[:2])):
        return shape[0], d
    if len(shape) == 1:
        fix = "For a single example use x.reshape(1, -1)"
    elif image is None and len(shape) > 2:
        fix = "Flatten images with x.reshape(len(x), -1), or give the spec an image_shape"
    else:
        fix = "Build the model with a VAESpec whose input_dim and image_shape match the data"
    raise ValueError(f"{argument} must have shape {example_layouts(spec)} to match the spec (input_dim="
                     f"{d}, image_shape={spec.image_shape}); got {shape}. {fix}")

def check_data(x: Any, spec: VAESpec, argument: str = "x", *, keep_uint8: bool = False,
               stream: bool = False) -> np.ndarray | LazyRows:
    """Validate a batch of examples at the API boundary and return it as C-contiguous (N, D) rows.

    Accepted layouts: (N, D) rows, or images (N, H, W, C) (and (N, H, W) for one channel) of the spec's
    image_shape, channels last; images become rows without a copy. Accepted dtypes: float32 or float64 (cast to
    float32), and uint8 images (scaled by 1/255: float32 in [0, 1], or kept uint8 with `keep_uint8`, 4x smaller,
    for a trainer that converts per batch). A `vae_core.data.lazy.LazyRows` is read whole, unless `stream`: then a
    `vae_core.data.mapped.MappedRows`, or a C-contiguous `np.memmap` of a file (`is_mapped`), comes back as (N, D)
    `MappedRows` (uint8 kept), and a map-style dataset (`__len__` and `__getitem__`, such as a torch `Dataset`) as
    (N, D) `vae_core.data.items.ItemRows`, and an iterable of batches (a DataLoader, a tf.data.Dataset) as (N, D)
    `vae_core.data.stream.BatchStream`, which a trainer reads a batch at a time (each item or batch checked as it is
    read); without `stream`, an iterable of batches is read whole, one pass (`vae_core.data.sources`).
    Rejected with ValueError/TypeError naming `argument`: other types, dtypes and shapes, empty, NaN/inf, and, for a
    Bernoulli decoder, values outside [0, 1].
    """
    x = refuse_masked(x, argument)  # a mask the checks and the trainer would ignore
    if stream and is_mapped(x):
        x = MappedRows(x)
    if not isinstance(x, (np.ndarray, MappedRows)):
        # ItemRows, a BatchStream (or its one pass, read now), or the TypeError naming the kinds
        x = as_source(x, spec, argument, example_layouts(spec), stream=stream)
    if stream and isinstance(x, MappedRows):
        return _check_mapped(x, spec, argument)
    if stream and isinstance(x, (ItemRows, BatchStream)):
        return x  # (N, D); its items or batches are checked as they are read
    if isinstance(x, LazyRows):
        x = np.asarray(x)
    if x.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"{argument} must be float32, float64 or uint8 (scaled by 1/255); got dtype {x.dtype}")
    x = x.reshape(rows_shape(x.shape, spec, argument))  # (N, D)
    if x.shape[0] == 0:
        raise ValueError(f"{argument} is empty (shape {x.shape}); pass at least one example")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x) if keep_uint8 else np.ascontiguousarray(x, np.float32) / np.float32(255.0)
    x = np.ascontiguousarray(x, np.float32)
    _check_values(spec, argument, np.flatnonzero(~np.isfinite(x).all(axis=1)),
                  lambda: (float(x.min()), float(x.max())))
    return x

def _check_values(spec: VAESpec, argument: str, bad: np.ndarray, value_range: Callable[[], tuple[float, float]]) -> None:
    """The value checks of float examples: no examples with NaN/inf (`bad`: their row numbers, which the message
    names), and for a Bernoulli decoder `value_range()` (low, high) of the others inside [0, 1]."""
    if len(bad):
        raise ValueError(f"{argument} holds NaN or inf values in {len(bad)} example(s); clean or drop them first "
                         f"(row{'s' if len(bad) > 1 else ''} {listed(bad)}, counted from 0)")
    if spec.likelihood == "bernoulli":
        low, high = value_range()
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{argument} must lie in [0, 1] for a Bernoulli decoder; got values in "
                             f"[{low:.4g}, {high:.4g}]. Scale pixels to [0, 1] or use likelihood='gaussian'")

def _check_mapped(x: MappedRows, spec: VAESpec, argument: str) -> MappedRows:
    """check_data's checks on examples that stay on disk: float values are scanned a chunk at a time."""
    x = x.reshape(rows_shape(x.shape, spec, argument))  # (N, D), still on disk
    if len(x) == 0:
        raise ValueError(f"{argument} is empty (shape {x.shape}); pass at least one example")
    if x.dtype != np.uint8:
        bad, low, high, start = [], np.inf, -np.inf, 0
        for chunk in x.chunks():
            rows_bad = ~np.isfinite(chunk).all(axis=1)  # (chunk,) rows with a NaN or an inf
            bad.extend((start + np.flatnonzero(rows_bad)).tolist())
            if not rows_bad.all():  # the range of the finite rows: a NaN never hides in it
                low, high = min(low, float(chunk[~rows_bad].min())), max(high, float(chunk[~rows_bad].max()))
            start += len(chunk)
        _check_values(spec, argument, np.asarray(bad, np.int64), lambda: (low, high))
    return x
