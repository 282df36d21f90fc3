"""DIR/export.json: what an export holds and where it came from, for the people and tools that serve it.

    format        "onnx", "saved_model", "litert", "torch_export" or "jax_export"
    writer        the framework and tool that wrote the files
    spec          the model's VAESpec (VAESpec.from_dict reads it back)
    source        the checkpoint's path and the SHA-256 of its bytes (None for a model exported from memory), the
                  SHA-256 of its weights (of the checkpoint's per-tensor checksums: the same for a model and its
                  checkpoint), and the backend that wrote it
    encoder, decoder   each half's file (or SavedModel/LiteRT signature), and its inputs and outputs: name, shape
                  (null for the dynamic batch) and dtype
    files         every file of the export, relative to DIR
    verification  the runtime, tolerance and measured errors, or null with --no-verify
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vae_core.deploy.formats import MANIFEST, PARTS, SIGNATURES, Format, signatures
from vae_core.io.checkpoint import tensor_checksum
from vae_core.model.spec import VAESpec


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the weights: of the JSON of every tensor's own SHA-256 (a checkpoint's "checksums" table), by
    name. The same for a checkpoint and for the model loaded from it."""
    sums = {name: tensor_checksum(np.asarray(weights[name], dtype=np.float32)) for name in sorted(weights)}
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tensors(entries: list[tuple[str, tuple]]) -> list[dict[str, Any]]:
    return [{"name": name, "shape": list(shape), "dtype": "float32"} for name, shape in entries]


def manifest(fmt: Format, spec: VAESpec, source: dict[str, Any], writer: dict[str, str], files: list[str],
             verification: dict[str, Any] | None, version: str) -> dict[str, Any]:
    """The content of export.json."""
    halves = {}
    for part in PARTS:
        names = signatures(spec)[part]
        halves[part] = {"file": None if fmt.files() is None else fmt.files()[part],
                        "signature": SIGNATURES[part] if fmt.name in ("saved_model", "litert") else None,
                        "inputs": _tensors(names["inputs"]), "outputs": _tensors(names["outputs"])}
    return {"format": fmt.name, "vae_core_version": version, "writer": writer, "runtime": fmt.runtime,
            "spec": spec.to_dict(), "source": source, **halves, "files": files, "verification": verification}


def write_manifest(folder: str | Path, content: dict[str, Any]) -> Path:
    """Write export.json into `folder` (a staging folder: the whole folder is renamed into place after)."""
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(content, indent=1) + "\n")
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The export.json of an export folder."""
    return json.loads((Path(folder) / MANIFEST).read_text())
