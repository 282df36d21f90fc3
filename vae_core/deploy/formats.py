"""The export formats, written once: which framework writes each, what it writes, what runs it, and the tensors of
its encoder and decoder.

Every format holds the model's two deterministic halves (no sampling inside):

    encoder   x (N, D) float32 rows           -> mean (N, L), log_var (N, L): q(z|x)'s parameters
    decoder   z (N, L) float32                -> mean (N, D): the decoder's mean (probabilities for Bernoulli, means
                                                 for the Gaussians), and log_var (N, D) for "gaussian_learned"

with a dynamic batch dimension N. Each format is written by the framework that exports it best (the checkpoint is
neutral, so either backend's checkpoint goes to any format), and verified in the runtime users deploy it with.
"""
from __future__ import annotations

import difflib
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

from vae_core.model.spec import VAESpec
from vae_core.registry import BACKENDS

PARTS = ("encoder", "decoder")
SIGNATURES = {"encoder": "encode", "decoder": "decode"}  # the entry points of a SavedModel and of a LiteRT file
EXTRA = "export"  # the pip extra that installs the exporters and runtimes beyond the frameworks
MANIFEST = "export.json"  # written beside the artifacts
FLATBUFFER_LIMIT = 2 ** 31  # bytes: a LiteRT file, and a serialized jax.export.Exported, is one FlatBuffer, whose
# 32-bit signed offsets reach 2 GiB
FLATBUFFER_FORMATS = {"litert": "a LiteRT file", "jax_export": "a serialized jax.export.Exported"}


@dataclass(frozen=True)
class Format:
    """One export format: how it is written, and how it is run to verify it."""

    name: str
    backend: str  # the backend whose framework writes it
    writer: str  # the exporter, in words (export.json, the docs)
    runtime: str  # what verification loads the files with, in words
    suffix: str | None  # each half is DIR/<part><suffix>; None: DIR itself is the artifact (a SavedModel)
    write_needs: tuple[str, ...]  # modules, beyond the backend's framework, that writing needs
    run_needs: tuple[str, ...]  # modules the runtime needs (to verify)

    def files(self) -> dict[str, str] | None:
        """Each half's file name in DIR, or None for a format whose artifact is DIR itself."""
        return None if self.suffix is None else {part: part + self.suffix for part in PARTS}


FORMATS: dict[str, Format] = {
    # torch.onnx's dynamo exporter (torch.export's graph, translated by onnxscript), PyTorch's maintained exporter:
    # named inputs, outputs and dynamic batch axis ("batch"). tf2onnx 1.17 converts the TF model too, to the same
    # error, but names the batch axis "unk__11" and adds an extra (docs/deploy.md).
    "onnx": Format("onnx", "torch", "torch.onnx.export(dynamo=True)", "onnxruntime", ".onnx", ("onnx", "onnxscript"),
                   ("onnxruntime",)),
    # Keras' ExportArchive: one SavedModel with the serving signatures `encode` and `decode` (TF Serving's layout)
    "saved_model": Format("saved_model", "tf", "keras.export.ExportArchive", "tf.saved_model.load", None, (), ()),
    # TF's converter, from that SavedModel's signatures: pure LiteRT builtins, run by the LiteRT interpreter
    "litert": Format("litert", "tf", "tf.lite.TFLiteConverter.from_saved_model", "ai_edge_litert.interpreter", ".tflite",
                     (), ("ai_edge_litert",)),
    # torch.export: a graph of ATen ops, torch.export.save and .load
    "torch_export": Format("torch_export", "torch", "torch.export.export + torch.export.save", "torch.export.load",
                           ".pt2", (), ()),
    # jax.export: each half's StableHLO, the weights as constants, a symbolic batch ("batch"), lowered for the CPU
    # and CUDA; Exported.serialize's bytes (a FlatBuffer: jax's serialization needs the flatbuffers package, which
    # jax does not install), read back with jax.export.deserialize and run with Exported.call
    "jax_export": Format("jax_export", "jax", "jax.export.export + Exported.serialize",
                         "jax.export.deserialize + Exported.call", ".jax_export", ("flatbuffers",), ("flatbuffers",)),
}


