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
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.checks import caller_stacklevel
from vae_core.config import TrainConfig
from vae_core.io.atomic import atomic_write_with
from vae_core.io.files import check_regular_file
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
    check_metadata(meta, f"write_checkpoint {str(path)!r}: its", "a checkpoint with it could not be read back")
    text = json.dumps(meta, allow_nan=False)
    metadata = {METADATA_KEY: text, METADATA_CHECKSUM_KEY: _sha256(text.encode())}
    atomic_write_with(path, lambda tmp: _save_file(tensors, tmp, metadata))  # streamed from the arrays
    return path


def _save_file(tensors: dict[str, np.ndarray], path: Path, metadata: dict[str, str]) -> None:
    """`safetensors.numpy.save_file`, with the system's refusal of the write (ENOSPC, EFBIG, EIO, ...) as the
    OSError it is: safetensors reports it as its own error type, with "(os error N)" in the text."""
    from safetensors.numpy import save_file

    try:
        save_file(tensors, path, metadata=metadata)
    except Exception as e:
        found = re.search(r"\(os error (\d+)\)", str(e))
        if found is None:
            raise
        code = int(found[1])
        raise OSError(code, os.strerror(code)) from e


def _read_file(path: Path, *, tensors: bool) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """A safetensors file's metadata and, with `tensors`, its tensors; FileNotFoundError or CheckpointError."""
    from safetensors import safe_open

    # a regular file only: a folder is refused as one (not "does not exist"), and a FIFO is never opened (it blocks)
    check_regular_file(path, "checkpoint", "pass the path of a .safetensors file written by save_checkpoint",
                       error=CheckpointError)
    try:
        with safe_open(str(path), framework="np") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error types for bad headers and sizes
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors checkpoint "
                              f"(truncated, corrupt, or another format): {e}") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint. Raises FileNotFoundError or CheckpointError, never unpickles."""
    path = _checkpoint_path(path, "read_checkpoint")
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
    path = _checkpoint_path(path, "read_spec")
    raw_meta, _ = _read_file(path, tensors=False)
    try:
        return VAESpec.from_dict(_parse_metadata(path, raw_meta)["spec"])
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{str(path)!r}: its spec is invalid: {e}") from None


def _checkpoint_path(path: Any, owner: str) -> Path:
    """`path` as a Path, or a TypeError naming `owner`'s argument: bytes or None are no checkpoint path."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(f"{owner}: path must be the checkpoint's path as str or os.PathLike; got "
                        f"{type(path).__name__} {path!r:.60}. Pass e.g. 'runs/r/best.safetensors'"
                        + (" (decode bytes with .decode())" if isinstance(path, bytes) else ""))
    return Path(path)


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
    check_metadata(meta, f"{str(path)!r}: its", "the file was edited or not written by save_checkpoint; use another "
                                                 "copy or an earlier checkpoint")
    return meta


# The ranges of the metadata a resume acts on, checked when a checkpoint is read even when its checksum is right (a
# file edited and checksummed again, another writer), and before one is written (a file that could not be read back).
MAX_EPOCH = 10**9  # epochs completed: a billion passes over the data is past any run; more is a damaged count
MAX_ADAM_STEP = 2**53  # Adam's step count: every count up to it is exact in a float64, where optimizers keep it
COUNTED_EVERY_EPOCH = ("train_loss",)  # history lists every epoch appends to (the validation ones only with val)
_STATE_COUNTERS = ("plateau_bad_epochs", "early_stopping_bad_epochs")


def check_metadata(meta: dict[str, Any], where: str, fix: str) -> None:
    """CheckpointError unless `meta`'s epoch, adam_step, history and trainer_state are in range and agree:
    - `epoch` an int in [0, MAX_EPOCH]; `adam_step` None or an int in [0, MAX_ADAM_STEP];
    - `history` a mapping of lists of finite numbers, `train_loss` empty or holding at least `epoch` values (resume
      keeps the first `epoch`; one value per epoch done);
    - `trainer_state` a mapping; where present, `lr` a finite number > 0, `best_loss` None or finite, `best_epoch`
      None or an int in [1, epoch], the bad-epoch counters ints in [0, epoch], `stopped_early` a bool.
    `where` starts the message ("'<path>': its"), `fix` ends it."""
    def refuse(name: str, value: Any, expected: str) -> None:
        raise CheckpointError(f"{where} {name} is {value!r:.80}; expected {expected}: {fix}")

    epoch = meta.get("epoch", 0)
    if not _is_int(epoch) or not 0 <= epoch <= MAX_EPOCH:
        refuse("epoch (epochs completed)", epoch, f"an int in [0, {MAX_EPOCH}]")
    step = meta.get("adam_step")
    if step is not None and (not _is_int(step) or not 0 <= step <= MAX_ADAM_STEP):
        refuse("adam_step", step, "None or an int in [0, 2**53]")
    history = meta.get("history")
    if history is not None and not isinstance(history, dict):
        refuse("history", history, "a mapping of per-epoch lists")
    for key, values in (history or {}).items():
        if not isinstance(values, (list, tuple)) or not all(_is_finite(v) for v in values):
            refuse(f"history[{key!r}]", values, "a list of finite numbers, one per epoch")
        if key in COUNTED_EVERY_EPOCH and 0 < len(values) < epoch:
            refuse(f"history[{key!r}]", f"{len(values)} values", f"one per epoch done, {epoch} (or none)")
    state = meta.get("trainer_state")
    if state is not None and not isinstance(state, dict):
        refuse("trainer_state", state, "a mapping")
    state = state or {}
    if "lr" in state and not (_is_finite(state["lr"]) and state["lr"] > 0):
        refuse("trainer_state learning rate (lr)", state["lr"], "a finite number > 0")
    if state.get("best_loss") is not None and not _is_finite(state["best_loss"]):
        refuse("trainer_state best_loss", state["best_loss"], "None or a finite number")
    if state.get("best_epoch") is not None and not (_is_int(state["best_epoch"]) and 1 <= state["best_epoch"] <= epoch):
        refuse("trainer_state best_epoch", state["best_epoch"], f"None or an int in [1, {epoch}] (the epochs done)")
    for name in _STATE_COUNTERS:
        if name in state and not (_is_int(state[name]) and 0 <= state[name] <= epoch):
            refuse(f"trainer_state {name}", state[name], f"an int in [0, {epoch}] (the epochs done)")
    if "stopped_early" in state and not isinstance(state["stopped_early"], bool):
        refuse("trainer_state stopped_early", state["stopped_early"], "true or false")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's header metadata (the "vae_core" JSON: epoch, history, trainer_state, ...), read without its
    tensors and checked as `read_checkpoint` checks it (its own checksum, the ranges of `check_metadata`)."""
    path = _checkpoint_path(path, "read_metadata")
    raw_meta, _ = _read_file(path, tensors=False)
    return _parse_metadata(path, raw_meta)
