"""Checkpoint schema v2: one safetensors file that any backend can load, checksummed.

Layout of the file:
- tensors: the weights under the neutral names of `VAESpec.weight_shapes()` (float32, in the layouts of
  `vae_core.model.architecture`: dense (in, out), conv (kh, kw, in, out), transposed conv (kh, kw, out, in)),
  and, when an optimizer is saved, Adam's moments as `adam.m.<name>` and `adam.v.<name>` in the same layout;
- header metadata, key "vae_core": a JSON object with `schema_version`, `spec`, `train_config`, `epoch`
  (epochs completed), `history`, `adam_step`, `trainer_state` (scheduler, early stopping, the position inside
  an epoch), `backend`, and `checksums`: the SHA-256 of every tensor's bytes;
- header metadata, key "vae_core.sha256": the SHA-256 of the "vae_core" JSON text itself.

safetensors carries no checksum, so without these a flipped bit in the tensor bytes loads silently as other
weights. Loading verifies both and refuses any mismatch with a `CheckpointError` that names the tensor; a flip
anywhere else in the header breaks its JSON or its offsets, which safetensors refuses. Schema-v1 files (no
checksums) still load, with a warning.

One file means one atomic write (temp file, fsync, os.replace): a reader never sees half a checkpoint.
Loading never unpickles: safetensors holds raw arrays and the metadata is JSON.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig
from vae_core.io.atomic import atomic_write
from vae_core.model.spec import VAESpec

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # schema 1: the same layout without checksums
METADATA_KEY = "vae_core"
METADATA_CHECKSUM_KEY = "vae_core.sha256"
ADAM_PREFIXES = ("adam.m.", "adam.v.")


# The files a training run keeps in its out_dir: the latest epoch, and the best epoch by the monitored loss.
LAST_FILE, BEST_FILE = "last.safetensors", "best.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not match its spec."""


@dataclass
class AdamState:
    """Adam's state in the neutral layouts: the step count and both moments of every weight."""

    step: int  # optimizer steps taken (Adam's t)
    m: dict[str, np.ndarray]  # first moments, neutral names and layouts
    v: dict[str, np.ndarray]  # second moments, neutral names and layouts


@dataclass
class Checkpoint:
    """What a checkpoint file holds: the spec, the weights, and what a run needs to resume (see the module docstring)."""

    spec: VAESpec  # rebuilds the model
    weights: dict[str, np.ndarray]  # neutral name -> float32 array
    train_config: TrainConfig | None = None  # the config of the run that wrote it
    epoch: int = 0  # epochs completed
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics so far
    adam: AdamState | None = None  # optimizer state, to resume training
    trainer_state: dict[str, Any] = field(default_factory=dict)  # JSON-able loop state: LR, patience, RNG
    backend: str | None = None  # the backend that wrote it (information only)

    def __post_init__(self) -> None:
        validate_weights(self.spec, self.weights, what="weights")
        if self.adam is not None:
            validate_weights(self.spec, self.adam.m, what="Adam first moments")
            validate_weights(self.spec, self.adam.v, what="Adam second moments")


def validate_weights(spec: VAESpec, weights: dict[str, np.ndarray], *, what: str = "weights") -> None:
    """Check every tensor's name, shape, dtype and finiteness against the spec; say exactly what is wrong."""
    expected = spec.weight_shapes()
    missing = [n for n in expected if n not in weights]
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{what} do not match the spec: missing {missing or 'none'}, unexpected {unexpected or 'none'}. "
            f"The spec {spec.to_dict()} expects {list(expected)}.")
    for name, shape in expected.items():
        arr = weights[name]
        found = (tuple(np.shape(arr)), str(getattr(arr, "dtype", type(arr).__name__)))
        if found != (shape, "float32"):
            raise CheckpointError(f"{what} tensor {name!r}: expected shape {shape} float32, "
                                  f"found shape {found[0]} {found[1]}")
        if not np.all(np.isfinite(arr)):
            raise CheckpointError(f"{what} tensor {name!r} holds NaN or inf values; "
                                  f"a checkpoint must hold finite numbers")


