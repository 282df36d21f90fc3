"""The layers of a `VAESpec`, written once: names, kinds, neutral kernel layouts, fan-ins and conv geometry.

Every backend builds its model by walking `layer_plan(spec)`, so the layer order, the widths, the padding and the
cropping are decided here and nowhere else.

Conv geometry. Each encoder convolution has stride 2 and a k x k kernel and maps an (h, w) map to
(ceil(h / 2), ceil(w / 2)). It reads the map padded with zeros by explicit amounts: along a side of length n
with output length m = ceil(n / 2), the total padding is (m - 1) * 2 + k - n, `before = total // 2` rows or
columns go first and the rest after (an odd total puts the extra one at the end). Both backends pad by exactly
these amounts and then convolve without padding ("valid"); TF's "same" is never used against torch's symmetric
padding, because the two place the windows one pixel apart whenever the total is odd.

Each decoder transposed convolution undoes one encoder convolution: from (m_h, m_w) its full ("valid") output is
(m - 1) * 2 + k = n + total long, and it crops the same `before` / `after` amounts that the encoder padded, which
leaves exactly the encoder's input size, odd sizes included.

Neutral kernel layouts (Keras'): dense (in, out); conv (kh, kw, in, out); transposed conv (kh, kw, out, in),
where "out" is the transposed conv's output channels. A flattened conv map is in (h, w, c) order (channels last).
"""
from __future__ import annotations

from dataclasses import dataclass

DENSE, CONV, CONV_TRANSPOSE = "dense", "conv", "conv_transpose"
STRIDE = 2  # every conv halves the map (rounding up), and every transposed conv doubles it back


@dataclass(frozen=True)
class ConvLevel:
    """One encoder convolution's geometry; its mirrored transposed convolution uses the same numbers reversed."""

    in_size: tuple[int, int]  # (h, w) the conv reads (and its transposed conv writes)
    out_size: tuple[int, int]  # (ceil(h / 2), ceil(w / 2)) it writes (and its transposed conv reads)
    pad: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right)) zeros before the conv; cropped
    # from the transposed conv's full output


@dataclass(frozen=True)
class Layer:
    """One layer of the model, by its neutral name prefix (`<name>.kernel`, `<name>.bias`)."""

    name: str  # e.g. "encoder.conv.0", "encoder.mu", "decoder.out"
    kind: str  # DENSE, CONV or CONV_TRANSPOSE
    n_in: int  # input features (dense) or channels (conv)
    n_out: int  # output features or channels
    relu: bool  # a ReLU follows it
    kernel_size: int  # k of a (k, k) conv kernel; 1 for dense
    level: ConvLevel | None  # the geometry of a conv or transposed conv; None for dense
    reads_map: tuple[int, int, int] | None = None  # dense: (h, w, c) of the conv map its input flattens, if any
    writes_map: tuple[int, int, int] | None = None  # dense: (h, w, c) of the conv map its output unflattens into

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """The neutral kernel layout."""
        k = self.kernel_size
        if self.kind == CONV:
            return (k, k, self.n_in, self.n_out)
        if self.kind == CONV_TRANSPOSE:
            return (k, k, self.n_out, self.n_in)
        return (self.n_in, self.n_out)

    @property
    def fan_in(self) -> int:
        """The fan-in of PyTorch's default initialisation of this layer (`init_weights` uses it): in * k * k for
        a conv, and out * k * k for a transposed conv (torch computes it from dimension 1 of its weight,
        (in, out, kh, kw))."""
        k2 = self.kernel_size ** 2
        return self.n_out * k2 if self.kind == CONV_TRANSPOSE else self.n_in * k2


def conv_levels(height: int, width: int, n_convs: int, kernel_size: int) -> tuple[ConvLevel, ...]:
    """The geometry of `n_convs` stride-2 convolutions of a (height, width) image, first to last."""
    levels, size = [], (height, width)
    for _ in range(n_convs):
        out = tuple(-(-n // STRIDE) for n in size)
        pad = []
        for n, m in zip(size, out):
            total = (m - 1) * STRIDE + kernel_size - n  # >= 0 for kernel_size >= 2
            pad.append((total // 2, total - total // 2))
        levels.append(ConvLevel(in_size=size, out_size=out, pad=(pad[0], pad[1])))
        size = out
    return tuple(levels)


def layer_plan(*, input_dim: int, hidden_dims: tuple[int, ...], latent_dim: int, output_channels_factor: int,
               image_shape: tuple[int, ...] | None, conv_channels: tuple[int, ...] | None,
               kernel_size: int) -> tuple[Layer, ...]:
    """The layers in order: encoder convs, encoder dense, the mu and log_var heads, decoder dense, decoder
    transposed convs, and the output layer. `conv_channels=None` is the MLP; `output_channels_factor` is 2 when
    the decoder also outputs log-variances."""
    def dense(name: str, n_in: int, n_out: int, relu: bool, reads_map=None, writes_map=None) -> Layer:
        return Layer(name, DENSE, n_in, n_out, relu, 1, None, reads_map, writes_map)

    layers: list[Layer] = []
    if conv_channels is None:
        widths = (input_dim, *hidden_dims)
        layers += [dense(f"encoder.{i}", widths[i], widths[i + 1], True) for i in range(len(hidden_dims))]
        layers += [dense("encoder.mu", widths[-1], latent_dim, False),
                   dense("encoder.log_var", widths[-1], latent_dim, False)]
        widths = (latent_dim, *reversed(hidden_dims))
        layers += [dense(f"decoder.{i}", widths[i], widths[i + 1], True) for i in range(len(hidden_dims))]
        layers.append(dense("decoder.out", widths[-1], output_channels_factor * input_dim, False))
        return tuple(layers)

    height, width, channels = (*image_shape, 1)[:3]
    levels = conv_levels(height, width, len(conv_channels), kernel_size)
    chans = (channels, *conv_channels)
    layers += [Layer(f"encoder.conv.{i}", CONV, chans[i], chans[i + 1], True, kernel_size, levels[i])
               for i in range(len(levels))]
    conv_map = (*levels[-1].out_size, conv_channels[-1])  # (h, w, c) of the last conv map
    flat = conv_map[0] * conv_map[1] * conv_map[2]  # its length, flattened in (h, w, c) order
    widths = (flat, *hidden_dims)
    reads = [conv_map] + [None] * len(hidden_dims)  # which layer reads the flattened map: the first dense
    layers += [dense(f"encoder.{i}", widths[i], widths[i + 1], True, reads[i]) for i in range(len(hidden_dims))]
    layers += [dense("encoder.mu", widths[-1], latent_dim, False, reads[-1]),
               dense("encoder.log_var", widths[-1], latent_dim, False, reads[-1])]
    widths = (latent_dim, *reversed(hidden_dims), flat)
    n_dense = len(widths) - 1
    layers += [dense(f"decoder.{i}", widths[i], widths[i + 1], True, None, conv_map if i == n_dense - 1 else None)
               for i in range(n_dense)]
    chans = (*reversed(conv_channels), output_channels_factor * channels)
    for j, level in enumerate(reversed(levels)):
        last = j == len(levels) - 1
        layers.append(Layer("decoder.out" if last else f"decoder.conv.{j}", CONV_TRANSPOSE, chans[j], chans[j + 1],
                            not last, kernel_size, level))
    return tuple(layers)
