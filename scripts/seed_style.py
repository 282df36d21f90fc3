"""The seed's PyTorch training loop (section 3.1), rebuilt as the baseline of our benchmarks and results.

Written from the seed's description, not its code, and kept to what it does:
- data: `torchvision.datasets.MNIST`-style per-image items. Each `__getitem__` turns the stored uint8 image
  into a PIL image, then `transforms.ToTensor()` (PIL -> NumPy -> uint8 tensor, HWC -> CHW, float, /255),
  then the seed's `Lambda(x.view(-1))`. torchvision itself does not import with the CPU torch wheel, so the
  same steps are spelt out here with Pillow and torch (`SeedStyleImages`). `MinimalImages` is the cheapest
  per-item conversion (a uint8 row to a float tensor), for a reference without the PIL cost.
- a `DataLoader` (batch 128, num_workers=0), the batch moved to the device each step;
- the seed's MLP VAE (Linear/ReLU, separate mu and log_var heads), torch's default init unless told otherwise;
- loss: `binary_cross_entropy_with_logits(reduction="sum") / B` plus the closed-form KL (sum over features,
  mean over the batch), `torch.optim.Adam(lr=1e-3)`, and `.item()` on the three losses at every step;
- evaluation as the seed's `evaluate`: batches of 128 in order, fresh noise, the mean of the batch means.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler


def _image_shape(d: int) -> tuple[int, int]:
    side = math.isqrt(d)
    return (side, side) if side * side == d else (1, d)


class SeedStyleImages(Dataset):
    """uint8 images (N, D) as torchvision's MNIST serves them: PIL image, ToTensor, flattened."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images.reshape(len(images), *_image_shape(images.shape[1])))  # (N, H, W)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pic = Image.fromarray(self.images[i].numpy())  # mode "L", as MNIST.__getitem__
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))  # ToTensor (to_tensor on a PIL image) ...
        img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()  # (1, H, W)
        img = img.to(dtype=torch.get_default_dtype()).div(255)
        return img.view(-1), 0  # the seed's Lambda(lambda x: x.view(-1)); (D,), label


class MinimalImages(Dataset):
    """uint8 images (N, D), each item converted straight to a float tensor in [0, 1]."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[i]).float().div(255.0), 0  # (D,), label


class FixedOrder(Sampler):
    """Epoch e visits `orders(e)`: lets a benchmark give the reference the same batches as our loop."""

    def __init__(self, n: int, orders) -> None:
        self.n, self.orders, self.epoch = n, orders, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = self.orders(self.epoch)
        self.epoch += 1
        return iter(order.tolist())


class ReplayNoise:
    """A `SeedVAE.noise` that hands out `epoch_noise(e)` (n, latent) row by row, epoch after epoch: with
    `FixedOrder`, the i-th example of an epoch gets row i, as in `backends.*.fit(shared_noise=True)`."""

    def __init__(self, n: int, epoch_noise) -> None:
        self.n, self.epoch_noise, self.epoch, self.pos, self.rows = n, epoch_noise, 0, 0, None

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            self.rows = torch.from_numpy(self.epoch_noise(self.epoch))  # (n, latent)
        eps = self.rows[self.pos:self.pos + len(like)].to(like.device)  # (B, latent)
        self.pos += len(like)
        if self.pos >= self.n:
            self.epoch, self.pos, self.rows = self.epoch + 1, 0, None
        return eps


class SeedVAE(nn.Module):
    """The seed's VAE: encoder Linear/ReLU stack, fc_mu and fc_log_var, decoder Linear/ReLU stack to logits."""

    def __init__(self, d: int, hidden: tuple[int, ...], latent: int) -> None:
        super().__init__()
        enc, width = [], d
        for w in hidden:
            enc += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.encoder = nn.Sequential(*enc)
        self.fc_mu, self.fc_log_var = nn.Linear(width, latent), nn.Linear(width, latent)
        dec, width = [], latent
        for w in reversed(hidden):
            dec += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.decoder = nn.Sequential(*dec, nn.Linear(width, d))
        self.n_hidden = len(hidden)
        self.noise: Callable[[torch.Tensor], torch.Tensor] | None = None  # eps source; None: torch.randn_like

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (B, hidden[-1])
        mu, log_var = self.fc_mu(h), self.fc_log_var(h)  # (B, latent) each
        eps = torch.randn_like(mu) if self.noise is None else self.noise(mu)  # (B, latent)
        z = mu + torch.exp(0.5 * log_var) * eps  # (B, latent)
        return self.decoder(z), mu, log_var  # (B, D) logits

    def neutral_layers(self) -> dict[str, nn.Linear]:
        """Our neutral layer names (vae_core.VAESpec.weight_shapes) -> this model's Linear layers."""
        n = self.n_hidden
        layers = {f"encoder.{i}": self.encoder[2 * i] for i in range(n)}
        layers.update({"encoder.mu": self.fc_mu, "encoder.log_var": self.fc_log_var})
        layers.update({f"decoder.{i}": self.decoder[2 * i] for i in range(n)})
        layers["decoder.out"] = self.decoder[2 * n]
        return layers

    def load_neutral(self, weights: dict[str, np.ndarray]) -> "SeedVAE":
        with torch.no_grad():
            for name, layer in self.neutral_layers().items():
                layer.weight.copy_(torch.from_numpy(weights[f"{name}.kernel"].T))
                layer.bias.copy_(torch.from_numpy(weights[f"{name}.bias"]))
        return self

    def neutral_weights(self) -> dict[str, np.ndarray]:
        out = {}
        for name, layer in self.neutral_layers().items():
            out[f"{name}.kernel"] = np.ascontiguousarray(layer.weight.detach().cpu().numpy().T)
            out[f"{name}.bias"] = layer.bias.detach().cpu().numpy().copy()
        return out


def seed_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor):
    """(loss, recon, kl), each summed over features and averaged over the batch, as the seed's vae_loss."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.size(0)
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp()) / x.size(0)
    return recon + kl, recon, kl


def train_epoch(model: SeedVAE, loader: DataLoader, optimizer: torch.optim.Optimizer,
                device: torch.device) -> float:
    """One epoch of the seed's train_epoch; returns its mean of batch losses."""
    model.train()
    total = 0.0
    for data, _ in loader:
        data = data.to(device)
        optimizer.zero_grad()
        logits, mu, log_var = model(data)
        loss, recon, kl = seed_loss(logits, data, mu, log_var)
        loss.backward()
        optimizer.step()
        total += loss.item()
        recon.item()
        kl.item()
    return total / len(loader)


def evaluate(model: SeedVAE, loader: DataLoader, device: torch.device) -> float:
    """The seed's evaluate: fresh noise, the mean over batches of each batch's mean loss."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for data, _ in loader:
            data = data.to(device)
            logits, mu, log_var = model(data)
            total += seed_loss(logits, data, mu, log_var)[0].item()
    return total / len(loader)