def write_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then os.replace over `path`."""
    from safetensors.numpy import save

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint path {str(path)!r}: directory {str(path.parent)!r} does not exist; "
                                f"create it first")
    tensors = {name: np.ascontiguousarray(a) for name, a in ckpt.weights.items()}
    if ckpt.adam is not None:
        for prefix, moments in zip(ADAM_PREFIXES, (ckpt.adam.m, ckpt.adam.v)):
            tensors.update({prefix + n: np.ascontiguousarray(a) for n, a in moments.items()})
    meta = {
        "schema_version": SCHEMA_VERSION,
        "spec": ckpt.spec.to_dict(),
        "train_config": None if ckpt.train_config is None else ckpt.train_config.to_dict(),
        "epoch": int(ckpt.epoch),
        "history": ckpt.history,
        "adam_step": None if ckpt.adam is None else int(ckpt.adam.step),
        "trainer_state": ckpt.trainer_state,
        "backend": ckpt.backend,
        "checksums": {"algorithm": "sha256", "tensors": {name: tensor_checksum(a) for name, a in tensors.items()}},
    }
    text = json.dumps(meta, allow_nan=False)
    data = save(tensors, metadata={METADATA_KEY: text, METADATA_CHECKSUM_KEY: _sha256(text.encode())})
    atomic_write(path, data)
    return path


def _read_file(path: Path, *, tensors: bool) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """A safetensors file's metadata and, with `tensors`, its tensors; FileNotFoundError or CheckpointError."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the path of a .safetensors file "
                                f"written by save_checkpoint")
    try:
        with safe_open(str(path), framework="np") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error types for bad headers and sizes
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors checkpoint "
                              f"(truncated, corrupt, or another format): {e}") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint. Raises FileNotFoundError or CheckpointError, never unpickles."""
    path = Path(path)
    raw_meta, tensors = _read_file(path, tensors=True)
    meta = _parse_metadata(path, raw_meta)
    _verify_tensors(path, meta, tensors)
    try:
        spec = VAESpec.from_dict(meta["spec"])
        config = meta.get("train_config")
        config = None if config is None else TrainConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r}: its spec or train_config is invalid: {e}") from None
    weights = {k: t for k, t in tensors.items() if not k.startswith(ADAM_PREFIXES)}
    try:
        adam = None
        if meta.get("adam_step") is not None:
            m, v = ({k[len(p):]: t for k, t in tensors.items() if k.startswith(p)} for p in ADAM_PREFIXES)
            adam = AdamState(step=int(meta["adam_step"]), m=m, v=v)
        return Checkpoint(spec=spec, weights=weights, train_config=config, epoch=int(meta.get("epoch", 0)),
                          history=meta.get("history") or {}, adam=adam,
                          trainer_state=meta.get("trainer_state") or {}, backend=meta.get("backend"))
    except CheckpointError as e:
        raise CheckpointError(f"{str(path)!r}: {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r}: its metadata does not describe a checkpoint: {e}") from None


def read_spec(path: str | os.PathLike) -> VAESpec:
    """The spec in a checkpoint's header, read without its tensors: for checks on the spec before a large file is
    read (`vae export`). Checks the header's own checksum only; `read_checkpoint` verifies the rest."""
    path = Path(path)
    raw_meta, _ = _read_file(path, tensors=False)
    try:
        return VAESpec.from_dict(_parse_metadata(path, raw_meta)["spec"])
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{str(path)!r}: its spec is invalid: {e}") from None


def tensor_checksum(array: np.ndarray) -> str:
    """SHA-256 (hex) of an array's bytes in C order, as safetensors stores them."""
    return _sha256(np.ascontiguousarray(array).view(np.uint8).data)


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify_tensors(path: Path, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    """Every tensor's bytes against the header's checksum (schema 2); a schema-1 file warns that it cannot."""
    if meta["schema_version"] == 1:
        warnings.warn(f"{str(path)!r} is a schema-v1 checkpoint without checksums: its tensors cannot be verified; "
                      f"save it again to add them", UserWarning, stacklevel=caller_stacklevel())
        return
    sums = meta.get("checksums")
    expected = sums.get("tensors") if isinstance(sums, dict) and sums.get("algorithm") == "sha256" else None
    if not isinstance(expected, dict) or set(expected) != set(tensors):
        raise CheckpointError(f"{str(path)!r}: the header's checksums do not list exactly the file's tensors; the "
                              f"file is corrupt or was not written by save_checkpoint")
    for name, array in tensors.items():
        if tensor_checksum(array) != expected[name]:
            raise CheckpointError(f"{str(path)!r}: tensor {name!r} does not match its SHA-256 checksum: the file is "
                                  f"corrupt (a changed byte); use another copy or an earlier checkpoint")


def _parse_metadata(path: Path, raw_meta: dict[str, str]) -> dict[str, Any]:
    if METADATA_KEY not in raw_meta:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a vae_core checkpoint "
                              f"(no {METADATA_KEY!r} metadata); write it with save_checkpoint")
    text = raw_meta[METADATA_KEY]
    checksum = raw_meta.get(METADATA_CHECKSUM_KEY)
    if checksum is not None and checksum != _sha256(text.encode("utf-8", "surrogatepass")):
        raise CheckpointError(f"{str(path)!r}: the {METADATA_KEY!r} metadata does not match its SHA-256 checksum: the "
                              f"file is corrupt (a changed byte); use another copy or an earlier checkpoint")
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{str(path)!r}: the {METADATA_KEY!r} metadata is not valid JSON: {e}") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise CheckpointError(f"{str(path)!r}: schema_version {version!r} is not supported; "
                              f"this vae_core reads schema_version {', '.join(map(str, READABLE_VERSIONS))}")
    if version >= 2 and checksum is None:
        raise CheckpointError(f"{str(path)!r}: a schema-v{version} checkpoint without its {METADATA_CHECKSUM_KEY!r} "
                              f"header checksum: the file is corrupt or was not written by save_checkpoint")
    if not isinstance(meta.get("spec"), dict):
        raise CheckpointError(f"{str(path)!r}: metadata has no 'spec' object to rebuild the model from")
    return meta