def check_format(fmt: Any, owner: str) -> Format:
    """The format named `fmt`; a ValueError naming the formats (and the nearest name) otherwise."""
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    near = difflib.get_close_matches(str(fmt), FORMATS, n=1)
    alias = {"tflite": "litert", "tf": "saved_model", "savedmodel": "saved_model", "pt2": "torch_export",
             "torch": "torch_export", "jax": "jax_export", "stablehlo": "jax_export", "jax.export": "jax_export",
             "exported": "jax_export"}.get(str(fmt).lower())
    hint = alias or (near[0] if near else None)
    raise ValueError(f"{owner} must be one of {', '.join(FORMATS)}; got {fmt!r}"
                     + (f". Did you mean {hint!r}?" if hint else ""))


def signatures(spec: VAESpec) -> dict[str, dict[str, list[tuple[str, tuple[int | None, int]]]]]:
    """Each half's input and output tensors as (name, shape), None for the dynamic batch: the names every format
    uses (ONNX's input and output names, the SavedModel's and LiteRT's signature keys, torch's output order)."""
    d, latent = spec.input_dim, spec.latent_dim
    decoded = [("mean", (None, d))] + ([("log_var", (None, d))] if spec.likelihood == "gaussian_learned" else [])
    return {"encoder": {"inputs": [("x", (None, d))], "outputs": [("mean", (None, latent)), ("log_var", (None, latent))]},
            "decoder": {"inputs": [("z", (None, latent))], "outputs": decoded}}


def part_bytes(spec: VAESpec) -> dict[str, int]:
    """The float32 weights of each half, in bytes (the encoder's heads included in the encoder)."""
    sizes = dict.fromkeys(PARTS, 0)
    for name, shape in spec.weight_shapes().items():
        sizes[name.split(".")[0]] += 4 * math.prod(shape)
    return sizes


def check_expressible(fmt: Format, spec: VAESpec, owner: str) -> None:
    """A ValueError when `fmt` cannot hold the model of `spec`: a LiteRT file, or a serialized jax.export module,
    over FlatBuffers' 2 GiB (each half's weights are stored inside its one FlatBuffer)."""
    if fmt.name not in FLATBUFFER_FORMATS:
        return
    others = ", ".join(repr(name) for name in FORMATS if name not in FLATBUFFER_FORMATS)
    for part, size in part_bytes(spec).items():
        if size >= FLATBUFFER_LIMIT:
            raise ValueError(f"{owner} {fmt.name!r} cannot hold this checkpoint's {part}: its float32 weights are "
                             f"{size / 2 ** 30:.1f} GiB, and {FLATBUFFER_FORMATS[fmt.name]} is one FlatBuffer, which "
                             f"addresses at most 2 GiB; export it as {_or(others)} (they store large weights beside "
                             f"the graph), or use a smaller spec")


def _or(names: str) -> str:
    """"a, b, c" -> "a, b or c"."""
    head, _, last = names.rpartition(", ")
    return f"{head} or {last}" if head else last


def check_installed(fmt: Format, verify: bool, owner: str, no_verify: str) -> None:
    """An ImportError naming the missing module and the extra that installs it, before anything is written: the
    writer's framework (the backend's extra), its exporter's modules and, with `verify`, the runtime's (which
    `no_verify`, the argument that skips verification, would skip)."""
    _, frameworks, backend_extra = BACKENDS[fmt.backend]
    needed = [(m, backend_extra, f"to write {fmt.name}") for m in frameworks[:1]]
    needed += [(m, EXTRA, f"to write {fmt.name}") for m in fmt.write_needs]
    needed += [(m, EXTRA, f"to verify {fmt.name} in its runtime") for m in fmt.run_needs if verify]
    for module, extra, why in needed:
        if not _installed(module):
            skip = "" if why.startswith("to write") else f", or pass {no_verify} to skip the check"
            raise ImportError(f"{owner} {fmt.name!r} needs {module!r} {why}, which is not installed; install it with: "
                              f"pip install 'vae-core[{extra}]'{skip}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that is not a package, or a module set to None in sys.modules
        return False
