"""Each format's files loaded in the runtime users deploy them with, as one function per half: a float32 array in,
the half's outputs out as arrays (in `formats.signatures`' order).

onnx runs in onnxruntime and litert in the LiteRT interpreter (`ai_edge_litert`), neither of which needs torch or
TensorFlow, so they are loaded here; saved_model (`tf.saved_model.load`), torch_export (`torch.export.load`) and
jax_export (`jax.export.deserialize`, then `Exported.call`) run in their framework, through the backend's
`export.load`.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Callable

import numpy as np

from vae_core.deploy.formats import PARTS, SIGNATURES, Format, signatures
from vae_core.model.spec import VAESpec
from vae_core.registry import backend_module

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]
# The installed packages whose version names each runtime (the first found): TF is "tensorflow" or "tensorflow-cpu".
DISTRIBUTIONS = {"onnx": ("onnxruntime",), "litert": ("ai-edge-litert",), "saved_model": ("tensorflow",
                                                                                        "tensorflow-cpu"),
                 "torch_export": ("torch",), "jax_export": ("jax",)}


def runtime(fmt: Format) -> str:
    """The runtime of `fmt` with its installed version, e.g. "onnxruntime 1.32.0"."""
    for name in DISTRIBUTIONS[fmt.name]:
        try:
            return f"{fmt.runtime} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return fmt.runtime


def load(folder: str | Path, fmt: Format, spec: VAESpec) -> dict[str, Runner]:
    """Each half of the files of `fmt` in `folder`, loaded in its runtime."""
    if fmt.name == "onnx":
        return _onnx(Path(folder), fmt, spec)
    if fmt.name == "litert":
        return _litert(Path(folder), fmt, spec)
    return backend_module(fmt.backend).export.load(folder, fmt.name)


def _onnx(folder: Path, fmt: Format, spec: VAESpec) -> dict[str, Runner]:
    import onnxruntime

    runners = {}
    for part in PARTS:
        session = onnxruntime.InferenceSession(str(folder / fmt.files()[part]), providers=["CPUExecutionProvider"])
        (name, _), = signatures(spec)[part]["inputs"]

        def run(rows: np.ndarray, session=session, name=name) -> tuple[np.ndarray, ...]:
            return tuple(session.run(None, {name: np.ascontiguousarray(rows, dtype=np.float32)}))
        runners[part] = run
    return runners


def _litert(folder: Path, fmt: Format, spec: VAESpec) -> dict[str, Runner]:
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for part in PARTS:
        interpreter = Interpreter(model_path=str(folder / fmt.files()[part]))
        signature = interpreter.get_signature_runner(SIGNATURES[part])  # resizes its input to each batch
        (name, _), = signatures(spec)[part]["inputs"]
        outputs = [out for out, _ in signatures(spec)[part]["outputs"]]

        def run(rows: np.ndarray, signature=signature, name=name, outputs=outputs,
                owner=interpreter) -> tuple[np.ndarray, ...]:  # `owner` keeps the interpreter alive
            result = signature(**{name: np.ascontiguousarray(rows, dtype=np.float32)})
            return tuple(np.array(result[out]) for out in outputs)  # copies: the interpreter reuses its buffers
        runners[part] = run
    return runners
