"""The VAE of a `VAESpec` as a `torch.nn.Module`.

Layers, by neutral name (see `VAESpec.weight_shapes`):
    encoder.0 .. encoder.{n-1}   Linear + ReLU, widths (D, *hidden_dims)
    encoder.mu, encoder.log_var  Linear heads to latent_dim
    decoder.0 .. decoder.{n-1}   Linear + ReLU, widths (latent_dim, *reversed(hidden_dims))
    decoder.out                  Linear to spec.output_dim (logits, means, or means then log-variances)

The torch attributes are `encoder` (ModuleList), `mu`, `log_var`, `decoder` (ModuleList) and `out`;
`neutral_layers()` maps the neutral layer names to them.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from vae_core.model_attributes import SpecAttributes
from vae_core.spec import VAESpec


class VAE(SpecAttributes, nn.Module):
    """Gaussian-encoder VAE with an MLP encoder and a mirrored MLP decoder.

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

        def linear(n_in: int, n_out: int) -> nn.Linear:
            # Allocated without torch's default init: the weights come from vae_core.init_weights below.
            return nn.Linear(n_in, n_out, device="meta")

        widths = (spec.input_dim, *spec.hidden_dims)
        self.encoder = nn.ModuleList(linear(widths[i], widths[i + 1]) for i in range(len(spec.hidden_dims)))
        self.mu = linear(widths[-1], spec.latent_dim)
        self.log_var = linear(widths[-1], spec.latent_dim)
        widths = (spec.latent_dim, *reversed(spec.hidden_dims))
        self.decoder = nn.ModuleList(linear(widths[i], widths[i + 1]) for i in range(len(spec.hidden_dims)))
        self.out = linear(widths[-1], spec.output_dim)
        self.to_empty(device="cpu")

        from backends.torch.weights import import_weights
        from vae_core.init import init_weights

        import_weights(self, init_weights(spec, seed))

    def neutral_layers(self) -> dict[str, nn.Linear]:
        """Neutral layer name -> Linear, in the order of `spec.weight_shapes()`."""
        layers = {f"encoder.{i}": layer for i, layer in enumerate(self.encoder)}
        layers.update({"encoder.mu": self.mu, "encoder.log_var": self.log_var})
        layers.update({f"decoder.{i}": layer for i, layer in enumerate(self.decoder)})
        layers["decoder.out"] = self.out
        return layers

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    # ------------------------------------------------------------------ the model

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): x (B, D) -> mu (B, latent_dim), log_var (B, latent_dim)."""
        h = x  # (B, D)
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
        """Parameters of p(x|z): z (B, latent_dim) -> (B, D) logits or means, or (B, 2D) means then log-vars."""
        h = z  # (B, latent_dim)
        for layer in self.decoder:
            h = torch.relu(layer(h))  # (B, reversed(hidden_dims)[i])
        return self.out(h)  # (B, spec.output_dim)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, D) -> (decoder_out (B, output_dim), mu (B, latent_dim), log_var (B, latent_dim))."""
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
        _check_count("sample", "n", n)
        with eval_mode(self):
            if seed is None:
                z = torch.randn(n, self.spec.latent_dim, device=self.device)  # (n, latent_dim)
            else:
                _check_seed("sample", seed)
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
        _check_count("interpolate", "steps", steps)
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
        """NumPy array or tensor, (D,) or (B, D) -> float32 (B, D) tensor on the model's device."""
        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8:
                x = x.astype(np.float32) / np.float32(255.0)
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"{method}: {argument} must be a NumPy array or a torch.Tensor; got {type(x).__name__}")
        x = x.to(device=self.device, dtype=torch.float32)
        if x.ndim == 1:
            x = x.unsqueeze(0)  # (1, D)
        if x.ndim != 2 or x.shape[1] != self.spec.input_dim:
            raise ValueError(f"{method}: {argument} must have shape (B, {self.spec.input_dim}) or "
                             f"({self.spec.input_dim},); got {tuple(x.shape)}")
        return x


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


def _check_count(method: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{method}: {name} must be an int >= 1; got {value!r}")


def _check_seed(method: str, seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{method}: seed must be None or an int >= 0; got {seed!r}")
