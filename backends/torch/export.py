"""The torch model's deterministic halves, and the formats torch writes: `torch_export` (torch.export) and `onnx`
(torch.onnx's dynamo exporter, which starts from torch.export's graph).

`encoder(model)` and `decoder(model)` are `nn.Module`s with no sampling inside, which `torch.export.export` takes:

    encoder(model)(x)  x (N, D) -> (mean, log_var), (N, L) each: q(z|x)'s parameters
    decoder(model)(z)  z (N, L) -> mean (N, D): sigmoid(logits) for Bernoulli, the means for the Gaussians; and
                       (mean, log_var) for "gaussian_learned"

`model(x)` itself keeps sampling z (the seed's definition of `forward`). `vae_core.deploy.export` calls `write` and
`load`; the tensor and file names come from `vae_core.deploy.formats`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from backends.torch.model import check_model
from vae_core.deploy.formats import FORMATS, PARTS, signatures

WRITES = ("onnx", "torch_export")  # the formats this backend writes (vae_core.deploy.formats.FORMATS[f].backend)
EXAMPLE_ROWS = 2  # the example batch traced; the batch dimension stays dynamic ("batch")


class _Encoder(nn.Module):
    """x (N, D) -> (mean, log_var) of q(z|x): the model's `encode`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(x)  # (N, L), (N, L)


class _Decoder(nn.Module):
    """z (N, L) -> the decoder's mean (N, D), with its log-variances (N, D) for a learned variance."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor):
        out = self.model.decode(z)  # (N, D) or (N, 2D)
        d = self.model.spec.input_dim
        if self.model.spec.likelihood == "bernoulli":
            return torch.sigmoid(out)  # probabilities
        if self.model.spec.likelihood == "gaussian_learned":
            return out[:, :d], out[:, d:]
        return out


# The VAE's submodules each half runs (backends.torch.model.VAE's attributes).
HALF_MODULES = {"encoder": ("encoder_conv", "encoder", "mu", "log_var"), "decoder": ("decoder", "decoder_conv", "out")}


def _half(model: nn.Module, part: str) -> nn.Module:
    """A shallow copy of the VAE that holds only `part`'s layers (the same modules and weights), so that what
    torch.export saves of a half is that half's weights alone, not the whole model's."""
    half = copy.copy(model)
    half._modules = {name: module for name, module in model._modules.items() if name in HALF_MODULES[part]}
    return half


def encoder(model: nn.Module) -> nn.Module:
    """The model's encoder as a deterministic `nn.Module`, sharing the model's weights (and its device)."""
    return _Encoder(_half(check_model(model, "encoder"), "encoder"))


def decoder(model: nn.Module) -> nn.Module:
    """The model's decoder, mapped to its mean, as a deterministic `nn.Module`, sharing the model's weights."""
    return _Decoder(_half(check_model(model, "decoder"), "decoder"))


def _traced(model: nn.Module, part: str) -> tuple[nn.Module, tuple[torch.Tensor], dict]:
    """A half, an example input for it, and its dynamic batch dimension, as torch.export takes them."""
    (name, (_, width)), = signatures(model.spec)[part]["inputs"]
    example = torch.zeros(EXAMPLE_ROWS, width, device=model.device)
    module = encoder(model) if part == "encoder" else decoder(model)
    return module, (example,), {name: {0: torch.export.Dim("batch")}}


def write(model: nn.Module, folder: str | Path, format: str) -> dict[str, str]:
    """Write `format`'s two files into `folder` (which exists) from a float32 model on the CPU; returns what wrote
    them, for export.json."""
    check_model(model, "write")
    if format not in WRITES:
        raise ValueError(f"write: format must be one of {WRITES} for the torch backend; got {format!r}")
    files = FORMATS[format].files()
    for part in PARTS:
        module, args, dynamic = _traced(model, part)
        path = str(Path(folder) / files[part])
        if format == "torch_export":
            with torch.no_grad():
                program = torch.export.export(module, args, dynamic_shapes=dynamic)
            torch.export.save(program, path)
            continue
        names = signatures(model.spec)[part]
        # the exporter prints its progress and warns about its own internals: neither is the user's business
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, dynamo=True, verbose=False, dynamic_shapes=dynamic,
                                        input_names=[n for n, _ in names["inputs"]],
                                        output_names=[n for n, _ in names["outputs"]])
            program.save(path)  # weights inside the file, or beside it (<file>.data) past protobuf's 2 GiB
    tool = "torch.onnx.export(dynamo=True)" if format == "onnx" else "torch.export.export + torch.export.save"
    return {"framework": f"torch {torch.__version__}", "tool": tool}


def load(folder: str | Path, format: str) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, ...]]]:
    """Each half of a `torch_export` folder, loaded with torch.export.load, as a function of a float32 array that
    returns its outputs as arrays."""
    if format != "torch_export":
        raise ValueError(f"load: format must be 'torch_export' for the torch backend (onnx runs in onnxruntime); "
                         f"got {format!r}")
    files = FORMATS[format].files()
    runners = {}
    for part in PARTS:
        module = torch.export.load(str(Path(folder) / files[part])).module()

        def run(rows: np.ndarray, module=module) -> tuple[np.ndarray, ...]:
            with torch.no_grad():
                out = module(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)))
            return tuple(t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,)))
        runners[part] = run
    return runners


def versions() -> dict[str, str]:
    """The framework's version, for export.json and the benchmark."""
    return {"torch": torch.__version__}
