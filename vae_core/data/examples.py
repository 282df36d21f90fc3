"""Examples as a user's data source gives them, one at a time (a dataset's item) or a batch at a time (a stream's
batch), turned into checked (b, D) rows of one spec.

`ExampleReader(spec, argument)` holds what every read must agree on: the spec's input_dim and image layout, and the
dtype the first read decides (uint8 images, kept as stored and read as x / 255, or floats, as float32).
`rows(value, where, batch=...)` reads one example, or a batch whose first axis counts examples, from anything
`np.asarray` reads (a NumPy array, a CPU torch tensor, a TF tensor, a PIL image), in any of the layouts the spec
allows: rows (D,), images (H, W, C), (H, W) when C is 1, and channels-first (C, H, W) when C is 1 or 3 (torch's
layout, turned channels last). Every error names `where` (the argument and the item or batch), what was expected,
what was found, and the fix.

Used by `vae_core.data.items.ItemRows` (a map-style dataset) and `vae_core.data.stream.BatchStream` (an iterable of
batches).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vae_core.model.spec import VAESpec

EXAMPLE_DTYPES = (np.uint8, np.float32, np.float64)


def example_of(item: Any, where: str) -> Any:
    """The example an item or batch carries: itself, the first element of an (example, label, ...) tuple or list,
    or the "x" of a {"x": ..., ...} dict (what Keras' `fit` takes)."""
    if isinstance(item, (tuple, list)) and len(item):
        return item[0]
    if isinstance(item, Mapping):
        if "x" in item:
            return item["x"]
        raise TypeError(f"{where} is a {type(item).__name__} with keys {list(item)[:5]}; expected an example, an "
                        f"(example, label, ...) tuple or a dict with an 'x' key. Return the example's array (or "
                        f"wrap the data in a source that does)")
    return item


def refuse_masked(x: Any, argument: str, *, batch: bool = True) -> Any:
    """`x`, or the plain array of a NumPy masked array that masks nothing; a masked array with masked values is
    refused (ValueError naming `argument` and the fix): `np.asarray` and the trainer would read the values under its
    mask as data. `batch`: `x` holds examples along its first axis (the fix may drop examples), else it is one."""
    if not isinstance(x, np.ma.MaskedArray):
        return x
    masked = int(np.ma.count_masked(x))
    if not masked:
        return x.data
    if batch and np.ndim(x) >= 1:
        rows = int(np.ma.getmaskarray(x).reshape(len(x), -1).any(axis=1).sum())
        where = f" in {rows} of its {len(x)} examples"
        drop = "drop those examples with x[~np.ma.getmaskarray(x).reshape(len(x), -1).any(axis=1)].data"
    else:
        where, drop = "", "leave that example out"
    raise ValueError(f"{argument} is a NumPy masked array with {masked} masked value(s){where}; the mask would be "
                     f"ignored and the values under it read as data. Fill them with x.filled(value), or {drop}")


class ExampleReader:
    """Reads examples of `spec` for `argument`, checking each; the first read decides `dtype`."""

    def __init__(self, spec: VAESpec, argument: str):
        self.argument = argument
        self.d = spec.input_dim
        self.image = None if spec.image_shape is None else (*spec.image_shape, 1)[:3]  # (H, W, C)
        self.unit_range = spec.likelihood == "bernoulli"
        self.dtype: np.dtype | None = None  # uint8 or float32, set by the first read

    def rows(self, value: Any, where: str, *, batch: bool) -> np.ndarray:
        """`value`'s example(s) as checked rows of `self.dtype`: (b, D) for a batch, (D,) for one example."""
        example = example_of(value, where)
        refuse_masked(example, where, batch=batch)  # a mask np.asarray would drop
        try:
            x = np.asarray(example)
        except Exception as e:
            raise TypeError(f"{where}: its example, a {type(example).__name__}, cannot be read as an array "
                            f"({type(e).__name__}: {e}); return a NumPy array or a CPU tensor without gradients "
                            f"(x.detach().cpu())") from e
        if x.dtype not in EXAMPLE_DTYPES:
            raise TypeError(f"{where} has dtype {x.dtype} ({type(example).__name__}); expected float32, float64 "
                            f"or uint8 (read as x / 255). Convert it in the data source, e.g. x.float() / 255")
        if self.dtype is None:
            self.dtype = np.dtype(np.uint8) if x.dtype == np.uint8 else np.dtype(np.float32)
        elif (x.dtype == np.uint8) != (self.dtype == np.uint8):
            raise TypeError(f"{where} has dtype {x.dtype}, but the first {'batch' if batch else 'item'} of "
                            f"{self.argument} was {'uint8' if self.dtype == np.uint8 else 'a float'}: every "
                            f"example must be uint8 images, or every example floats")
        rows = self._as_rows(x if batch else x[None], where, batch)  # (b, D)
        if x.dtype != np.uint8:
            rows = rows.astype(np.float32, copy=False)  # the values an array's rows get (float64 is rounded first)
            bad = ~np.isfinite(rows)
            if bad.any():
                raise ValueError(f"{where} holds NaN or inf values ({int(bad.sum())} of {rows.size}); clean or "
                                 f"drop that example")
            if self.unit_range and rows.size and (rows.min() < 0.0 or rows.max() > 1.0):
                raise ValueError(f"{where} must lie in [0, 1] for a Bernoulli decoder; got values in "
                                 f"[{rows.min():.4g}, {rows.max():.4g}]. Scale pixels to [0, 1] (torchvision's "
                                 f"ToTensor does) or use likelihood='gaussian'")
        return rows if batch else rows[0]

    def _as_rows(self, x: np.ndarray, where: str, batch: bool) -> np.ndarray:
        """A batch (b, *example layout) as (b, D) rows, channels last."""
        shape, b = x.shape[1:], x.shape[0] if x.ndim else 0
        if x.ndim >= 1 and shape == (self.d,):
            return x
        if self.image is not None and x.ndim >= 1:
            h, w, c = self.image
            if shape == (h, w, c) or (c == 1 and shape == (h, w)):
                return x.reshape(b, self.d)
            if c in (1, 3) and shape == (c, h, w):
                return x.transpose(0, 2, 3, 1).reshape(b, self.d)  # channels first (torch) -> channels last
        found = x.shape if batch else x.shape[1:]
        image_shape = None if self.image is None else self.image[:2] if self.image[2] == 1 else self.image
        if batch and x.ndim >= 1 and (x.shape == (self.d,) or (self.image is not None and x.shape in
                                                                 ((*self.image[:2],), self.image))):
            fix = "It looks like one example: batch the source (e.g. dataset.batch(128), DataLoader(batch_size=128))"
        elif self.image is None and len(found) > 1 + batch:
            fix = "Give the spec an image_shape"
        else:
            fix = "Build the model with a VAESpec whose input_dim and image_shape match the data"
        expected = layouts(self.d, self.image, "b" if batch else None)
        raise ValueError(f"{where} has shape {found}; expected {'a batch' if batch else 'an example'} of shape "
                         f"{expected} to match the spec (input_dim={self.d}, image_shape={image_shape}). {fix}")


def layouts(d: int, image: tuple[int, int, int] | None, batch: str | None = None) -> str:
    """The shapes an example (or, with `batch` naming its size, a batch) may take, for messages."""
    lead = () if batch is None else (batch,)
    shapes = [(*lead, d)]
    if image is not None:
        h, w, c = image
        shapes.append((*lead, h, w, c))
        if c == 1:
            shapes.append((*lead, h, w))
        if c in (1, 3):
            shapes.append((*lead, c, h, w))
    return " or ".join("(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")" for s in shapes)
