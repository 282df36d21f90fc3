"""VAESpec: the architecture and objective, defined once for every backend.

architecture="mlp" (the seed's model):
    Encoder: x (D) -> hidden_dims[0] -> ... -> hidden_dims[-1] (ReLU) -> mu, log_var (latent_dim each).
    Decoder mirrors it: z (latent_dim) -> reversed(hidden_dims) (ReLU) -> out.
architecture="conv":
    Encoder: x (H, W, C) -> one stride-2 k x k conv per entry of conv_channels (ReLU) -> flatten (h, w, c) ->
    hidden_dims (ReLU) -> mu, log_var. Decoder mirrors it: z -> reversed(hidden_dims) (ReLU) -> the last conv map
    (ReLU) -> transposed convs (ReLU) -> out, a transposed conv to C (or 2C) channels of exactly H x W.
    Padding and cropping are explicit amounts (`vae_core.model.architecture`).
The decoder output is a flat (D) row in channels-last order for either architecture: logits for "bernoulli",
means for "gaussian", and (2D) for "gaussian_learned": the first D columns are means, the last D are per-pixel
log-variances.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from vae_core.checks import as_int, check_choice, check_float, check_int, fail, known_fields
from vae_core.model.architecture import Layer, layer_plan

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")
ARCHITECTURES = ("mlp", "conv")
DEFAULT_INPUT_DIM = 784  # 28 x 28, when neither input_dim nor image_shape is given
# The largest beta: far above any beta-VAE's (0.1 to a few hundred) and far below where float32 training breaks
# (near 1e15 Adam's squared gradients overflow; 1e308 makes the first loss inf), so a typo is refused at once
# instead of training into a non-finite loss whose hint would point at the learning rate.
BETA_MAX = 1e6


@dataclass(frozen=True)
class VAESpec:
    input_dim: int | None = None  # D: values per example, H*W*C; None: from image_shape, else 784 (28*28)
    hidden_dims: tuple[int, ...] = (400, 400)  # dense widths of the encoder; the decoder uses them reversed
    latent_dim: int = 20  # size of z
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (logits), "gaussian" (unit variance), "gaussian_learned"
    beta: float = 1.0  # weight of the KL term in the loss (beta-VAE); 1.0 is the plain ELBO
    image_shape: tuple[int, ...] | None = None  # (H, W) or (H, W, C); None: (s, s) if D is a square s*s, else none
    architecture: str = "mlp"  # "mlp", or "conv": stride-2 convolutions before the dense layers (needs image_shape)
    conv_channels: tuple[int, ...] = (32, 64)  # "conv": output channels of each encoder convolution, in order
    kernel_size: int = 4  # "conv": the k of every k x k convolution and transposed convolution, >= 2

    def __post_init__(self) -> None:
        if self.input_dim is None:
            shape = self.image_shape
            object.__setattr__(self, "input_dim", math.prod(shape) if _is_int_tuple(shape) else DEFAULT_INPUT_DIM)
        # Every number is stored as its checker returns it: a NumPy scalar becomes a plain int or float (to_dict, JSON).
        object.__setattr__(self, "input_dim", check_int("VAESpec", "input_dim", self.input_dim, minimum=1))
        hidden = self.hidden_dims
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            fail("VAESpec", "hidden_dims", "a sequence of positive ints such as (400, 400)", hidden)
        hidden = tuple(hidden)
        widths = tuple(as_int(width) for width in hidden)
        for i, width in enumerate(widths):
            if width is None or width < 1:
                fail("VAESpec", "hidden_dims", f"positive ints (entry {i} is not)", self.hidden_dims)
        object.__setattr__(self, "hidden_dims", widths)
        object.__setattr__(self, "latent_dim", check_int("VAESpec", "latent_dim", self.latent_dim, minimum=1))
        check_choice("VAESpec", "likelihood", self.likelihood, LIKELIHOODS)
        object.__setattr__(self, "beta", check_float("VAESpec", "beta", self.beta, low=0.0, high=BETA_MAX, fix=(
            "beta weighs the KL term: 1 is the plain ELBO, 0 drops the KL term, beta-VAEs use up to a few hundred; "
            "far above that the float32 loss and its gradients overflow")))
        check_choice("VAESpec", "architecture", self.architecture, ARCHITECTURES)
        channels = self.conv_channels
        if not _is_int_tuple(channels, any_length=True):
            fail("VAESpec", "conv_channels", "a sequence of positive ints such as (32, 64)", channels)
        object.__setattr__(self, "conv_channels", tuple(as_int(c) for c in channels))
        object.__setattr__(self, "kernel_size", check_int("VAESpec", "kernel_size", self.kernel_size, minimum=2))
        self._check_image_shape()
        if self.architecture == "conv":
            self._check_conv()

    def _check_image_shape(self) -> None:
        shape = self.image_shape
        if shape is None:
            if self.architecture == "conv":
                fail("VAESpec", "image_shape", "(H, W) or (H, W, C) for architecture='conv'", shape,
                     "Pass the images' shape, e.g. image_shape=(28, 28) or (32, 32, 3)")
            side = math.isqrt(self.input_dim)
            object.__setattr__(self, "image_shape", (side, side) if side * side == self.input_dim else None)
            return
        if not _is_int_tuple(shape) or len(shape) not in (2, 3):
            fail("VAESpec", "image_shape", "None, (H, W) or (H, W, C) of positive ints", shape)
        shape = tuple(as_int(s) for s in shape)
        if math.prod(shape) != self.input_dim:
            fail("VAESpec", "image_shape", f"a shape whose product H*W*C equals input_dim ({self.input_dim})", shape,
                 "Leave input_dim out: it follows from image_shape")
        object.__setattr__(self, "image_shape", shape)

    def _check_conv(self) -> None:
        if not self.conv_channels:
            fail("VAESpec", "conv_channels", "at least one positive int for architecture='conv'", self.conv_channels)
        smallest = 2 ** len(self.conv_channels)
        if min(self.image_shape[:2]) < smallest:
            fail("VAESpec", "image_shape", f"at least {smallest} x {smallest} pixels for {len(self.conv_channels)} "
                 f"stride-2 convolutions (conv_channels={self.conv_channels})", self.image_shape,
                 "Use fewer conv_channels entries, larger images (--image-size), or architecture='mlp'")

    @property
    def channels(self) -> int:
        """C, the channels of an image (1 for an (H, W) image_shape); 1 without an image_shape."""
        return self.image_shape[2] if self.image_shape is not None and len(self.image_shape) == 3 else 1

    def layers(self) -> tuple[Layer, ...]:
        """The model's layers in order (`vae_core.model.architecture`): what every backend builds."""
        return layer_plan(input_dim=self.input_dim, hidden_dims=self.hidden_dims, latent_dim=self.latent_dim,
                          output_channels_factor=2 if self.likelihood == "gaussian_learned" else 1,
                          image_shape=self.image_shape, kernel_size=self.kernel_size,
                          conv_channels=self.conv_channels if self.architecture == "conv" else None)

    @property
    def output_dim(self) -> int:
        """Width of the decoder's output: D, or 2D for a learned variance."""
        return 2 * self.input_dim if self.likelihood == "gaussian_learned" else self.input_dim

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical neutral names and shapes, in layer order. Kernels are dense (in, out), conv (kh, kw, in, out)
        and transposed conv (kh, kw, out, in)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers():
            shapes[f"{layer.name}.kernel"] = layer.kernel_shape
            shapes[f"{layer.name}.bias"] = (layer.n_out,)
        return shapes

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes().values())

    def replace(self, **changes: Any) -> "VAESpec":
        """A copy with some fields changed, validated again.

        A new `input_dim` without an `image_shape` gets its image shape inferred again, not the old one, and a
        new (not None) `image_shape` without an `input_dim` gets its input_dim from the shape.
        """
        if "input_dim" in changes and "image_shape" not in changes:
            changes["image_shape"] = None
        if changes.get("image_shape") is not None and "input_dim" not in changes:
            changes["input_dim"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        d["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        d["conv_channels"] = list(self.conv_channels)
        if self.architecture == "mlp":  # what an MLP does not use stays out: files readable by earlier releases
            for name in ("architecture", "conv_channels", "kernel_size"):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAESpec":
        return cls(**known_fields(cls, d))


def _is_int_tuple(value: Any, any_length: bool = False) -> bool:
    """A non-string sequence of positive ints, NumPy integers too (non-empty unless `any_length`)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or (not any_length and len(value) == 0):
        return False
    return all((n := as_int(v)) is not None and n > 0 for v in value)
