"""`export`: a model or checkpoint of either backend written to a format, verified in its runtime, and moved into
place whole.

Every check runs before anything is written: the format, the output folder (new or empty, writable), whether the
format can hold the spec (read from the checkpoint's header), and whether the exporter and runtime are installed.
The files are then written into a staging folder beside DIR, verified there, given their export.json, and renamed
to DIR in one step: DIR never holds half an export, and a failure (verification included) leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from vae_core.deploy import formats, manifest, runtimes
from vae_core.deploy.verify import Verification, verify as verify_files
from vae_core.io.checkpoint import read_checkpoint, read_spec
from vae_core.io.out_dir import probe_writable
from vae_core.registry import BACKENDS, backend_module, backend_of

# How errors name the arguments: the Python function's, or the `vae export` command's flags.
PYTHON_NAMES = {"format": "export.format", "out": "export.out_dir", "model": "export.model",
                "no_verify": "verify=False"}
CLI_NAMES = {"format": "--format", "out": "--out", "model": "CHECKPOINT", "no_verify": "--no-verify"}


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote: the folder, its files, its export.json, and what verification measured (or None)."""

    out_dir: Path
    format: str
    files: tuple[str, ...]  # relative to out_dir, export.json included
    manifest: dict[str, Any]
    verification: Verification | None


def check_out_dir(out_dir: Any, argument: str) -> Path:
    """`out_dir` as a Path, if it is new or an empty folder that can be replaced (its parent writable)."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise TypeError(f"{argument} must be a folder path (a non-empty str or os.PathLike); got {out_dir!r}")
    path = Path(out_dir).absolute()
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == path else f"is inside a file, not a folder ({str(blocker)!r})"
        raise NotADirectoryError(f"{argument} {str(out_dir)!r} {where}; pass a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        found = sorted(p.name for p in path.iterdir())
        raise ValueError(f"{argument} {str(out_dir)!r} is not empty (it holds {len(found)} "
                         f"{'entry' if len(found) == 1 else 'entries'}, such as {found[0]!r}); pass a new or empty "
                         f"folder: an export never mixes its files with others")
    # where the staging folder (or its parents) will go
    probe_writable(next(p for p in path.parents if p.exists()), out_dir, argument)
    return path


@contextlib.contextmanager
def staging(path: Path) -> Iterator[Path]:
    """A fresh folder beside `path` to write into; renamed to `path` when the block succeeds, removed (with any
    parent folders it had to create) when it fails."""
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.export-", dir=path.parent))
    try:
        yield folder
        mask = os.umask(0o022)
        os.umask(mask)
        folder.chmod(0o777 & ~mask)  # mkdtemp's folder is 0700; give it the mode mkdir would
        if path.is_dir():
            path.rmdir()  # empty (checked before): the staging folder takes its place
        os.rename(folder, path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        for parent in created:  # deepest first
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def _source(model: Any, names: Mapping[str, str]):
    """(spec, a function giving the float32 weights, the source's description) of a checkpoint path or a model;
    a checkpoint's spec comes from its header alone, so the checks run before its tensors are read."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        spec = read_spec(path)

        def weights() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            ckpt = read_checkpoint(path)  # every checksum verified
            return ckpt.weights, {"checkpoint": str(model), "checkpoint_sha256": manifest.file_sha256(path),
                                  "backend": ckpt.backend}
        return spec, weights
    if getattr(model, "backend_name", None) is None:
        built = "|".join(map(repr, BACKENDS))  # 'torch'|'tf'|...: the registry's backends
        raise TypeError(f"{names['model']} must be a model built by vae_core.build({built}, ...) or "
                        f"load_checkpoint, or the path of a checkpoint; got {type(model).__name__}")
    name, module = backend_of(model)

    def weights() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return module.weights.export_weights(model), {"checkpoint": None, "checkpoint_sha256": None, "backend": name}
    return model.spec, weights


def run_export(model: Any, out_dir: Any, fmt_name: Any, verify: bool, names: Mapping[str, str]) -> ExportResult:
    """`export`, with its arguments named as `names` says (the function's, or the command's flags)."""
    fmt = formats.check_format(fmt_name, names["format"])
    if not isinstance(verify, bool):
        raise TypeError(f"export.verify must be True or False; got {verify!r}")
    path = check_out_dir(out_dir, names["out"])
    spec, read_weights = _source(model, names)
    formats.check_expressible(fmt, spec, names["format"])
    formats.check_installed(fmt, verify, names["format"], names["no_verify"])
    weights, source = read_weights()
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    source["weights_sha256"] = manifest.weights_sha256(weights)
    module = backend_module(fmt.backend)
    writer_model = module.build_model(spec, seed=0)  # a float32 CPU model of the writing framework, these weights
    module.weights.import_weights(writer_model, weights)
    with staging(path) as folder:
        writer = module.export.write(writer_model, folder, fmt.name)
        checked = None
        if verify:
            runners = runtimes.load(folder, fmt, spec)
            checked = verify_files(runners, spec, weights, runtimes.runtime(fmt), f"the {fmt.name} export")
            del runners  # the runtimes let go of the files before they move
        files = sorted([*(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
                        formats.MANIFEST])
        content = manifest.manifest(fmt, spec, source, writer, files,
                                    None if checked is None else checked.to_dict(), _version())
        manifest.write_manifest(folder, content)
    return ExportResult(out_dir=path, format=fmt.name, files=tuple(files), manifest=content, verification=checked)


def _version() -> str:
    """vae-core's installed version (the package's own __version__ sits above this layer)."""
    try:
        return importlib.metadata.version("vae-core")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export(model: Any, out_dir: str | os.PathLike, *, format: str, verify: bool = True) -> ExportResult:
    """Export a model (or a checkpoint path) of either backend to `format`, into the new or empty folder `out_dir`.

    Formats (`vae_core.deploy.formats.FORMATS`): "onnx" (encoder.onnx, decoder.onnx), "saved_model" (one TF
    SavedModel, signatures `encode` and `decode`), "litert" (encoder.tflite, decoder.tflite), "torch_export"
    (encoder.pt2, decoder.pt2), "jax_export" (encoder.jax_export, decoder.jax_export: serialized `jax.export`
    modules, run with `jax.export.deserialize(...).call(x)`). The encoder maps x (N, D) float32 to mean and log_var
    (N, L); the decoder maps z (N, L) to the decoder's mean (N, D) (probabilities for Bernoulli), and log_var (N, D)
    for "gaussian_learned". Nothing samples inside; the batch dimension is dynamic. `out_dir/export.json` records
    the spec, the format, the tensors and the source's SHA-256.

    With `verify` (the default), each file is run in its runtime on a fixed batch and compared with the float64
    NumPy reference forward of the same weights (`vae_core.deploy.verify`); past the tolerance it raises
    `ExportVerificationError` and writes nothing. Raises ValueError, TypeError, NotADirectoryError,
    PermissionError or ImportError (naming the pip extra) before writing anything when an argument is wrong.
    """
    return run_export(model, out_dir, format, verify, PYTHON_NAMES)
