"""The VAE of a `VAESpec` as a Flax NNX module, built by walking `spec.layers()` (`vae_core.model.architecture`).

Layers, by neutral name (the torch and TF backends have the same ones):
    encoder.conv.0 .. (conv only)  nnx.Conv + ReLU, stride 2, the spec's explicit padding
    encoder.0 .. encoder.{n-1}     nnx.Linear + ReLU over hidden_dims (after the flattened conv map, for conv)
    encoder.mu, encoder.log_var    nnx.Linear heads to latent_dim
    decoder.0 ..                   nnx.Linear + ReLU, widths (latent_dim, *reversed(hidden_dims)[, the conv map])
    decoder.conv.0 .. (conv only)  nnx.ConvTranspose + ReLU, stride 2, "VALID", cropped by the spec's amounts
    decoder.out                    nnx.Linear (mlp) or nnx.ConvTranspose (conv) to spec.output_dim values

Flax's kernels are the neutral layouts: Linear (in, out), Conv (kh, kw, in, out), and ConvTranspose with
`transpose_kernel=True` (kh, kw, out, in), which makes it the gradient of a conv as torch's ConvTranspose2d and
Keras' Conv2DTranspose are; maps are NHWC, so a flattened map is in (h, w, c) order. Nothing is permuted
(`backends.jax.weights`).

Inputs may be NumPy or JAX arrays, (B, D) rows or (B, H, W, C) images; uint8 images become x / 255. Every method
returns `jax.Array`s (`np.asarray(...)` for NumPy). The module is a pytree of its state as Flax NNX modules are:
`nnx.split(model)` / `nnx.merge` and `nnx.jit` work on it, and its parameters are `nnx.Param`s.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_core.checks import check_seed
from vae_core.data.rows import rows_shape
from vae_core.model.architecture import CONV, CONV_TRANSPOSE, Layer
from vae_core.model.attributes import SpecAttributes, check_count, check_draw_seed
from vae_core.model.spec import VAESpec


class VAE(SpecAttributes, nnx.Module):
    """Gaussian-encoder VAE: an MLP, or convolutions then dense layers, with a mirrored decoder.

    `VAE(spec, seed=s)` holds the weights `vae_core.init_weights(spec, s)` (the same in every backend); `seed` also
    seeds the model's own noise stream (`reparameterize` without eps), and None draws fresh entropy.
    `param_dtype=jnp.float64` builds a float64 model, which needs `jax.enable_x64(True)` around its use
    (`fit(precision="fp64")` builds and trains one inside that scope).
    """

    backend_name = "jax"

    def __init__(self, spec: VAESpec, *, seed: int | None = None, param_dtype: Any = jnp.float32) -> None:
        if not isinstance(spec, VAESpec):
            raise TypeError(f"spec must be a vae_core.VAESpec; got {type(spec).__name__}. "
                            f"Build one with VAESpec(...) or VAESpec.from_dict(d)")
        seed = check_seed("VAE", seed)
        self.spec = spec
        self.seed = seed
        self.plan = {layer.name: layer for layer in spec.layers()}  # neutral name -> its planned Layer
        # layers are allocated with zeros (no random init: the weights come from vae_core.init_weights below)
        make = {name: self._layer(layer, param_dtype) for name, layer in self.plan.items()}
        self.encoder_conv = nnx.List([m for n, m in make.items() if n.startswith("encoder.conv.")])
        self.encoder = nnx.List([m for n, m in make.items() if n.startswith("encoder.") and n[8:].isdigit()])
        self.mu, self.log_var = make["encoder.mu"], make["encoder.log_var"]
        self.decoder = nnx.List([m for n, m in make.items() if n.startswith("decoder.") and n[8:].isdigit()])
        self.decoder_conv = nnx.List([m for n, m in make.items() if n.startswith("decoder.conv.")])
        self.out = make["decoder.out"]
        entropy = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self.rngs = nnx.Rngs(noise=entropy)  # the model's own noise stream: eps when none is given

        from backends.jax.weights import import_weights
        from vae_core.model.init import init_weights

        import_weights(self, init_weights(spec, seed))

    @staticmethod
    def _layer(layer: Layer, dtype: Any) -> nnx.Module:
        """The Flax layer of one planned layer. A conv reads its input zero-padded by the spec's amounts (one op);
        a transposed conv gives its full "VALID" output, which `_conv` crops."""
        options = dict(param_dtype=dtype, kernel_init=nnx.initializers.zeros_init(),
                       rngs=nnx.Rngs(0))
        k = (layer.kernel_size, layer.kernel_size)
        if layer.kind == CONV:
            (top, bottom), (left, right) = layer.level.pad
            return nnx.Conv(layer.n_in, layer.n_out, k, strides=2, padding=((top, bottom), (left, right)), **options)
        if layer.kind == CONV_TRANSPOSE:
            return nnx.ConvTranspose(layer.n_in, layer.n_out, k, strides=2, padding="VALID", transpose_kernel=True,
                                     **options)
        return nnx.Linear(layer.n_in, layer.n_out, **options)

    def neutral_layers(self) -> dict[str, nnx.Module]:
        """Neutral layer name -> its Flax module, in the order of `spec.weight_shapes()`."""
        layers = {f"encoder.conv.{i}": layer for i, layer in enumerate(self.encoder_conv)}
        layers.update({f"encoder.{i}": layer for i, layer in enumerate(self.encoder)})
        layers.update({"encoder.mu": self.mu, "encoder.log_var": self.log_var})
        layers.update({f"decoder.{i}": layer for i, layer in enumerate(self.decoder)})
        layers.update({f"decoder.conv.{i}": layer for i, layer in enumerate(self.decoder_conv)})
        layers["decoder.out"] = self.out
        return layers

    def _conv(self, name: str, module: nnx.Module, h: jax.Array) -> jax.Array:
        """A conv with the spec's padding, or a transposed conv cropped by the spec's amounts: (B, h, w, c) maps."""
        if isinstance(module, nnx.Conv):
            return module(h)
        (top, _), (left, _) = self.plan[name].level.pad
        height, width = self.plan[name].level.in_size
        return module(h)[:, top:top + height, left:left + width, :]  # (B, height, width, c) of the full output

    @property
    def dtype(self) -> Any:
        """The parameters' dtype: float32, or float64 for a float64 model."""
        return self.out.kernel.get_value().dtype

    # ------------------------------------------------------------------ the model

    def encode(self, x: Any) -> tuple[jax.Array, jax.Array]:
        """Parameters of q(z|x): x (B, D) rows or (B, H, W, C) images -> mu (B, latent_dim), log_var (B, latent_dim)."""
        spec = self.spec
        h = self._float(x)
        if spec.architecture == "conv":
            h = h.reshape(h.shape[0], *(*spec.image_shape, 1)[:3])  # (B, H, W, C)
            for i, layer in enumerate(self.encoder_conv):
                h = jax.nn.relu(self._conv(f"encoder.conv.{i}", layer, h))  # (B, h_i, w_i, conv_channels[i])
        h = h.reshape(h.shape[0], -1)  # (B, D), or (B, h*w*c): the conv map flattened channels last
        for layer in self.encoder:
            h = jax.nn.relu(layer(h))  # (B, hidden_dims[i])
        return self.mu(h), self.log_var(h)  # (B, latent_dim) each

    def reparameterize(self, mu: Any, log_var: Any, eps: Any = None) -> jax.Array:
        """z = mu + exp(log_var / 2) * eps with eps ~ N(0, I) (drawn from the model's noise stream when None)."""
        mu, log_var = self._float(mu), self._float(log_var)
        std = jnp.exp(0.5 * log_var)  # (B, latent_dim)
        eps = jax.random.normal(self.rngs.noise(), std.shape, std.dtype) if eps is None else self._float(eps)
        return mu + std * eps  # (B, latent_dim)

    def decode(self, z: Any) -> jax.Array:
        """Parameters of p(x|z): z (B, latent_dim) -> (B, D) logits or means, or (B, 2D) means then log-vars, as
        channels-last rows."""
        h = self._float(z)  # (B, latent_dim)
        for layer in self.decoder:
            h = jax.nn.relu(layer(h))  # (B, reversed(hidden_dims)[i]), then (B, h*w*c) for conv
        if self.spec.architecture != "conv":
            return self.out(h)  # (B, spec.output_dim)
        h = h.reshape(h.shape[0], *self.plan[f"decoder.{len(self.decoder) - 1}"].writes_map)  # (B, h, w, c)
        for i, layer in enumerate(self.decoder_conv):
            h = jax.nn.relu(self._conv(f"decoder.conv.{i}", layer, h))  # (B, h_j, w_j, c_j)
        out = self._conv("decoder.out", self.out, h)  # (B, H, W, C) or (B, H, W, 2C)
        c, rows = self.spec.channels, out.shape[0]
        if self.spec.likelihood == "gaussian_learned":  # means then log-variances, each flattened (H, W, C)
            return jnp.concatenate([out[..., :c].reshape(rows, -1), out[..., c:].reshape(rows, -1)], 1)
        return out.reshape(rows, -1)  # (B, D)

    def __call__(self, x: Any, eps: Any = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x (B, D) or (B, H, W, C) -> (decoder_out (B, output_dim), mu (B, latent_dim), log_var (B, latent_dim))."""
        mu, log_var = self.encode(x)  # (B, latent_dim) each
        z = self.reparameterize(mu, log_var, eps)  # (B, latent_dim)
        return self.decode(z), mu, log_var

    def mean_of(self, decoder_out: Any) -> jax.Array:
        """The mean of p(x|z) in data space: sigmoid(logits) for Bernoulli, the means for Gaussians."""
        if self.spec.likelihood == "bernoulli":
            return jax.nn.sigmoid(decoder_out)  # (B, D)
        return decoder_out[..., : self.spec.input_dim]  # (B, D): drops the log-variances if learned

    # ------------------------------------------------------------------ conveniences (no gradients)

    def sample(self, n: int, *, seed: int | None = None) -> jax.Array:
        """`n` draws from the model in data space: z ~ N(0, I), then the mean of p(x|z). (n, D).

        z comes from `np.random.default_rng(seed)` (float32), so a seed gives the same z in every backend and on
        every device; `seed=None` draws fresh entropy.
        """
        check_count("sample", "n", n)
        if seed is not None:
            check_draw_seed("sample", seed)
        z = np.random.default_rng(None if seed is None else int(seed)).standard_normal(
            (int(n), self.spec.latent_dim), dtype=np.float32)  # (n, latent_dim)
        return jax.lax.stop_gradient(self.mean_of(self.decode(z)))  # (n, D)

    def reconstruct(self, x: Any) -> jax.Array:
        """Deterministic reconstruction: the mean of p(x|z) at z = mu(x), not at a sampled z. (B, D).

        Decoding the posterior mean rather than a reparameterised sample makes the result repeatable and is the
        usual choice for showing reconstructions.
        """
        mu, _ = self.encode(self._as_batch(x, "reconstruct", "x"))  # (B, latent_dim)
        return jax.lax.stop_gradient(self.mean_of(self.decode(mu)))  # (B, D)

    def interpolate(self, x1: Any, x2: Any, steps: int = 10) -> jax.Array:
        """Decode `steps` points on the line between the encoder means of x1 and x2, in data space.

        x1, x2: one example each, (D,) or (1, D). Returns (steps, D), from x1's end to x2's.
        """
        check_count("interpolate", "steps", steps)
        ends = []
        for name, x in (("x1", x1), ("x2", x2)):
            batch = self._as_batch(x, "interpolate", name)  # (1, D)
            if batch.shape[0] != 1:
                raise ValueError(f"interpolate: {name} must be one example of shape ({self.spec.input_dim},) "
                                 f"or (1, {self.spec.input_dim}); got shape {tuple(batch.shape)}")
            ends.append(self.encode(batch)[0])  # (1, latent_dim)
        alpha = jnp.linspace(0.0, 1.0, int(steps), dtype=ends[0].dtype)[:, None]  # (steps, 1)
        z = (1.0 - alpha) * ends[0] + alpha * ends[1]  # (steps, latent_dim)
        return jax.lax.stop_gradient(self.mean_of(self.decode(z)))  # (steps, D)

    def _float(self, x: Any) -> jax.Array:
        """A NumPy or JAX array as an array of the model's dtype; uint8 images become x / 255 (in float32, then
        widened), as everywhere in vae_core."""
        if isinstance(x, jax.Array) and x.dtype == self.dtype:
            return x
        if isinstance(x, np.ndarray) and x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)  # NumPy's x / 255, as `check_data` computes it
        x = jnp.asarray(x)
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / jnp.float32(255.0)
        return x.astype(self.dtype)

    def _as_batch(self, x: Any, method: str, argument: str) -> jax.Array:
        """NumPy or JAX array, (D,), (B, D) or images (B, H, W, C) -> (B, D) rows of the model's dtype, checked."""
        if not isinstance(x, (np.ndarray, jax.Array)):
            raise TypeError(f"{method}: {argument} must be a NumPy array or a jax.Array; got {type(x).__name__}")
        rows = rows_shape(tuple(x.shape), self.spec, f"{method}: {argument}", single=True)
        return self._float(x).reshape(rows)  # (B, D)


def check_model(model: Any, caller: str) -> VAE:
    """`model`, if it is this backend's VAE; else a TypeError naming `caller` and how to build one."""
    if not isinstance(model, VAE):
        raise TypeError(f"{caller}: model must be a JAX VAE built by vae_core.build('jax', ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")
    return model



@contextlib.contextmanager
def eval_mode(model: VAE) -> Iterator[None]:
    """Inference while the block runs, as the torch backend's `eval_mode`. This model has no train/eval
    behaviour to switch (no dropout, no batch norm) and JAX records gradients only inside `jax.grad`, so there is
    nothing to set or restore."""
    yield
