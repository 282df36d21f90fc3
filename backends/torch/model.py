"""The VAE of a `VAESpec` as a `torch.nn.Module`, built by walking `spec.layers()` (`vae_core.model.architecture`).

Layers, by neutral name:
    encoder.conv.0 .. (conv only)  Conv2d + ReLU, stride 2, the spec's explicit padding
    encoder.0 .. encoder.{n-1}     Linear + ReLU over hidden_dims (after the flattened conv map, for conv)
    encoder.mu, encoder.log_var    Linear heads to latent_dim
    decoder.0 ..                   Linear + ReLU, widths (latent_dim, *reversed(hidden_dims)[, the conv map])
    decoder.conv.0 .. (conv only)  ConvTranspose2d + ReLU, stride 2, cropped by the spec's amounts
    decoder.out                    Linear (mlp) or ConvTranspose2d (conv) to spec.output_dim values per example

The torch attributes are `encoder_conv` (ModuleList), `encoder` (ModuleList), `mu`, `log_var`, `decoder`
(ModuleList), `decoder_conv` (ModuleList) and `out`; `neutral_layers()` maps the neutral names to them. Inside,
conv maps are NCHW; inputs and outputs are channels-last rows (B, D) (images (B, H, W, C) are taken too), and the
weights adapter (`backends.torch.weights`) converts the kernels and the flattened conv map's order.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vae_core.data.rows import rows_shape
from vae_core.model.architecture import CONV, CONV_TRANSPOSE, Layer
from vae_core.model.attributes import SpecAttributes, check_count, check_draw_seed
from vae_core.model.spec import VAESpec


class VAE(SpecAttributes, nn.Module):
    """Gaussian-encoder VAE: an MLP, or convolutions then dense layers, with a mirrored decoder.

    `VAE(spec, seed=s)` holds the weights `vae_core.init_weights(spec, s)` (the same in every backend);
    building it never touches torch's global random state.
    """

    backend_name = "torch"

    def __init__(self, spec: VAESpec, *, seed: int | None = None) -> None:
        if not isinstance(spec, VAESpec):
            raise TypeError(f"spec must be a vae_core.VAESpec; got {type(spec).__name__}. "
                            f"Build one with VAESpec(...) or VAESpec.from_dict(d)")
        super().__init__()
        self.spec = spec
        self.encoder_conv, self.encoder, self.decoder, self.decoder_conv = (nn.ModuleList() for _ in range(4))
        # Padding each conv cannot express with its own (symmetric) `padding`: F.pad amounts, or None.
        self._pads: dict[str, tuple[int, int, int, int] | None] = {}
        convs = [layer for layer in spec.layers() if layer.kind == CONV]
        # (c, h, w) of the last encoder conv's map, which the decoder's dense layers unflatten into
        self._conv_map = None if not convs else (convs[-1].n_out, *convs[-1].level.out_size)
        for layer in spec.layers():
            module = self._module(layer)
            name = layer.name
            if name in ("encoder.mu", "encoder.log_var", "decoder.out"):
                setattr(self, name.split(".")[1], module)
            else:
                getattr(self, {"encoder": "encoder", "decoder": "decoder"}[name.split(".")[0]]
                        + ("_conv" if ".conv." in name else "")).append(module)
        self.to_empty(device="cpu")

        from backends.torch.weights import import_weights
        from vae_core.model.init import init_weights

        import_weights(self, init_weights(spec, seed))

    def _module(self, layer: Layer) -> nn.Module:
        """The torch layer of one planned layer, allocated without torch's default init (the weights come from
        vae_core.init_weights). A conv's padding, or a transposed conv's cropping, goes into its own `padding`
        when it is the same on both sides; otherwise it is applied explicitly around it (`_conv`)."""
        if layer.kind not in (CONV, CONV_TRANSPOSE):
            return nn.Linear(layer.n_in, layer.n_out, device="meta")
        (top, bottom), (left, right) = layer.level.pad
        symmetric = top == bottom and left == right
        self._pads[layer.name] = None if symmetric else (left, right, top, bottom)
        conv = nn.Conv2d if layer.kind == CONV else nn.ConvTranspose2d
        return conv(layer.n_in, layer.n_out, layer.kernel_size, stride=2, padding=(top, left) if symmetric else 0,
                    device="meta")

    def neutral_layers(self) -> dict[str, nn.Module]:
        """Neutral layer name -> its torch module, in the order of `spec.weight_shapes()`."""
        layers = {f"encoder.conv.{i}": layer for i, layer in enumerate(self.encoder_conv)}
        layers.update({f"encoder.{i}": layer for i, layer in enumerate(self.encoder)})
        layers.update({"encoder.mu": self.mu, "encoder.log_var": self.log_var})
        layers.update({f"decoder.{i}": layer for i, layer in enumerate(self.decoder)})
        layers.update({f"decoder.conv.{i}": layer for i, layer in enumerate(self.decoder_conv)})
        layers["decoder.out"] = self.out
        return layers

    def _conv(self, name: str, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """A conv with the spec's padding, or a transposed conv with the spec's cropping: (B, C, h, w) maps."""
        pad = self._pads[name]
        if pad is None:
            return module(h)
        left, right, top, bottom = pad
        if isinstance(module, nn.Conv2d):
            return module(F.pad(h, pad))  # zeros (left, right, top, bottom), then a "valid" conv
        full = module(h)  # (B, C, full_h, full_w): the uncropped output
        return full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right]

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    # ------------------------------------------------------------------ the model

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): x (B, D) rows or (B, H, W, C) images -> mu (B, latent_dim), log_var (B, latent_dim)."""
        spec = self.spec
        if spec.architecture == "conv":
            height, width, channels = (*spec.image_shape, 1)[:3]
            h = x.reshape(x.shape[0], height, width, channels).permute(0, 3, 1, 2)  # (B, C, H, W)
            for i, layer in enumerate(self.encoder_conv):
                h = torch.relu(self._conv(f"encoder.conv.{i}", layer, h))  # (B, conv_channels[i], h_i, w_i)
            h = h.flatten(1)  # (B, c*h*w): torch's order; the weights adapter orders encoder.0's rows to match
        else:
            h = x.reshape(x.shape[0], spec.input_dim)  # (B, D)
        for layer in self.encoder:
            h = torch.relu(layer(h))  # (B, hidden_dims[i])
        return self.mu(h), self.log_var(h)  # (B, latent_dim) each

    def reparameterize(self, mu: torch.Tensor, log_var: torch.Tensor,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + exp(log_var / 2) * eps with eps ~ N(0, I) (drawn here when None)."""
        std = torch.exp(0.5 * log_var)  # (B, latent_dim)
        if eps is None:
            eps = torch.randn_like(std)  # (B, latent_dim)
        return mu + std * eps  # (B, latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Parameters of p(x|z): z (B, latent_dim) -> (B, D) logits or means, or (B, 2D) means then log-vars, as
        channels-last rows."""
        h = z  # (B, latent_dim)
        for layer in self.decoder:
            h = torch.relu(layer(h))  # (B, reversed(hidden_dims)[i]), then (B, c*h*w) for conv
        if self.spec.architecture != "conv":
            return self.out(h)  # (B, spec.output_dim)
        h = h.reshape(h.shape[0], *self._conv_map)  # (B, c, h, w)
        for i, layer in enumerate(self.decoder_conv):
            h = torch.relu(self._conv(f"decoder.conv.{i}", layer, h))  # (B, c_j, h_j, w_j)
        out = self._conv("decoder.out", self.out, h).permute(0, 2, 3, 1)  # (B, H, W, C) or (B, H, W, 2C)
        c = self.spec.channels
        if self.spec.likelihood == "gaussian_learned":  # means then log-variances, each flattened (H, W, C)
            return torch.cat([out[..., :c].reshape(out.shape[0], -1), out[..., c:].reshape(out.shape[0], -1)], 1)
        return out.reshape(out.shape[0], -1)  # (B, D)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, D) or (B, H, W, C) -> (decoder_out (B, output_dim), mu (B, latent_dim), log_var (B, latent_dim))."""
        mu, log_var = self.encode(x)  # (B, latent_dim) each
        z = self.reparameterize(mu, log_var, eps)  # (B, latent_dim)
        return self.decode(z), mu, log_var

    def mean_of(self, decoder_out: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) in data space: sigmoid(logits) for Bernoulli, the means for Gaussians."""
        if self.spec.likelihood == "bernoulli":
            return torch.sigmoid(decoder_out)  # (B, D)
        return decoder_out[..., : self.spec.input_dim]  # (B, D): drops the log-variances if learned

    # ------------------------------------------------------------------ conveniences (no grad, eval mode)

    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """`n` draws from the model in data space: z ~ N(0, I), then the mean of p(x|z). (n, D), no grad.

        With a `seed`, z comes from `np.random.default_rng(seed)` (float32), so a seed gives the same z in every
        backend and on every device; `seed=None` draws z from torch's global RNG (`torch.manual_seed` applies).
        """
        check_count("sample", "n", n)
        with eval_mode(self):
            if seed is None:
                z = torch.randn(n, self.spec.latent_dim, device=self.device)  # (n, latent_dim)
            else:
                check_draw_seed("sample", seed)
                z = np.random.default_rng(int(seed)).standard_normal((int(n), self.spec.latent_dim),
                                                                     dtype=np.float32)  # (n, latent_dim)
                z = torch.from_numpy(z).to(self.device)
            return self.mean_of(self.decode(z))  # (n, D)

    def reconstruct(self, x: Any) -> torch.Tensor:
        """Deterministic reconstruction: the mean of p(x|z) at z = mu(x), not at a sampled z. (B, D), no grad.

        Decoding the posterior mean rather than a reparameterised sample makes the result repeatable and is
        the usual choice for showing reconstructions.
        """
        with eval_mode(self):
            mu, _ = self.encode(self._as_batch(x, "reconstruct", "x"))  # (B, latent_dim)
            return self.mean_of(self.decode(mu))  # (B, D)

    def interpolate(self, x1: Any, x2: Any, steps: int = 10) -> torch.Tensor:
        """Decode `steps` points on the line between the encoder means of x1 and x2, in data space.

        x1, x2: one example each, (D,) or (1, D). Returns (steps, D), from x1's end to x2's.
        """
        check_count("interpolate", "steps", steps)
        with eval_mode(self):
            ends = []
            for name, x in (("x1", x1), ("x2", x2)):
                batch = self._as_batch(x, "interpolate", name)  # (1, D)
                if batch.shape[0] != 1:
                    raise ValueError(f"interpolate: {name} must be one example of shape ({self.spec.input_dim},) "
                                     f"or (1, {self.spec.input_dim}); got shape {tuple(batch.shape)}")
                ends.append(self.encode(batch)[0])  # (1, latent_dim)
            alpha = torch.linspace(0.0, 1.0, steps, device=self.device).unsqueeze(1)  # (steps, 1)
            z = (1.0 - alpha) * ends[0] + alpha * ends[1]  # (steps, latent_dim)
            return self.mean_of(self.decode(z))  # (steps, D)

    def _as_batch(self, x: Any, method: str, argument: str) -> torch.Tensor:
        """NumPy array or tensor, (D,), (B, D) or images (B, H, W, C) -> float32 (B, D) rows on the model's device."""
        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8:
                x = x.astype(np.float32) / np.float32(255.0)
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"{method}: {argument} must be a NumPy array or a torch.Tensor; got {type(x).__name__}")
        elif x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255.0
        rows = rows_shape(tuple(x.shape), self.spec, f"{method}: {argument}", single=True)
        return x.to(device=self.device, dtype=torch.float32).reshape(rows)  # (B, D)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients while the block runs, restoring the module's previous mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def check_model(model: Any, caller: str) -> VAE:
    """`model`, if it is this backend's VAE; else a TypeError naming `caller` and how to build one."""
    if not isinstance(model, VAE):
        raise TypeError(f"{caller}: model must be a torch VAE built by vae_core.build('torch', ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")
    return model

