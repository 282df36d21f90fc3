"""VAESpec: the architecture and objective, defined once for every backend.

Encoder: x (D) -> hidden_dims[0] -> ... -> hidden_dims[-1] (ReLU) -> mu, log_var (latent_dim each).
Decoder mirrors it: z (latent_dim) -> reversed(hidden_dims) (ReLU) -> out.
`out` is (D) logits for "bernoulli", (D) means for "gaussian", and (2D) for "gaussian_learned":
the first D columns are means, the last D are per-pixel log-variances.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from vae_core.checks import check_choice, check_float, check_int, fail, known_fields

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")


@dataclass(frozen=True)
class VAESpec:
    input_dim: int = 784  # D: flattened pixels per example (28*28 for MNIST)
    hidden_dims: tuple[int, ...] = (400, 400)  # encoder widths; the decoder uses them reversed
    latent_dim: int = 20  # size of z
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (logits), "gaussian" (unit variance), "gaussian_learned"
    beta: float = 1.0  # weight of the KL term in the loss (beta-VAE); 1.0 is the plain ELBO
    image_shape: tuple[int, int] | None = None  # (H, W) for plots; None: square if D is a square, else none

    def __post_init__(self) -> None:
        check_int("VAESpec", "input_dim", self.input_dim, minimum=1)
        hidden = self.hidden_dims
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            fail("VAESpec", "hidden_dims", "a sequence of positive ints such as (400, 400)", hidden)
        hidden = tuple(hidden)
        for i, width in enumerate(hidden):
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                fail("VAESpec", "hidden_dims", f"positive ints (entry {i} is not)", self.hidden_dims)
        object.__setattr__(self, "hidden_dims", hidden)
        check_int("VAESpec", "latent_dim", self.latent_dim, minimum=1)
        check_choice("VAESpec", "likelihood", self.likelihood, LIKELIHOODS)
        check_float("VAESpec", "beta", self.beta, low=0.0)
        self._check_image_shape()

    def _check_image_shape(self) -> None:
        shape = self.image_shape
        if shape is None:
            side = math.isqrt(self.input_dim)
            object.__setattr__(self, "image_shape", (side, side) if side * side == self.input_dim else None)
            return
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2 \
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            fail("VAESpec", "image_shape", "None or two positive ints (H, W)", shape)
        shape = tuple(shape)
        if shape[0] * shape[1] != self.input_dim:
            fail("VAESpec", "image_shape", f"(H, W) with H*W == input_dim ({self.input_dim})", shape)
        object.__setattr__(self, "image_shape", shape)

    @property
    def output_dim(self) -> int:
        """Width of the decoder's output: D, or 2D for a learned variance."""
        return 2 * self.input_dim if self.likelihood == "gaussian_learned" else self.input_dim

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical neutral names and shapes, in layer order. Kernels are (in, out)."""
        shapes: dict[str, tuple[int, ...]] = {}

        def dense(name: str, n_in: int, n_out: int) -> None:
            shapes[f"{name}.kernel"] = (n_in, n_out)
            shapes[f"{name}.bias"] = (n_out,)

        widths = (self.input_dim, *self.hidden_dims)
        for i in range(len(self.hidden_dims)):
            dense(f"encoder.{i}", widths[i], widths[i + 1])
        dense("encoder.mu", widths[-1], self.latent_dim)
        dense("encoder.log_var", widths[-1], self.latent_dim)
        widths = (self.latent_dim, *reversed(self.hidden_dims))
        for i in range(len(self.hidden_dims)):
            dense(f"decoder.{i}", widths[i], widths[i + 1])
        dense("decoder.out", widths[-1], self.output_dim)
        return shapes

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes().values())

    def replace(self, **changes: Any) -> "VAESpec":
        """A copy with some fields changed, validated again.

        A new `input_dim` without an `image_shape` gets its image shape inferred again, not the old one.
        """
        if "input_dim" in changes and "image_shape" not in changes:
            changes["image_shape"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        d["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAESpec":
        return cls(**known_fields(cls, d))
