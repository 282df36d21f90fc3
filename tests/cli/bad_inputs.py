"""The catalogue of bad inputs: each case, the error a user gets, and a fix named in the message.

Used by tests/cli/test_bad_inputs.py (which asserts every case) and scripts/make_bad_inputs_table.py (which writes
docs/bad_inputs.md from the same cases, with the messages they actually produce).

`prepare(tmp)` writes whatever files the case needs into the empty folder `tmp` and returns, for a Python case,
a function that must raise `error`, and for a CLI case the argv for `vae_core.cli.main`, which must exit with
status 2 and print one line. `match` is a regex the message must contain: what was wrong and how to fix it.
The failing call must leave `tmp` exactly as `prepare` left it: nothing written, nothing lost.
"""
from __future__ import annotations

import json
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vae_core import CheckpointError, MemoryLimitError, TrainConfig, VAESpec
from vae_core.registry import BACKENDS

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)  # the 8x8 digits
X = np.random.default_rng(0).random((20, 64), dtype=np.float32)


@dataclass(frozen=True)
class Case:
    id: str  # short name, the test id
    where: str  # "python" or "cli"
    given: str  # the bad input, in words
    prepare: Callable[[Path], Any]  # python: returns a function that raises; cli: returns argv
    error: type[BaseException]  # the exception (python) or the error behind the one line (cli)
    match: str  # regex the message must contain


def _fit(x: Any, **kwargs: Any) -> None:
    from vae_core import build, fit

    fit(build("torch", SPEC, seed=0), x, None, TrainConfig(epochs=1), progress=False, **kwargs)


def _with(value: float) -> np.ndarray:
    x = X.copy()
    x[3, 5] = value
    return x


def _good_checkpoint(tmp: Path, name: str = "good.safetensors", spec: VAESpec = SPEC) -> Path:
    from vae_core import build, save_checkpoint

    return save_checkpoint(tmp / name, build("torch", spec, seed=0), epoch=1)


def _truncated(tmp: Path) -> Path:
    path = _good_checkpoint(tmp)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _float64_checkpoint(tmp: Path) -> Path:
    from safetensors.numpy import save_file

    from vae_core import init_weights
    from vae_core.io.checkpoint import METADATA_KEY

    weights = {k: v.astype(np.float64) for k, v in init_weights(SPEC, 0).items()}
    path = tmp / "f64.safetensors"
    save_file(weights, str(path), metadata={METADATA_KEY: json.dumps(
        {"schema_version": 1, "spec": SPEC.to_dict(), "epoch": 0})})  # schema 1: no checksums to write
    return path


class Unpickled:
    """Unpickling this writes a marker file, which the test then looks for."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle(tmp: Path) -> Path:
    path = tmp / "model.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Unpickled(str(tmp.parent / f"{tmp.name}-UNPICKLED"))}))
    return path


def _huge_header(tmp: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}).encode()
    path = tmp / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    return path


def _corrupt_idx_dir(tmp: Path) -> Path:
    folder = tmp / "idx"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)  # a header cut short
    return folder


def _a_file(tmp: Path) -> Path:
    path = tmp / "not-a-folder"
    path.write_text("x")
    return path


def _resume_other_spec(tmp: Path) -> Callable[[], None]:
    path = _good_checkpoint(tmp, spec=SPEC.replace(latent_dim=3))
    return lambda: _fit(X, resume_from=path)


def _load(path_of: Callable[[Path], Path]) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core import load_checkpoint

        path = path_of(tmp)
        return lambda: load_checkpoint(path, "torch")
    return prepare


def _dataset(**kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core.data import load_dataset

        args = {k: (v(tmp) if callable(v) else v) for k, v in kwargs.items()}
        return lambda: load_dataset(**args)
    return prepare


class _Items:
    """A map-style dataset of (example, label) items over the rows of X; `bad` gives item i's example instead (an
    exception: raised), `shrinks_at` drops the last item once that item has been read, and `n` overrides len."""

    def __init__(self, bad: dict[int, Any] | None = None, shrinks_at: int | None = None, n: int | None = None):
        self.bad, self.shrinks_at, self.n = bad or {}, shrinks_at, len(X) if n is None else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if i == self.shrinks_at:
            self.n -= 1
        example = self.bad.get(i, X[i % len(X)])
        if isinstance(example, BaseException):
            raise example
        return example, 0


def _fit_items(train: Any, val: Any = None, config: TrainConfig = TrainConfig(epochs=1, batch_size=8),
               **kwargs: Any) -> None:
    from vae_core import build, fit

    fit(build("torch", SPEC, seed=0), train, val, config, progress=False, **kwargs)


def _step_checkpoint(tmp: Path) -> Path:
    """A checkpoint of a run of X stopped after step 1 of epoch 2 (batch 8: 3 steps an epoch)."""
    from dataclasses import replace

    from vae_core import build, fit
    from vae_core.io.checkpoint import read_checkpoint, write_checkpoint

    fit(build("torch", SPEC, seed=0), X, None, TrainConfig(epochs=1, batch_size=8), out_dir=tmp / "run",
        progress=False)
    ckpt = read_checkpoint(tmp / "run" / "last.safetensors")
    position = {"epoch": 2, "step": 1, "n_examples": len(X), "batch_size": 8, "losses": [[40.0, 39.0, 1.0]],
                "seconds": 0.1}
    return write_checkpoint(tmp / "step.safetensors",
                            replace(ckpt, trainer_state={**ckpt.trainer_state, "position": position}))


def _loader() -> Any:
    import torch

    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X)), batch_size=4)


def _callback() -> Any:
    from vae_core.callbacks import Callback

    class _Quiet(Callback):
        pass

    return _Quiet()


def _keras_callback() -> Any:
    import keras

    return keras.callbacks.EarlyStopping()


def _iterable_dataset() -> Any:
    import torch

    class _Rows(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(X)

    return _Rows()


class _Batches:
    """A re-iterable of batches of 4 rows of X (pass p, 1-based: the count before training is pass 1); `bad`
    gives batch b of pass p instead ({(p, b): value}, an exception: raised), `sizes` the examples of each pass
    (X's rows, repeated or cut)."""

    def __init__(self, bad: dict[tuple[int, int], Any] | None = None, sizes: tuple[int, ...] = ()):
        self.bad, self.sizes, self.passes = bad or {}, sizes, 0

    def __iter__(self):
        self.passes += 1
        n = self.sizes[self.passes - 1] if self.passes <= len(self.sizes) else len(X)
        rows = np.resize(X, (n, X.shape[1]))
        for b, lo in enumerate(range(0, n, 4)):
            batch = self.bad.get((self.passes, b), rows[lo:lo + 4])
            if isinstance(batch, BaseException):
                raise batch
            yield batch, np.zeros(len(rows[lo:lo + 4]))


PY, CLI = "python", "cli"
TRAIN = ["train", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--no-plots",
         "--no-progress"]

CASES: list[Case] = [
    # ------------------------------------------------------------ data given to fit / evaluate
    Case("nan-pixels", PY, "a NaN pixel", lambda t: lambda: _fit(_with(np.nan)), ValueError, r"NaN or inf .* 1 example"),
    Case("inf-pixels", PY, "an inf pixel", lambda t: lambda: _fit(_with(np.inf)), ValueError, r"NaN or inf"),
    Case("outside-0-1", PY, "pixel 1.5 with a Bernoulli decoder", lambda t: lambda: _fit(_with(1.5)), ValueError,
         r"must lie in \[0, 1\] for a Bernoulli decoder"),
    Case("wrong-dim", PY, "x of shape (20, 100) for input_dim 64", lambda t: lambda: _fit(X[:, :50].repeat(2, 1)),
         ValueError, r"shape \(N, 64\) or \(N, 8, 8, 1\) or \(N, 8, 8\) .* got \(20, 100\)\. Build the model with a VAESpec"),
    Case("1-d", PY, "a 1-D array of 64 pixels", lambda t: lambda: _fit(X[0]), ValueError, r"shape \(N, 64\) .* x\.reshape\(1, -1\)"),
    Case("empty", PY, "an empty (0, 64) array", lambda t: lambda: _fit(X[:0]), ValueError, r"empty .* at least one"),
    Case("int-dtype", PY, "int32 pixels", lambda t: lambda: _fit(X.astype(np.int32)), TypeError,
         r"float32, float64 or uint8 .* got dtype int32"),
    Case("list", PY, "a Python list instead of an array", lambda t: lambda: _fit(X.tolist()), TypeError,
         r"NumPy array .* np.asarray"),
    # ------------------------------------------------------------ spec and config fields
    *[Case(f"spec-{field}", PY, f"VAESpec({field}={value!r})", (lambda f, v: lambda t: lambda: VAESpec(**{f: v}))(field, value),
           ValueError, rf"VAESpec\.{field} must be")
      for field, value in [("input_dim", 0), ("hidden_dims", (400, 0)), ("hidden_dims", "400"), ("latent_dim", 0),
                           ("likelihood", "poisson"), ("beta", -1.0), ("image_shape", (28, 28, 0)),
                           ("architecture", "resnet"), ("conv_channels", (32, -1)), ("kernel_size", 1)]],
    Case("conv-image-too-small", PY, "VAESpec(architecture='conv', image_shape=(3, 3))",
         lambda t: lambda: VAESpec(architecture="conv", image_shape=(3, 3)), ValueError,
         r"VAESpec\.image_shape must be at least 4 x 4 pixels for 2 stride-2 convolutions"),
    *[Case(f"config-{field}", PY, f"TrainConfig({field}={value!r})",
           (lambda f, v: lambda t: lambda: TrainConfig(**{f: v}))(field, value), ValueError, rf"TrainConfig\.{field} must be")
      for field, value in [("batch_size", 0), ("epochs", 0), ("learning_rate", 0.0), ("adam_beta1", 1.0),
                           ("adam_beta2", -0.1), ("adam_eps", 0.0), ("seed", -1), ("grad_clip_norm", 0.0),
                           ("reduce_lr_on_plateau", "yes"), ("lr_plateau_factor", 1.0), ("lr_plateau_patience", -1),
                           ("early_stopping", 1), ("early_stopping_patience", 0), ("dynamic_binarization", "no"),
                           ("checkpoint_every_steps", 0)]],
    Case("unknown-backend", PY, 'build("mxnet")', lambda t: lambda: __import__("vae_core").build("mxnet"), ValueError,
         rf"backend must be one of {re.escape(str(sorted(BACKENDS)))}; got 'mxnet'"),
    # ------------------------------------------------------------ checkpoints
    Case("other-spec", PY, "resume from a checkpoint of another spec", _resume_other_spec, CheckpointError,
         r"spec .* build the model from the checkpoint's spec"),
    Case("truncated-ckpt", PY, "a checkpoint cut short by 100 bytes", _load(_truncated), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("float64-ckpt", PY, "weights stored as float64", _load(_float64_checkpoint), CheckpointError,
         r"expected shape \(64, 16\) float32, found shape \(64, 16\) float64"),
    Case("not-safetensors", PY, "a text file named .safetensors",
         _load(lambda t: (t / "notes.safetensors", (t / "notes.safetensors").write_text("hello"))[0]),
         CheckpointError, r"not a readable safetensors checkpoint"),
    Case("pickle", PY, "a pickle renamed to .safetensors (never unpickled)", _load(_pickle), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("huge-header", PY, "a safetensors header claiming 4 TiB", _load(_huge_header), CheckpointError,
         r"not a readable safetensors checkpoint"),
    Case("missing-ckpt", PY, "a checkpoint path that does not exist", _load(lambda t: t / "nope.safetensors"),
         FileNotFoundError, r"does not exist; pass the path"),
    Case("out-dir-is-file", PY, "fit(out_dir=) inside a regular file",
         lambda t: (lambda path: lambda: _fit(X, out_dir=path))(_a_file(t) / "run"), NotADirectoryError,
         r"out_dir .* is inside a file, not a folder"),
    Case("fp64-out-dir", PY, "fit(precision=\"fp64\", out_dir=...)",
         lambda t: lambda: _fit(X, precision="fp64", out_dir=t / "run"), ValueError,
         r"precision='fp64' takes no out_dir or resume_from .* fp32 for runs you keep"),
    # ------------------------------------------------------------ datasets
    Case("unknown-dataset", PY, 'load_dataset("cifar")', _dataset(name="cifar"), ValueError,
         r"load_dataset\.name must be one of"),
    Case("missing-offline", PY, "MNIST not on disk, no download", _dataset(name="mnist", data_dir=lambda t: t),
         FileNotFoundError, r"IDX files not found .* data_dir"),
    Case("corrupt-idx", PY, "IDX files with a truncated header", _dataset(name="mnist", data_dir=_corrupt_idx_dir),
         ValueError, r"expected a 16-byte header"),
    # ------------------------------------------------------------ the vae command
    Case("cli-backend", CLI, "vae train --backend mxnet",
         lambda t: [*TRAIN, "--backend", "mxnet", "--out", str(t / "o")],
         SystemExit, r"argument --backend: invalid choice: 'mxnet'"),
    Case("cli-likelihood", CLI, "vae train --likelihood poisson",
         lambda t: [*TRAIN, "--likelihood", "poisson", "--out", str(t / "o")], SystemExit,
         r"argument --likelihood: invalid choice"),
    Case("cli-spec-field", CLI, "vae train --latent-dim 0", lambda t: [*TRAIN, "--latent-dim", "0", "--out",
                                                                        str(t / "o")],
         ValueError, r"VAESpec\.latent_dim must be an int >= 1; got 0"),
    Case("cli-config-field", CLI, "vae train --learning-rate -1",
         lambda t: [*TRAIN, "--learning-rate", "-1", "--out", str(t / "o")], ValueError,
         r"TrainConfig\.learning_rate must be a number in \(0\.0, inf\); got -1\.0"),
    Case("cli-not-an-int", CLI, "vae train --epochs many", lambda t: [*TRAIN, "--epochs", "many"], SystemExit,
         r"argument --epochs: invalid int value: 'many'"),
    Case("cli-config-key", CLI, "a --config file with a misspelt key",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--config",
                    str((t / "c.toml", (t / "c.toml").write_text("[train]\nepoch = 3\n"))[0])],
         ValueError, r"unknown key\(s\) \['epoch'\] in \[train\]"),
    Case("cli-out-is-file", CLI, "vae train --out FILE", lambda t: [*TRAIN, "--out", str(_a_file(t))],
         NotADirectoryError, r"--out .* is a file; pass a folder"),
    Case("cli-pickle", CLI, "vae evaluate on a pickle renamed to .safetensors",
         lambda t: ["evaluate", str(_pickle(t))], CheckpointError, r"not a readable safetensors checkpoint"),
    Case("cli-truncated", CLI, "vae evaluate on a truncated checkpoint", lambda t: ["evaluate", str(_truncated(t))],
         CheckpointError, r"not a readable safetensors checkpoint"),
    Case("cli-resume-spec", CLI, "vae train --resume with another --latent-dim",
         lambda t: ["train", "--out", str(_good_checkpoint(t, "last.safetensors").parent), "--resume",
                    "--latent-dim", "3", "--dataset", "digits", "--no-plots"],
         ValueError, r"the spec cannot change on resume, but {'latent_dim': 3} was asked for\. Drop those flags"),
    Case("cli-missing-data", CLI, "vae train --dataset mnist offline",
         lambda t: [*TRAIN, "--dataset", "mnist", "--data-dir", str(t), "--out", str(t / "o")], FileNotFoundError,
         r"IDX files not found"),
    Case("cli-corrupt-idx", CLI, "vae train --data-dir with corrupt IDX files",
         lambda t: [*TRAIN, "--dataset", "mnist", "--data-dir", str(_corrupt_idx_dir(t)), "--out", str(t / "o")],
         ValueError, r"expected a 16-byte header"),
    Case("cli-sample-n", CLI, "vae sample -n 0", lambda t: ["sample", str(_good_checkpoint(t)), "-n", "0",
                                                             "-o", str(t / "s.png")],
         ValueError, r"-n must be an int >= 1; got 0"),
    # ------------------------------------------------------------ data-parallel
    Case("world-size-without-launcher", PY, "fit with WORLD_SIZE=2 set but no torchrun",
         lambda t: lambda: _with_env({"WORLD_SIZE": "2"}, lambda: _fit(X)), ValueError,
         r"WORLD_SIZE=2 is set.*RANK, MASTER_ADDR, MASTER_PORT are not set; launch the script with torchrun"),
    Case("cli-nproc", CLI, "vae train --nproc 0", lambda t: [*TRAIN, "--nproc", "0", "--out", str(t / "run")],
         ValueError, r"--nproc must be an int >= 1; got 0"),
    Case("cli-nproc-batch", CLI, "vae train --nproc 2 --batch-size 33",
         lambda t: [*TRAIN, "--nproc", "2", "--batch-size", "33", "--out", str(t / "run")], ValueError,
         r"--batch-size 33 must divide by --nproc 2: it is the global batch"),
    Case("cli-nproc-tf-device", CLI, "vae train --backend tf --nproc 2 --device cpu",
         lambda t: [*TRAIN, "--backend", "tf", "--nproc", "2", "--device", "cpu", "--out", str(t / "run")],
         ValueError, r"--nproc 2 with --backend tf trains on the strategy's devices; drop --device cpu"),
    # ------------------------------------------------------------ map-style datasets given to fit (issue 28)
    Case("dataset-item-shape", PY, "a dataset whose item 7 is (8, 9)",
         lambda t: lambda: _fit_items(_Items({7: np.zeros((8, 9), np.float32)})), ValueError,
         r"train\[7\] has shape \(8, 9\); expected an example of shape \(64,\) or \(8, 8, 1\) or \(8, 8\) or "
         r"\(1, 8, 8\) to match the spec .*Build the model with a VAESpec"),
    Case("dataset-item-dtype", PY, "a dataset whose item 3 is int64",
         lambda t: lambda: _fit_items(_Items({3: np.zeros(64, np.int64)})), TypeError,
         r"train\[3\] has dtype int64 .*expected float32, float64 or uint8"),
    Case("dataset-item-nan", PY, "a dataset whose item 5 holds a NaN",
         lambda t: lambda: _fit_items(_Items({5: _with(np.nan)[3]})), ValueError,
         r"train\[5\] holds NaN or inf values \(1 of 64\); clean or drop that example"),
    Case("dataset-item-range", PY, "a dataset whose item 2 holds 1.5 (Bernoulli decoder)",
         lambda t: lambda: _fit_items(_Items({2: _with(1.5)[3]})), ValueError,
         r"train\[2\] must lie in \[0, 1\] for a Bernoulli decoder; got values in .*1\.5"),
    Case("dataset-item-raises", PY, "a dataset whose item 9 raises OSError",
         lambda t: lambda: _fit_items(_Items({9: OSError("image 9 is unreadable")})), ValueError,
         r"train\[9\] raised OSError: image 9 is unreadable\. Every index in \[0, 20\) .*must give an example"),
    Case("dataset-mixed-dtypes", PY, "a dataset of uint8 item 0 and float32 items",
         lambda t: lambda: _fit_items(_Items({0: np.zeros(64, np.uint8)})), TypeError,
         r"train\[\d+\] has dtype float32, but the first item of train was uint8: every example must be uint8 "
         r"images, or every example floats"),
    Case("dataset-empty", PY, "a dataset of length 0", lambda t: lambda: _fit_items(_Items(n=0)), ValueError,
         r"train is empty \(len\(train\) is 0\); pass at least one example"),
    Case("dataset-length-changes", PY, "a dataset that loses an item while fit reads it",
         lambda t: lambda: _fit_items(_Items(shrinks_at=4)), ValueError,
         r"train changed length while fit read it: len\(train\) was 20 when fit started, and is now 19"),
    Case("val-dataset-item-shape", PY, "a validation dataset whose item 4 is (63,)",
         lambda t: lambda: _fit_items(X, _Items({4: X[4, :63]})), ValueError,
         r"val\[4\] has shape \(63,\); expected an example of shape \(64,\) or "),
    Case("iterable-dataset", PY, "a torch IterableDataset (examples, not batches)",
         lambda t: lambda: _fit_items(_iterable_dataset()), TypeError,
         r"got _Rows, an IterableDataset, which yields examples one at a time: wrap it in "
         r"torch\.utils\.data\.DataLoader\(train, batch_size=\.\.\.\)"),
    Case("generator", PY, "a generator of batches (read once)", lambda t: lambda: _fit_items(b for b in [X]),
         TypeError, r"got generator, an iterator \(a generator\?\), which can be read once: fit reads one pass per "
                    r"epoch\. Pass an object whose __iter__ starts a new pass"),
    # ------------------------------------------------------------ iterables of batches given to fit (issue 28)
    Case("stream-batch-shape", PY, "a stream whose first batch is one example (64,), not a batch",
         lambda t: lambda: _fit_items(_Batches({(1, 0): X[0]})), ValueError,
         r"train \(batch 0 of pass 1, 0-based\) has shape \(64,\); expected a batch of shape \(b, 64\) or "
         r"\(b, 8, 8, 1\) .* to match the spec .*It looks like one example: batch the source"),
    Case("stream-batch-nan", PY, "a stream whose batch 3 holds a NaN in the first epoch",
         lambda t: lambda: _fit_items(_Batches({(2, 3): _with(np.nan)[:4]})), ValueError,
         r"train \(batch 3 of pass 2, 0-based\) holds NaN or inf values \(1 of 256\); clean or drop that example"),
    Case("stream-batch-raises", PY, "a stream whose batch 1 raises OSError in the first epoch",
         lambda t: lambda: _fit_items(_Batches({(2, 1): OSError("disk on fire")})), ValueError,
         r"train \(batch 1 of pass 2, 0-based\) raised OSError: disk on fire; fix the data source"),
    Case("stream-shorter", PY, "a stream that yields 16 examples in the epoch after counting 20",
         lambda t: lambda: _fit_items(_Batches(sizes=(20, 16))), ValueError,
         r"train ended pass 2 after 16 examples, but it held 20 when fit started: a stream must yield the same "
         r"number of examples every epoch"),
    Case("stream-longer", PY, "a stream that yields 24 examples in the epoch after counting 20",
         lambda t: lambda: _fit_items(_Batches(sizes=(20, 24))), ValueError,
         r"train yielded more than 20 examples in pass 2, the number it held when fit started"),
    Case("stream-empty", PY, "a stream that yields no batches", lambda t: lambda: _fit_items(_Batches(sizes=(0,))),
         ValueError, r"train is empty: it yielded no examples; pass at least one"),
    Case("stream-step-checkpoints", PY, "a stream with TrainConfig.checkpoint_every_steps",
         lambda t: lambda: _fit_items(_Batches(), config=TrainConfig(epochs=1, checkpoint_every_steps=2)),
         ValueError, r"TrainConfig\.checkpoint_every_steps=2 needs a training set the trainer can read in its own "
                     r"order, to resume mid-epoch; train is a _Batches, a stream of batches .*Set "
                     r"checkpoint_every_steps=None"),
    Case("stream-dynamic-binarization", PY, "a stream with TrainConfig.dynamic_binarization",
         lambda t: lambda: _fit_items(_Batches(), config=TrainConfig(epochs=1, dynamic_binarization=True)),
         ValueError, r"TrainConfig\.dynamic_binarization draws each epoch's 0/1 sample .* Set "
                     r"dynamic_binarization=False and binarize in the stream"),
    Case("stream-resume-mid-epoch", PY, "a stream resuming a step checkpoint (stopped mid-epoch)",
         lambda t: (lambda path: lambda: _fit_items(_Batches(), config=TrainConfig(epochs=2, batch_size=8),
                                                    resume_from=path))(_step_checkpoint(t)), CheckpointError,
         r"stopped at step 1 of epoch 2 \(a step checkpoint\), but train is a stream of batches, which cannot be "
         r"read from the middle of an epoch; resume it with the training set as an array or a map-style dataset"),
    # ------------------------------------------------------------ callbacks given to fit (issue 29)
    Case("callbacks-not-a-list", PY, "fit(callbacks=one_callback) instead of a list",
         lambda t: lambda: _fit(X, callbacks=_callback()), TypeError,
         r"fit: callbacks must be a list of vae_core\.callbacks\.Callback instances \(or None\); got _Quiet\. Wrap "
         r"one callback in a list: callbacks=\[cb\]"),
    Case("callbacks-class", PY, "a Callback class instead of an instance",
         lambda t: lambda: _fit(X, callbacks=[type(_callback())]), TypeError,
         r"fit: callbacks\[0\] must be a vae_core\.callbacks\.Callback instance .*; got a class, not an instance: "
         r"call it"),
    Case("callbacks-keras", PY, "a Keras callback given to vae_core.fit",
         lambda t: lambda: _fit(X, callbacks=[_keras_callback()]), TypeError,
         r"fit: callbacks\[0\] must be a vae_core\.callbacks\.Callback instance \(Keras' own callbacks go to "
         r"Keras' model\.fit\); got EarlyStopping"),
    Case("dict", PY, "a dict {'x': array}", lambda t: lambda: _fit_items({"x": X}), TypeError,
         r"got a dict with keys \['x'\]: pass the array of examples it holds"),
    Case("path-string", PY, "a file name instead of its data", lambda t: lambda: _fit_items("images.npy"),
         TypeError, r"got str 'images\.npy', a path\? Load .* with vae_core\.data\.load_images\(path\)"),
    Case("data-workers", PY, "fit(data_workers=-1)", lambda t: lambda: _fit_items(X, data_workers=-1), ValueError,
         r"fit\.data_workers must be an int >= 0; got -1"),
]


def _with_env(changes: dict[str, str], call: Callable[[], Any]) -> Any:
    """`call()` with the environment variables `changes` set, restored afterwards."""
    import os

    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        return call()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# torchvision datasets (vae_core.data.vision): `--dataset torchvision:...` read from a --data-dir root, offline
def _tv_root(kind: str, **kwargs: Any) -> Callable[[Path], Path]:
    """prepare(tmp) -> tmp/"root" holding a tiny root of `kind` (tests/torchvision_roots.py): "idx", "cifar10" or
    "folder"; `kwargs` go to its writer."""
    def prepare(tmp: Path) -> Path:
        from tests import torchvision_roots as roots

        write = {"idx": roots.idx_root, "cifar10": roots.cifar10_root, "folder": roots.image_folder}[kind]
        return write(tmp / "root", **kwargs)
    return prepare


def _tv_load(name: str, root: Callable[[Path], Path] | None = None, **kwargs: Any) -> Callable[[Path], Any]:
    """A python case: load_dataset(name, data_dir=root(tmp) or tmp, **kwargs)."""
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core.data import load_dataset

        data_dir = root(tmp) if root is not None else tmp
        return lambda: load_dataset(name, data_dir=data_dir, **kwargs)
    return prepare


def _tv_train(name: str, root: Callable[[Path], Path] | None, *extra: str) -> Callable[[Path], list[str]]:
    """A CLI case: vae train --dataset name --data-dir root(tmp) (none without `root`) ... --out tmp/o."""
    def prepare(tmp: Path) -> list[str]:
        data_dir = [] if root is None else ["--data-dir", str(root(tmp))]
        return [*TV_TRAIN, "--dataset", name, *data_dir, *extra, "--out", str(tmp / "o")]
    return prepare


def _tv_edit(root: Callable[[Path], Path], edit: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """`root`, then `edit(the root)`: a damaged copy."""
    return lambda tmp: (lambda r: (edit(r), r)[1])(root(tmp))


def _gzip_raw(root: Path) -> None:
    import gzip

    for f in (root / "FashionMNIST" / "raw").iterdir():
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()


def _second_size(root: Path) -> None:
    from tests import torchvision_roots as roots

    roots.image_folder(root, classes=("owl",), per_class=1, shape=(10, 8), seed=3)  # owl/000.png: 10x8


def _test_folder_with_extra_class(root: Path) -> None:
    from tests import torchvision_roots as roots

    roots.image_folder(root / "train", per_class=3)
    roots.image_folder(root / "test", classes=("cat", "yak"), per_class=1)


def _plot_with_names(tmp: Path) -> Callable[[], None]:
    from vae_core.viz import plot_latent_scatter

    return lambda: plot_latent_scatter(X[:4, :2], [0, 1, 2, 3], tmp / "s.png", class_names=("cat", "dog"))


TV_TRAIN = ["train", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1", "--no-plots", "--no-progress"]
_IDX = _tv_root("idx", folder="FashionMNIST")
_FOLDER = _tv_root("folder", per_class=3)

CASES += [
    Case("tv-no-data-dir", CLI, "vae train --dataset torchvision:mnist without --data-dir",
         _tv_train("torchvision:mnist", None), ValueError,
         r"load_dataset\.data_dir must be the torchvision root, the folder that holds MNIST/raw/ for "
         r"'torchvision:mnist' .*; got None\. Pass data_dir=ROOT \(vae train --dataset torchvision:mnist --data-dir "
         r"ROOT\)"),
    Case("tv-data-dir-missing", CLI, "vae train --dataset torchvision:cifar10 --data-dir NOWHERE",
         lambda t: _tv_train("torchvision:cifar10", lambda t: t / "nowhere")(t), FileNotFoundError,
         r"torchvision:cifar10: data_dir \(--data-dir\) '.*nowhere' does not exist; pass the torchvision root, the "
         r"folder that holds cifar-10-batches-py/"),
    Case("tv-files-missing", CLI, "vae train --dataset torchvision:fashion-mnist --data-dir EMPTY",
         _tv_train("torchvision:fashion-mnist", lambda t: t), FileNotFoundError,
         r"torchvision:fashion-mnist: 4 of its files not found in '.*/FashionMNIST/raw' \(missing: "
         r"train-images-idx3-ubyte, .*\); data_dir \(--data-dir\) must be the torchvision root that holds "
         r"FashionMNIST/raw/\. To get them: gunzip the four \.gz files there .*or pass download=True \(--download\)"),
    Case("tv-data-dir-below-root", PY, "load_dataset('torchvision:fashion-mnist', data_dir=ROOT/FashionMNIST/raw)",
         _tv_load("torchvision:fashion-mnist", lambda t: _IDX(t) / "FashionMNIST" / "raw"), FileNotFoundError,
         r"They are under '.*/root/FashionMNIST/raw', a folder below the root: pass data_dir \(--data-dir\) "
         r"'.*/root'"),
    Case("tv-gzipped", PY, "torchvision:fashion-mnist with the raw files still gzipped",
         _tv_load("torchvision:fashion-mnist", _tv_edit(_IDX, _gzip_raw)), FileNotFoundError,
         r"'.*/FashionMNIST/raw' holds them gzipped: gunzip them there \(torchvision reads them uncompressed\)"),
    Case("tv-corrupt-idx", PY, "torchvision:fashion-mnist with a training image file cut short",
         _tv_load("torchvision:fashion-mnist", _tv_edit(_IDX, lambda r: (
             r / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00"))),
         ValueError, r"torchvision:fashion-mnist: torchvision could not read '.*/FashionMNIST/raw' \(.*\); the files "
                     r"are damaged or not FashionMNIST's: replace them"),
    Case("tv-cifar-damaged", CLI, "vae train --dataset torchvision:cifar10 on files whose MD5s do not match",
         _tv_train("torchvision:cifar10", _tv_root("cifar10")), ValueError,
         r"torchvision:cifar10: torchvision could not read '.*/cifar-10-batches-py' \(their MD5 checksums are not "
         r"those of the published files\); the files are damaged or not CIFAR10's: replace them \(extract "
         r"cifar-10-python\.tar\.gz"),
    Case("tv-image-size-not-a-folder", CLI, "vae train --dataset torchvision:mnist --image-size 8,8",
         _tv_train("torchvision:mnist", _IDX, "--image-size", "8,8"), ValueError,
         r"--image-size and --image-mode apply to --data \(your own image files\) and --dataset "
         r"torchvision:image-folder; drop them for --dataset 'torchvision:mnist'"),
    Case("tv-binarize", CLI, "vae train --dataset torchvision:fashion-mnist --binarize static",
         _tv_train("torchvision:fashion-mnist", _IDX, "--binarize", "static"), ValueError,
         r"load_dataset\.binarize must be None for 'torchvision:fashion-mnist', whose training split is read item by "
         r"item; got 'static'\. Binarize per epoch instead, TrainConfig\(dynamic_binarization=True\)"),
    Case("tv-folder-no-classes", CLI, "vae train --dataset torchvision:image-folder on an empty folder",
         _tv_train("torchvision:image-folder", lambda t: t), FileNotFoundError,
         r"torchvision:image-folder: data_dir \(--data-dir\) '.*' holds no class folders; put each class's images in "
         r"a folder of its own .*or read a flat folder of images with load_images \(vae train --data FOLDER\)"),
    Case("tv-folder-empty-class", CLI, "vae train --dataset torchvision:image-folder with a class folder of no images",
         _tv_train("torchvision:image-folder", _tv_edit(_FOLDER, lambda r: (r / "yak").mkdir())),
         FileNotFoundError, r"class folder\(s\) \['yak'\] of '.*' hold no image files \(\.jpg, .*\.png.*\); add images "
                            r"or remove the folder\(s\)"),
    Case("tv-folder-sizes", CLI, "vae train --dataset torchvision:image-folder on images of two sizes",
         _tv_train("torchvision:image-folder", _tv_edit(_FOLDER, _second_size)), ValueError,
         r"'.*owl/000\.png' is 10x8 \(HxW\), but '.*cat/000\.png' \(the first file\) is 8x8; every image must have one "
         r"size\. Pass image_size=\(H, W\) \(--image-size H,W\) to resize every file"),
    Case("tv-folder-modes", PY, "an image folder of grey and RGB images",
         _tv_load("torchvision:image-folder", _tv_edit(_FOLDER, lambda r: _tv_root("folder", classes=("owl",),
                                                                                  per_class=1, shape=(8, 8, 3))(
             r.parent))), ValueError,
         r"'.*owl/000\.png' has mode RGB, but '.*cat/000\.png' \(the first file\) has L; every image must have one "
         r"mode\. Pass mode='L' or 'RGB' \(--image-mode\)"),
    Case("tv-folder-unreadable", PY, "an image folder holding a .png that is not an image",
         _tv_load("torchvision:image-folder", _tv_edit(_FOLDER, lambda r: (r / "dog" / "bad.png").write_text("x"))),
         ValueError, r"torchvision:image-folder: '.*dog/bad\.png' is not a readable image .*; remove or replace it"),
    Case("tv-folder-test-class", PY, "an image folder whose test/ has a class train/ lacks",
         _tv_load("torchvision:image-folder", lambda t: (_test_folder_with_extra_class(t), t)[1]), ValueError,
         r"'.*/test' has class folder\(s\) \['yak'\] that '.*/train' lacks; the test classes must be among the "
         r"training classes"),
    Case("tv-folder-one-each", PY, "an image folder of one image per class",
         _tv_load("torchvision:image-folder", _tv_root("folder", per_class=1)), ValueError,
         r"every class folder holds one image, which leaves none to test on; add images .*or give train/ and test/"),
    Case("tv-folder-download", CLI, "vae train --dataset torchvision:image-folder --download",
         _tv_train("torchvision:image-folder", _FOLDER, "--download"), ValueError,
         r"load_dataset\.download must be False for 'torchvision:image-folder': an image folder is read from "
         r"data_dir; got True\. Drop download=True \(--download\)"),
    Case("tv-folder-test-fraction", CLI, "vae train --dataset torchvision:image-folder --test-fraction 0.3",
         _tv_train("torchvision:image-folder", _FOLDER, "--test-fraction", "0.3"), ValueError,
         r"--test-fraction applies to --data \(your own image files\); drop it for --dataset "
         r"'torchvision:image-folder' \(an image folder's test split is its test/ folder, or a fixed stratified 20%\)"),
    Case("tv-name-without-prefix", PY, 'load_dataset("cifar10")', _dataset(name="cifar10"), ValueError,
         r"load_dataset\.name must be one of .*; got 'cifar10'\. Did you mean 'torchvision:cifar10' \(torchvision "
         r"reads it from data_dir\)\?"),
    Case("plot-class-names", PY, "plot_latent_scatter with 2 class names for labels 0-3", _plot_with_names,
         ValueError, r"plot_latent_scatter\.class_names must be a name for every label \(labels index it; 2 names "
                     r"given\); got 'labels int64 in \[0, 3\]'\. Pass integer labels 0\.\.len\(class_names\)-1"),
]


# vae score (issue 29): `vae score` and `vae_core.score` on data the checkpoint cannot score, and bad outputs
def _score_cli(*extra: str, data: Callable[[Path], Path] | None = None) -> Callable[[Path], list[str]]:
    """A CLI case: vae score on a torch checkpoint of SPEC (the digits' 64 pixels) in tmp, --out tmp/s.csv, with
    `--data data(tmp)` if given (else --dataset digits), and `extra` last."""
    def prepare(tmp: Path) -> list[str]:
        source = ["--data", str(data(tmp))] if data is not None else ["--dataset", "digits"]
        return ["score", str(_good_checkpoint(tmp)), *source, "--k", "2", "--no-progress", "--out", str(tmp / "s.csv"),
                *extra]
    return prepare


def _npy(name: str, array: np.ndarray) -> Callable[[Path], Path]:
    return lambda tmp: (np.save(tmp / name, array), tmp / name)[1]


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.npy").write_bytes(b"")
    return tmp / "empty.npy"


def _nan_images(tmp: Path) -> Path:
    images = X[:6].reshape(6, 8, 8).copy()
    images[[1, 4], 2, 3] = np.nan
    return _npy("nan.npy", images)(tmp)


def _existing_out(tmp: Path) -> list[str]:
    (tmp / "s.csv").write_text("index,score\n0,1.0\n")  # an earlier run's: kept
    return _score_cli()(tmp)


def _unwritable_folder(tmp: Path) -> Path:
    """A folder files cannot be created in: read-only for a user; /sys for root (sysfs refuses new files, even
    root's), since root writes through any mode bits."""
    import os

    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _score_py(x: Any, **kwargs: Any) -> None:
    from vae_core import build, score

    score(build("torch", SPEC, seed=0), x, **kwargs)


CASES += [
    Case("score-other-shape", CLI, "vae score --data of 10x10 images for an 8x8 checkpoint",
         _score_cli(data=_npy("big.npy", np.zeros((4, 10, 10), np.uint8))), ValueError,
         r"--data '.*big\.npy' gives images of shape \(10, 10\) \(100 values\), but the checkpoint's model takes "
         r"image_shape=\(8, 8\) \(input_dim=64\); pass the images it was trained on"),
    Case("score-py-other-shape", PY, "vae_core.score on rows of 50 values for an 8x8 model",
         lambda t: lambda: _score_py(X[:, :50]), ValueError,
         r"x must have shape \(N, 64\) or \(N, 8, 8, 1\) or \(N, 8, 8\) to match the spec .*; got \(20, 50\)"),
    Case("score-empty-file", CLI, "vae score --data on an empty (0-byte) .npy", _score_cli(data=_empty_file),
         ValueError, r"read_images: '.*empty\.npy' is not a readable NumPy file without pickles"),
    Case("score-no-images", CLI, "vae score --data on a .npy of 0 images",
         _score_cli(data=_npy("none.npy", np.zeros((0, 8, 8), np.uint8))), ValueError,
         r"read_images\.path must be at least 1 image; got \"0 in '.*none\.npy'\""),
    Case("score-nan-rows", CLI, "vae score --data on a .npy with NaN in 2 images", _score_cli(data=_nan_images),
         ValueError, r"read_images\.path must be finite float pixels in \[0, 1\]; got \"NaN or inf in 2 of the 6 "
                     r"images of '.*nan\.npy'\"\. Clean or drop those images"),
    Case("score-py-nan-rows", PY, "vae_core.score on rows with a NaN", lambda t: lambda: _score_py(_with(np.nan)),
         ValueError, r"x holds NaN or inf values in 1 example\(s\); clean or drop them first"),
    Case("score-k", CLI, "vae score --k 0", _score_cli("--k", "0"), ValueError, r"--k must be an int >= 1; got 0"),
    Case("score-py-k", PY, "vae_core.score(k=0)", lambda t: lambda: _score_py(X, k=0), ValueError,
         r"score\.k must be an int >= 1; got 0"),
    Case("score-quantile", CLI, "vae score --reference digits --quantile 1.5",
         _score_cli("--reference", "digits", "--quantile", "1.5"), ValueError,
         r"--quantile must be a number in \(0, 1\), such as 0\.99 .*; got 1\.5"),
    Case("score-quantile-alone", CLI, "vae score --quantile 0.95 without --reference", _score_cli("--quantile", "0.95"),
         ValueError, r"--quantile 0\.95 sets the threshold on the scores of --reference; pass --reference NAME\|PATH "
                     r"too, or drop --quantile"),
    Case("score-reference-unknown", CLI, "vae score --reference digitz (neither a dataset nor a path)",
         _score_cli("--reference", "digitz"), FileNotFoundError,
         r"--reference 'digitz' is neither a dataset \(.*digits.*\) nor an existing folder of images or \.npy/\.npz "
         r"file"),
    Case("score-data-and-dataset", CLI, "vae score --data PATH --dataset digits",
         _score_cli("--dataset", "digits", data=_npy("x.npy", np.zeros((3, 8, 8), np.uint8))), ValueError,
         r"pass --data '.*x\.npy' or --dataset 'digits', not both"),
    Case("score-split-all", CLI, "vae score --dataset digits --split all", _score_cli("--split", "all"), ValueError,
         r"--split all reads every image of --data PATH; for a dataset, pass --split test or --split train"),
    Case("score-out-exists", CLI, "vae score --out FILE that exists, without --overwrite", _existing_out, ValueError,
         r"--out '.*s\.csv' exists; pass --overwrite to replace it, or another --out"),
    Case("score-out-unwritable", CLI, "vae score --out in a folder that cannot be written",
         lambda t: [*_score_cli()(t)[:-2], "--out", str(_unwritable_folder(t) / "s.csv")], PermissionError,
         r"the folder of --out '.*' is not writable \(.*\); pass a folder you can write to"),
]


# TensorBoard and MLflow (issue 29): the loggers' arguments, refused when the callback is made (or when `vae train`
# and `vae compare` make theirs), before anything is written or trained
from vae_core.callbacks import CallbackError  # noqa: E402  (the error of a callback that raises in fit)


def _logger(kind: str, **kwargs: Any) -> Callable[[Path], Callable[[], Any]]:
    """A python case: vae_core.callbacks.<kind>(**kwargs), a callable value called with tmp; by default into tmp."""
    def prepare(tmp: Path) -> Callable[[], Any]:
        from vae_core import callbacks

        where = {"log_dir": tmp / "tb"} if kind == "TensorBoard" else {"tracking_uri": str(tmp / "mlruns")}
        args = {k: (v(tmp) if callable(v) else v) for k, v in {**where, **kwargs}.items()}
        return lambda: getattr(callbacks, kind)(**args)
    return prepare


def _fit_logged(tmp: Path) -> Callable[[], None]:
    from vae_core.callbacks import TensorBoard

    callback = TensorBoard(tmp / "tb", examples=np.zeros((3, 10, 10), np.float32))
    return lambda: _fit(X, callbacks=[callback])


def _run_table(text: str) -> Callable[[Path], list[str]]:
    return lambda t: [*TRAIN, "--out", str(t / "o"), "--config",
                      str((t / "c.toml", (t / "c.toml").write_text(text))[0])]


CASES += [
    Case("cli-tensorboard-file", CLI, "vae train --tensorboard FILE",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--tensorboard", str(_a_file(t))], NotADirectoryError,
         r"--tensorboard '.*not-a-folder' is a file; pass a folder path"),
    Case("cli-tensorboard-unwritable", CLI, "vae train --tensorboard in a folder that cannot be written",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--tensorboard", str(_unwritable_folder(t) / "tb")],
         PermissionError, r"--tensorboard '.*tb' cannot be written \(.*\); pass a folder you can write to"),
    Case("cli-compare-tensorboard-unwritable", CLI, "vae compare --tensorboard in a folder that cannot be written",
         lambda t: ["compare", "--dataset", "digits", "--epochs", "1", "--out", str(t / "o"), "--tensorboard",
                    str(_unwritable_folder(t) / "tb")], PermissionError,
         r"--tensorboard '.*tb' cannot be written \(.*\); pass a folder you can write to"),
    Case("cli-mlflow-unwritable", CLI, "vae train --mlflow FOLDER that cannot be written",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--mlflow", str(_unwritable_folder(t) / "mlruns")],
         PermissionError, r"--mlflow '.*mlruns' cannot be written \(.*\); pass a folder you can write to"),
    Case("cli-config-mlflow", CLI, "a --config file with mlflow = 3 in [run]", _run_table("[run]\nmlflow = 3\n"),
         ValueError, r"mlflow must be true, false or a tracking URI .*; got 3"),
    Case("cli-config-tensorboard", CLI, "a --config file with tensorboard = true in [run]",
         _run_table("[run]\ntensorboard = true\n"), ValueError,
         r"tensorboard must be a folder path \(--tensorboard DIR, or tensorboard = \"DIR\" .*\); got True"),
    Case("tensorboard-log-dir", PY, "TensorBoard(log_dir=None)", _logger("TensorBoard", log_dir=None), TypeError,
         r"TensorBoard\.log_dir must be a folder path \(a non-empty str or os\.PathLike\); got None"),
    Case("tensorboard-images-every", PY, "TensorBoard(images_every=-1)", _logger("TensorBoard", images_every=-1),
         ValueError, r"TensorBoard\.images_every must be an int >= 0; got -1\. 0 writes no images or histograms"),
    Case("tensorboard-examples-nan", PY, "TensorBoard(examples=) holding a NaN",
         _logger("TensorBoard", examples=_with(np.nan)), ValueError,
         r"TensorBoard\.examples must be finite values; got 'NaN or inf'\. Drop or clean those examples"),
    Case("tensorboard-examples-one", PY, "TensorBoard(examples=) one example (64,), not a batch",
         _logger("TensorBoard", examples=X[0]), ValueError,
         r"TensorBoard\.examples must be None or a non-empty array of examples, .*; got 'shape \(64,\), dtype "
         r"float32'\. Pass a few validation images"),
    Case("tensorboard-examples-shape", PY, "fit with TensorBoard(examples=) of 10x10 images for an 8x8 model",
         _fit_logged, CallbackError,
         r"callback TensorBoard\.on_train_begin raised ValueError: TensorBoard\.examples must have shape \(N, 64\) "
         r".*; training stopped, and no checkpoint had been written"),
    Case("mlflow-experiment", PY, 'MLflow(experiment="")', _logger("MLflow", experiment=""), ValueError,
         r"MLflow\.experiment must be a non-empty str, the experiment's name; got ''"),
    Case("mlflow-tracking-uri", PY, "MLflow(tracking_uri=5)", _logger("MLflow", tracking_uri=5), TypeError,
         r"MLflow\.tracking_uri must be None \(\./mlruns\) or a non-empty str: .*; got int 5"),
    Case("mlflow-store-is-file", PY, "MLflow(tracking_uri=) a file, not a folder",
         _logger("MLflow", tracking_uri=lambda t: str(_a_file(t))), NotADirectoryError,
         r"MLflow\.tracking_uri '.*not-a-folder' is a file; pass a folder path"),
    Case("mlflow-config", PY, "MLflow(config=) a dict, not a TrainConfig", _logger("MLflow", config={"epochs": 2}),
         TypeError, r"MLflow\.config must be None or a vae_core\.TrainConfig \(the one given to fit\); got dict"),
]


# vae export (issue 30): `vae export` and `vae_core.export` refused before anything is written
def _export_cli(fmt: str = "torch_export", out: Callable[[Path], Path] | None = None,
                checkpoint: Callable[[Path], Path] | None = None) -> Callable[[Path], list[str]]:
    """A CLI case: vae export of a torch checkpoint of SPEC (or `checkpoint(tmp)`) to `fmt`, into tmp/out (or
    `out(tmp)`)."""
    def prepare(tmp: Path) -> list[str]:
        path = checkpoint(tmp) if checkpoint is not None else _good_checkpoint(tmp)
        return ["export", str(path), "--format", fmt, "--out", str(out(tmp) if out is not None else tmp / "out")]
    return prepare


def _full_folder(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("an earlier file: kept\n")
    return tmp / "out"


def _huge_spec_checkpoint(tmp: Path) -> Path:
    """A checkpoint header whose spec's encoder is 2.1 GiB of float32 (4096 x 140000), with a stand-in tensor: the
    format's limit is checked from the header, before any tensor is read."""
    import hashlib

    from safetensors.numpy import save_file

    from vae_core.io.checkpoint import METADATA_CHECKSUM_KEY, METADATA_KEY

    spec = VAESpec(input_dim=4096, hidden_dims=(140_000,), latent_dim=2)
    text = json.dumps({"schema_version": 2, "spec": spec.to_dict(), "epoch": 0, "checksums": {}})
    path = tmp / "huge.safetensors"
    save_file({"stand-in": np.zeros(1, np.float32)}, str(path),
              metadata={METADATA_KEY: text, METADATA_CHECKSUM_KEY: hashlib.sha256(text.encode()).hexdigest()})
    return path


def _export_without(module: str, fmt: str) -> Callable[[Path], Callable[[], Any]]:
    """A python case: vae_core.export(..., format=fmt) while `module` cannot be imported (as if not installed)."""
    def prepare(tmp: Path) -> Callable[[], Any]:
        import sys

        from vae_core import export

        path = _good_checkpoint(tmp)

        def call() -> Any:
            saved = sys.modules.get(module, False)
            sys.modules[module] = None  # an import of it now fails, as when it is not installed
            try:
                return export(path, tmp / "out", format=fmt)
            finally:
                if saved is False:
                    del sys.modules[module]
                else:
                    sys.modules[module] = saved
        return call
    return prepare


def _export_py(fmt: str) -> Callable[[Path], Callable[[], Any]]:
    def prepare(tmp: Path) -> Callable[[], Any]:
        from vae_core import export

        path = _good_checkpoint(tmp)
        return lambda: export(path, tmp / "out", format=fmt)
    return prepare


CASES += [
    Case("export-format", PY, 'vae_core.export(..., format="tflite")', _export_py("tflite"), ValueError,
         r"export\.format must be one of onnx, saved_model, litert, torch_export, jax_export; got 'tflite'\. Did "
         r"you mean 'litert'\?"),
    Case("cli-export-format", CLI, "vae export --format tflite", _export_cli("tflite"), SystemExit,
         r"argument --format: invalid choice: 'tflite' \(choose from 'onnx', 'saved_model', 'litert', "
         r"'torch_export', 'jax_export'\)"),
    Case("cli-export-out-not-empty", CLI, "vae export --out a folder that holds a file", _export_cli(out=_full_folder),
         ValueError, r"--out '.*out' is not empty \(it holds 1 entry, such as 'notes\.txt'\); pass a new or empty "
                     r"folder: an export never mixes its files with others"),
    Case("cli-export-out-is-file", CLI, "vae export --out FILE", _export_cli(out=_a_file), NotADirectoryError,
         r"--out '.*not-a-folder' is a file; pass a new or empty folder"),
    Case("cli-export-out-unwritable", CLI, "vae export --out in a folder that cannot be written",
         _export_cli(out=lambda t: _unwritable_folder(t) / "out"), PermissionError,
         r"--out '.*out' cannot be written \(.*\); pass a folder you can write to"),
    Case("cli-export-litert-too-big", CLI, "vae export --format litert of a spec whose encoder is 2.1 GiB",
         _export_cli("litert", checkpoint=_huge_spec_checkpoint), ValueError,
         r"--format 'litert' cannot hold this checkpoint's encoder: its float32 weights are 2\.1 GiB, and a LiteRT "
         r"file is one FlatBuffer, which addresses at most 2 GiB; export it as 'onnx', 'saved_model' or "
         r"'torch_export'"),
    Case("cli-export-jax-export-too-big", CLI, "vae export --format jax_export of a spec whose encoder is 2.1 GiB",
         _export_cli("jax_export", checkpoint=_huge_spec_checkpoint), ValueError,
         r"--format 'jax_export' cannot hold this checkpoint's encoder: its float32 weights are 2\.1 GiB, and a "
         r"serialized jax\.export\.Exported is one FlatBuffer, which addresses at most 2 GiB; export it as 'onnx', "
         r"'saved_model' or 'torch_export'"),
    Case("cli-export-missing-checkpoint", CLI, "vae export of a checkpoint that does not exist",
         _export_cli(checkpoint=lambda t: t / "missing.safetensors"), FileNotFoundError,
         r"checkpoint '.*missing\.safetensors' does not exist"),
    Case("export-missing-runtime", PY, "vae_core.export(format=\"onnx\") without onnxruntime installed",
         _export_without("onnxruntime", "onnx"), ImportError,
         r"export\.format 'onnx' needs 'onnxruntime' to verify onnx in its runtime, which is not installed; install "
         r"it with: pip install 'vae-core\[export\]', or pass verify=False to skip the check"),
    Case("export-missing-exporter", PY, "vae_core.export(format=\"onnx\") without onnxscript installed",
         _export_without("onnxscript", "onnx"), ImportError,
         r"export\.format 'onnx' needs 'onnxscript' to write onnx, which is not installed; install it with: pip "
         r"install 'vae-core\[export\]'$"),
    Case("export-missing-flatbuffers", PY, "vae_core.export(format=\"jax_export\") without flatbuffers installed",
         _export_without("flatbuffers", "jax_export"), ImportError,
         r"export\.format 'jax_export' needs 'flatbuffers' to write jax_export, which is not installed; install it "
         r"with: pip install 'vae-core\[export\]'$"),
]


# ---------------------------------------------------------------------------- issue 31: memory and threads
_HUGE = VAESpec(input_dim=64, hidden_dims=(4_000_000_000,), latent_dim=2)  # 5e11 parameters: refused anywhere


def _build_huge(tmp: Path) -> Callable[[], Any]:
    from vae_core import build

    return lambda: build("torch", _HUGE, seed=0)


CASES += [
    Case("build-model-too-big", PY, "build() of a model whose training needs more memory than the machine has",
         _build_huge, MemoryLimitError,
         r"training this model \([\d,]+ parameters, mlp on 8x8 inputs, batch 128\) needs about [\d,.]+ GiB "
         r"\(weights, gradients, Adam's moments, activations and a checkpoint write\), and this process can have "
         r"[\d,.]+ GiB \(.*\): more than the 75% of it that a run may take; use smaller images, .*narrower "
         r"hidden_dims; or pass check_memory=False"),
    Case("cli-train-model-too-big", CLI, "vae train with --hidden-dims whose model cannot fit in memory",
         lambda t: [*TRAIN, "--hidden-dims", "4000000000", "--out", str(t / "run")], MemoryLimitError,
         r"vae train: error: training this model \([\d,]+ parameters, .* needs about [\d,.]+ GiB .* "
         r"more than the 75% of it that a run may take; use smaller images \(--image-size H,W\), .*narrower "
         r"--hidden-dims; or --no-memory-check if you know the machine has the memory"),
    Case("cli-train-threads", CLI, "vae train --threads 0", lambda t: [*TRAIN, "--threads", "0", "--out",
                                                                        str(t / "run")], ValueError,
         r"--threads must be an int >= 1; got 0\. Pass the number of CPU threads a step may use"),
    Case("fit-threads", PY, "fit(threads=0)", lambda t: lambda: _fit(X, threads=0), ValueError,
         r"fit: threads must be None \(auto: the CPUs other processes leave idle\) or an int >= 1; got 0"),
]


def _run_folder(tmp: Path, *, without: tuple[str, ...] = (), folders: tuple[str, ...] = (),
                files: tuple[str, ...] = ()) -> Path:
    """tmp/run as `vae train` leaves a finished run of SPEC on the digits (its checkpoints, run.json, history), less
    the files in `without`, with a folder in place of each name in `folders`, and a file for each name in `files`."""
    from vae_core.io.run_files import RUN_FILES

    run = tmp / "run"
    run.mkdir()
    for name in ("last.safetensors", "best.safetensors"):
        _good_checkpoint(run, name)
    (run / "run.json").write_text(json.dumps({"backend": "torch", "dataset": "digits", "seed": 0}))
    (run / "history.json").write_text(json.dumps({"train_loss": [40.0]}))
    (run / "history.csv").write_text("epoch,train_loss\n1,40.0\n")
    for name in (*without, *folders):
        if name in RUN_FILES:
            (run / name).unlink()
    for name in folders:
        (run / name).mkdir()
    for name in files:
        (run / name).write_text("x")
    return run


def _train_into(*extra: str, **run: Any) -> Callable[[Path], list[str]]:
    """A CLI case: `vae train --dataset digits --out tmp/run` (a finished run, `_run_folder(**run)`), `extra` last."""
    return lambda tmp: ["train", "--dataset", "digits", "--epochs", "1", "--no-progress",
                        "--out", str(_run_folder(tmp, **run)), *extra]


def _compare_over_comparison(tmp: Path) -> list[str]:
    (tmp / "cmp" / "torch").mkdir(parents=True)
    _good_checkpoint(tmp / "cmp" / "torch", "last.safetensors")
    return ["compare", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", str(tmp / "cmp")]


# ---------------------------------------------------------------------------- issue 32: run folders never lost
from vae_core.io.run_files import RunExistsError  # noqa: E402  (a new run over a folder that holds one)

CASES += [
    Case("run-train-over-run", CLI, "vae train --out DIR into a folder that holds a finished run, without --resume",
         _train_into("--latent-dim", "3"), RunExistsError,
         r"--out '.*run' holds a run \(last\.safetensors, best\.safetensors, run\.json, history\.json, "
         r"history\.csv\); pass --resume to continue it, --overwrite to replace it \(its files are removed first\), "
         r"or another --out$"),
    Case("run-resume-no-last", CLI, "vae train --resume over a run whose last.safetensors was deleted",
         _train_into("--resume", without=("last.safetensors",)), FileNotFoundError,
         r"--resume: --out '.*run' holds a run \(best\.safetensors, run\.json, history\.json, history\.csv\) but "
         r"no last\.safetensors to continue from; put it back to resume, pass --overwrite instead of --resume to "
         r"replace the run, or pass another --out$"),
    Case("run-resume-last-folder", CLI, "vae train --resume where last.safetensors is a folder",
         _train_into("--resume", folders=("last.safetensors",)), ValueError,
         r"--resume: '.*run/last\.safetensors' is a folder, not the run's checkpoint file; move it away and put the "
         r"checkpoint back to resume, or pass another --out$"),
    Case("run-resume-and-overwrite", CLI, "vae train --resume --overwrite", _train_into("--resume", "--overwrite"),
         ValueError, r"pass --resume \(continue the run in --out\) or --overwrite \(replace it with a new run\), "
                     r"not both"),
    Case("run-overwrite-best-folder", CLI, "vae train --overwrite where best.safetensors is a folder",
         _train_into("--overwrite", folders=("best.safetensors",)), ValueError,
         r"--out '.*run': best\.safetensors is a folder, where the run writes a file; move it away, or pass another "
         r"--out$"),
    Case("run-resume-plots-file", CLI, "vae train --resume where plots (a folder of the run) is a file",
         _train_into("--resume", "--epochs", "2", files=("plots",)),
         ValueError, r"--out '.*run': plots is a file, where the run writes a folder; move it away, or pass another "
                     r"--out$"),
    Case("run-evaluate-json-over-run-json", CLI, "vae evaluate CKPT --json DIR/run.json, the run's own metadata",
         lambda t: ["evaluate", str(_run_folder(t) / "best.safetensors"), "--json", str(t / "run" / "run.json")],
         ValueError, r"--json '.*run/run\.json' is the run\.json of the run in '.*run', which later commands read; "
                     r"write the output to another file name or folder$"),
    Case("run-score-out-over-history", CLI, "vae score --out DIR/history.csv --overwrite, the run's history",
         lambda t: ["score", str(_run_folder(t) / "best.safetensors"), "--out", str(t / "run" / "history.csv"),
                    "--overwrite"],
         ValueError, r"--out '.*run/history\.csv' is the history\.csv of the run in '.*run', which later commands "
                     r"read; write the output to another file name or folder$"),
    Case("run-compare-over-comparison", CLI, "vae compare --out DIR where an earlier comparison left its runs",
         _compare_over_comparison, RunExistsError,
         r"--out '.*cmp' holds a run \(torch/last\.safetensors\); pass --overwrite to replace it \(its files are "
         r"removed first\), or another --out$"),
    Case("run-fit-over-run", PY, "fit(out_dir=) into a folder that holds a run's checkpoints",
         lambda t: (lambda run: lambda: _fit(X, out_dir=run))(_run_folder(t)), RunExistsError,
         r"out_dir '.*run' holds a run \(last\.safetensors, best\.safetensors\); pass resume_from='.*run/"
         r"last\.safetensors' to continue it, overwrite=True to replace it \(its files are removed first\), or "
         r"another out_dir$"),
    Case("run-fit-last-folder", PY, "fit(out_dir=, resume_from=best) where out_dir/last.safetensors is a folder",
         lambda t: (lambda run: lambda: _fit(X, out_dir=run, resume_from=run / "best.safetensors"))(
             _run_folder(t, folders=("last.safetensors",))), ValueError,
         r"out_dir '.*run': last\.safetensors is a folder, where the run writes a file; move it away, or pass "
         r"another out_dir$"),
    Case("run-fit-resume-and-overwrite", PY, "fit(resume_from=..., overwrite=True)",
         lambda t: (lambda run: lambda: _fit(X, out_dir=run, resume_from=run / "last.safetensors", overwrite=True))(
             _run_folder(t)), ValueError,
         r"fit: pass resume_from \(continue a run\) or overwrite=True \(replace the run in out_dir\), not both"),
    Case("run-fit-overwrite-without-out", PY, "fit(overwrite=True) without out_dir",
         lambda t: lambda: _fit(X, overwrite=True), ValueError,
         r"fit: overwrite=True replaces the run in out_dir, but out_dir is None; pass out_dir, or drop overwrite"),
    Case("run-fit-overwrite-type", PY, "fit(overwrite=\"yes\")", lambda t: lambda: _fit(X, overwrite="yes"),
         ValueError, r"fit\.overwrite must be True or False; got 'yes'"),
]


def _image_dir(add: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """prepare(tmp) -> tmp/"images": two 8x8 grey PNGs, and the file `add(folder)` writes beside them."""
    def prepare(tmp: Path) -> Path:
        from PIL import Image

        folder = tmp / "images"
        folder.mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
        add(folder)
        return folder
    return prepare


def _animated_png(folder: Path) -> None:
    from PIL import Image

    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    frames[0].save(folder / "moving.png", save_all=True, append_images=frames[1:])  # an APNG of 2 frames


def _tiff_of(array: np.ndarray, mode: str) -> Callable[[Path], None]:
    def add(folder: Path) -> None:
        from PIL import Image

        Image.fromarray(array, mode).save(folder / "wide.tif")
    return add


def _deep_png(folder: Path) -> None:
    from PIL import Image

    Image.fromarray((np.arange(64) * 1000).astype(np.uint16).reshape(8, 8)).save(folder / "deep.png")  # I;16


def _images_call(read: str, folder: Callable[[Path], Path], **kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    """A python case: vae_core.data.<read>(folder(tmp), **kwargs)."""
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core import data

        path = folder(tmp)
        return lambda: getattr(data, read)(path, **kwargs)
    return prepare


def _config_file(name: str, text: str) -> Callable[[Path], list[str]]:
    """A CLI case: vae train --config tmp/name (holding `text`) --out tmp/o."""
    def prepare(tmp: Path) -> list[str]:
        (tmp / name).write_text(text)
        return [*TRAIN, "--out", str(tmp / "o"), "--config", str(tmp / name)]
    return prepare


def _edited_checkpoint(**changes: Any) -> Callable[[Path], Path]:
    """path_of(tmp): a good checkpoint whose metadata has `changes` ("trainer_state__lr" sets trainer_state["lr"])
    and a header checksum that matches them again: an edited file that no checksum catches."""
    def path_of(tmp: Path) -> Path:
        import hashlib

        from safetensors import safe_open
        from safetensors.numpy import save_file

        from vae_core.io.checkpoint import METADATA_CHECKSUM_KEY, METADATA_KEY

        path = _good_checkpoint(tmp)
        with safe_open(str(path), framework="np") as f:
            meta, tensors = json.loads(f.metadata()[METADATA_KEY]), {k: f.get_tensor(k) for k in f.keys()}
        for key, value in changes.items():
            *parents, name = key.split("__")
            table = meta
            for parent in parents:
                table = table.setdefault(parent, {})
            table[name] = value
        text = json.dumps(meta)  # NaN written as NaN, as an editor might
        save_file(tensors, str(path), metadata={METADATA_KEY: text,
                                                METADATA_CHECKSUM_KEY: hashlib.sha256(text.encode()).hexdigest()})
        return path
    return path_of


def _save_checkpoint(**kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core import build, save_checkpoint

        return lambda: save_checkpoint(tmp / "c.safetensors", build("torch", SPEC, seed=0), **kwargs)
    return prepare


_MASKED = np.ma.masked_array(X, mask=X > 0.99)  # 15 masked values in 12 of X's 20 rows


# ---------------------------------------------------------------------------- issue 32: no silent data changes
CASES += [
    Case("images-animated", CLI, "vae train --data FOLDER holding an animated PNG (APNG)",
         lambda t: [*TRAIN[:1], "--data", str(_image_dir(_animated_png)(t)), *TRAIN[3:], "--out", str(t / "o")],
         ValueError, r"load_images: '.*moving\.png' is animated \(2 frames\): only its first frame would be read; "
                     r"save the frames you want as still images \(PIL\.ImageSequence\) or remove the file$"),
    Case("images-unreadable", CLI, "vae train --data FOLDER holding a damaged .png",
         lambda t: [*TRAIN[:1], "--data", str(_image_dir(lambda f: (f / "2.png").write_bytes(b"\x89PNG\r\n"))(t)),
                    *TRAIN[3:], "--out", str(t / "o")],
         ValueError, r"load_images: '.*images/2\.png' is not a readable image \(.*\); remove or replace it$"),
    Case("images-32-bit-int", PY, "load_images on a folder with a 32-bit integer TIFF of values past 65535",
         _images_call("load_images", _image_dir(_tiff_of(np.full((8, 8), 70000, np.int32), "I")), mode="L"),
         ValueError, r"load_images: '.*wide\.tif' holds 32-bit integer pixels in \[70000, 70000\]; images are read "
                     r"as 8-bit \(0\.\.255\) or 16-bit \(0\.\.65535\) levels: save it as a 16-bit PNG, or pass the "
                     r"images as a \.npy of floats in \[0, 1\]$"),
    Case("images-float", PY, "read_images on a folder with a 32-bit float TIFF (mode F)",
         _images_call("read_images", _image_dir(_tiff_of(np.full((8, 8), 0.5, np.float32), "F")), mode="L"),
         ValueError, r"read_images: '.*wide\.tif' holds 32-bit float pixels \(Pillow mode 'F'\), which converting "
                     r"to 8 bits would clip; save it as an 8- or 16-bit PNG, or pass the images as a \.npy of floats "
                     r"in \[0, 1\]$"),
    Case("tv-folder-16-bit", CLI, "vae train --dataset torchvision:image-folder with a 16-bit PNG",
         _tv_train("torchvision:image-folder", _tv_edit(_FOLDER, lambda r: _deep_png(r / "cat")), "--image-mode",
                   "L"),
         ValueError, r"torchvision:image-folder: '.*cat/deep\.png' is a 16-bit image \(Pillow mode 'I;16'\), which "
                     r"this dataset's uint8 items would clip; read the folder with vae train --data FOLDER "
                     r"\(load_images, which keeps 16-bit levels as floats\), or save the files as 8-bit images$"),
    Case("masked-array", PY, "fit on a NumPy masked array with masked values",
         lambda t: lambda: _fit(_MASKED), ValueError,
         r"train is a NumPy masked array with 15 masked value\(s\) in 12 of its 20 examples; the mask would be "
         r"ignored and the values under it read as data\. Fill them with x\.filled\(value\), or drop those "
         r"examples with x\[~np\.ma\.getmaskarray\(x\)\.reshape\(len\(x\), -1\)\.any\(axis=1\)\]\.data$"),
    Case("masked-item", PY, "fit on a map-style dataset whose item 3 is a masked array",
         lambda t: lambda: _fit_items(_Items({3: np.ma.masked_array(X[3], mask=np.arange(64) == 5)})), ValueError,
         r"train\[3\] is a NumPy masked array with 1 masked value\(s\); the mask would be ignored .*Fill them "
         r"with x\.filled\(value\), or leave that example out$"),
    Case("config-yaml-duplicate-key", CLI, "a YAML --config giving one key twice",
         _config_file("c.yaml", "train:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n"), ValueError,
         r"--config '.*c\.yaml': key 'epochs' is given twice \(lines 2 and 4\); YAML would keep the last silently\. "
         r"Keep one of them$"),
    Case("config-toml-duplicate-key", CLI, "a TOML --config giving one key twice",
         _config_file("c.toml", "[train]\nepochs = 2\nepochs = 3\n"), ValueError,
         r"--config '.*c\.toml' is not valid TOML: Cannot overwrite a value \(at line 3, column 11\): 'epochs = 3' "
         r"gives a key or table a second time; keep one of them$"),
    Case("checkpoint-epoch-huge", CLI, "vae evaluate on a checkpoint whose checksummed epoch is 10**18",
         lambda t: ["evaluate", str(_edited_checkpoint(epoch=10**18)(t))], CheckpointError,
         r"'.*good\.safetensors': its epoch \(epochs completed\) is 1000000000000000000; expected an int in "
         r"\[0, 1000000000\]: the file was edited or not written by save_checkpoint; use another copy or an earlier "
         r"checkpoint$"),
    Case("checkpoint-epoch-negative", PY, "load_checkpoint of a checkpoint whose checksummed epoch is -1",
         _load(_edited_checkpoint(epoch=-1)), CheckpointError,
         r"its epoch \(epochs completed\) is -1; expected an int in \[0, 1000000000\]"),
    Case("checkpoint-adam-step", PY, "load_checkpoint of a checkpoint whose adam_step is -5",
         _load(_edited_checkpoint(adam_step=-5)), CheckpointError,
         r"its adam_step is -5; expected None or an int in \[0, 2\*\*53\]: the file was edited"),
    Case("checkpoint-history-short", PY, "load_checkpoint of a checkpoint of epoch 3 with one train_loss",
         _load(_edited_checkpoint(epoch=3, history={"train_loss": [40.0]})), CheckpointError,
         r"its history\['train_loss'\] is '1 values'; expected one per epoch done, 3 \(or none\)"),
    Case("checkpoint-lr-nan", PY, "load_checkpoint of a checkpoint whose trainer_state lr is NaN",
         _load(_edited_checkpoint(trainer_state__lr=float("nan"))), CheckpointError,
         r"its trainer_state learning rate \(lr\) is nan; expected a finite number > 0"),
    Case("checkpoint-best-epoch", PY, "load_checkpoint of a checkpoint of epoch 1 whose best_epoch is 7",
         _load(_edited_checkpoint(trainer_state__best_epoch=7)), CheckpointError,
         r"its trainer_state best_epoch is 7; expected None or an int in \[1, 1\] \(the epochs done\)"),
    Case("checkpoint-write-epoch", PY, "save_checkpoint(epoch=-1)", _save_checkpoint(epoch=-1), CheckpointError,
         r"write_checkpoint '.*c\.safetensors': its epoch \(epochs completed\) is -1; expected an int in "
         r"\[0, 1000000000\]: a checkpoint with it could not be read back$"),
]


# issue 32, one clean line: what is not a regular file, misnamed or oversized .npy headers, too-long names, config
# values of the wrong type, a NumPy scalar where an int goes, and hints that name NaN's row or a huge beta
def _train_data(path_of: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    """A CLI case: vae train --data path_of(tmp), --out tmp/o, one small epoch, `extra` last."""
    return lambda t: ["train", "--data", str(path_of(t)), "--out", str(t / "o"), "--hidden-dims", "16",
                      "--latent-dim", "2", "--epochs", "1", "--no-plots", "--no-progress", *extra]


def _fifo(name: str) -> Callable[[Path], Path]:
    """prepare(tmp) -> a FIFO (named pipe) tmp/name: opening it to read blocks until a writer comes."""
    import os

    return lambda t: (os.mkfifo(t / name), t / name)[1]


def _device_link(t: Path) -> Path:
    """zero.npy, a link to the character device /dev/zero (reads forever)."""
    (t / "zero.npy").symlink_to("/dev/zero")
    return t / "zero.npy"


def _folder(name: str) -> Callable[[Path], Path]:
    return lambda t: ((t / name).mkdir(), t / name)[1]


def _npz_as_npy(t: Path) -> Path:
    np.savez(t / "images.npz", images=np.zeros((4, 8, 8), np.uint8))
    return (t / "images.npz").rename(t / "images.npy")


def _npy_as_npz(t: Path) -> Path:
    np.save(t / "images.npy", np.zeros((4, 8, 8), np.uint8))
    return (t / "images.npy").rename(t / "images.npz")


def _huge_dim_npy(t: Path) -> Path:
    """An .npy whose header gives a first dimension of 10**23 (over 64 bits) for 4 images' bytes."""
    np.save(t / "huge.npy", np.zeros((4, 8, 8), np.uint8))
    data = (t / "huge.npy").read_bytes()
    header_len = int.from_bytes(data[8:10], "little")
    header = data[10:10 + header_len].decode("latin1").replace("(4, 8, 8)", f"({10 ** 23}, 8, 8)").rstrip()
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"  # the format pads the header to 64 bytes
    (t / "huge.npy").write_bytes(data[:8] + len(header).to_bytes(2, "little") + header.encode("latin1")
                                 + data[10 + header_len:])
    return t / "huge.npy"


def _nan_image_3(t: Path) -> Path:
    images = X[:6].reshape(6, 8, 8).copy()
    images[3, 1, 1] = np.nan
    return _npy("nan.npy", images)(t)


def _config(name: str, content: str | bytes) -> Callable[[Path], list[str]]:
    """A CLI case: vae train (TRAIN, --out tmp/o) with --config tmp/name holding `content`."""
    def prepare(t: Path) -> list[str]:
        (t / name).write_bytes(content.encode() if isinstance(content, str) else content)
        return [*TRAIN, "--out", str(t / "o"), "--config", str(t / name)]
    return prepare


LONG_NAME = "a" * 300 + ".safetensors"  # over every common file system's 255 bytes per name


def _load_checkpoint(path: Any) -> Any:
    from vae_core import load_checkpoint

    return load_checkpoint(path, "torch")


def _read_checkpoint(path: Any) -> Any:
    from vae_core import read_checkpoint

    return read_checkpoint(path)


def _load_images(path: Path) -> Any:
    from vae_core.data import load_images

    return load_images(path)


def _binarize(x: np.ndarray) -> np.ndarray:
    from vae_core.data import binarize

    return binarize(x, np.random.default_rng(0))


def _build(**kwargs: Any) -> Any:
    from vae_core import build

    return build("torch", SPEC, **kwargs)


# ---------------------------------------------------------------------------- issue 32: one clean line, every refusal
CASES += [
    Case("data-fifo", CLI, "vae train --data data.npy, a FIFO (named pipe): reading it blocked forever",
         _train_data(_fifo("data.npy")), ValueError,
         r"load_images\.path must be a folder of images, or a regular \.npy/\.npz file; got \"'.*data\.npy', a FIFO "
         r"\(named pipe\)\"\. Save the array to a regular file and pass that"),
    Case("data-device", CLI, "vae train --data zero.npy, a link to the device /dev/zero", _train_data(_device_link),
         ValueError, r"got \"'.*zero\.npy', a character device\"\. Save the array to a regular file"),
    Case("checkpoint-folder", CLI, "vae evaluate on a folder named model.safetensors",
         lambda t: ["evaluate", str(_folder("model.safetensors")(t))], CheckpointError,
         r"checkpoint '.*model\.safetensors' is a folder, not a regular file; pass the path of a \.safetensors "
         r"file written by save_checkpoint"),
    Case("checkpoint-fifo", PY, "read_checkpoint of a FIFO named best.safetensors",
         lambda t: (lambda path: lambda: _read_checkpoint(path))(_fifo("best.safetensors")(t)), CheckpointError,
         r"checkpoint '.*best\.safetensors' is a FIFO \(named pipe\), not a regular file"),
    Case("checkpoint-bytes", PY, "load_checkpoint(b'model.safetensors')",
         lambda t: lambda: _load_checkpoint(b"model.safetensors"), TypeError,
         r"read_checkpoint: path must be the checkpoint's path as str or os\.PathLike; got bytes "
         r"b'model\.safetensors'\. Pass e\.g\. 'runs/r/best\.safetensors' \(decode bytes with \.decode\(\)\)"),
    Case("checkpoint-none", PY, "load_checkpoint(None)", lambda t: lambda: _load_checkpoint(None), TypeError,
         r"read_checkpoint: path must be the checkpoint's path as str or os\.PathLike; got NoneType None"),
    Case("npz-named-npy", CLI, "vae train --data images.npy that is a .npz archive", _train_data(_npz_as_npy),
         ValueError, r"load_images\.path must be a \.npy array; got \"'.*images\.npy', a \.npz archive \(a zip of "
                     r"arrays\)\"\. Rename it to \.npz"),
    Case("npy-named-npz", PY, "load_images of images.npz that is a .npy array",
         lambda t: (lambda path: lambda: _load_images(path))(_npy_as_npz(t)), ValueError,
         r"load_images\.path must be a \.npz archive; got \"'.*images\.npz', a \.npy array\"\. Rename it to \.npy"),
    Case("npy-huge-dimension", CLI, "vae train --data huge.npy whose header gives 10**23 images",
         _train_data(_huge_dim_npy), ValueError,
         r"load_images: '.*huge\.npy' is not a readable NumPy file without pickles \(its header declares a shape "
         r"too large to address"),
    Case("long-name-checkpoint", CLI, "vae evaluate on a 300-character file name",
         lambda t: ["evaluate", str(t / LONG_NAME)], ValueError,
         r"checkpoint '.*a{300}\.safetensors': its name 'a{40}\.\.\.' is 312 bytes long, over the file system's "
         r"limit of \d+ bytes per name; use a shorter name"),
    Case("long-name-python", PY, "load_checkpoint of a 300-character file name",
         lambda t: lambda: _load_checkpoint(t / LONG_NAME), ValueError,
         r"its name 'a{40}\.\.\.' is 312 bytes long, over the file system's limit of \d+ bytes per name"),
    Case("long-name-out", CLI, "vae train --out with a 300-character folder name",
         lambda t: [*TRAIN, "--out", str(t / LONG_NAME)], OSError,
         r"path '.*a{300}\.safetensors': its name 'a{40}\.\.\.' is 312 bytes long, over the file system's limit of "
         r"\d+ bytes per name; use a shorter name"),
    Case("config-wrong-type", CLI, "a --config file with out = 3 in [run]", _config("c.toml", "[run]\nout = 3\n"),
         ValueError, r"--config '.*c\.toml': \[run\] out must be a string; got 3 \(int\)\. Write e\.g\. out = "
                     r"\"runs/r\"$"),
    Case("config-quoted-number", CLI, "a TOML --config with learning_rate = \"1e-3\" (a string)",
         _config("c.toml", "[train]\nlearning_rate = \"1e-3\"\n"), ValueError,
         r"\[train\] learning_rate must be a number; got '1e-3' \(str\) \(a string: write it without quotes\)\. "
         r"Write e\.g\. learning_rate = 0\.001"),
    Case("config-yaml-1e3-epochs", CLI, "a YAML --config with epochs: 1e3 (a string in YAML 1.1)",
         _config("c.yaml", "train:\n  epochs: 1e3\n"), ValueError,
         r"\[train\] epochs must be an integer; got '1e3' \(str\) \(YAML 1\.1 reads that number as a string\)\. "
         r"Write e\.g\. epochs: 20"),
    Case("config-list-type", CLI, "a --config file with hidden_dims = \"16\"",
         _config("c.toml", "[spec]\nhidden_dims = \"16\"\n"), ValueError,
         r"\[spec\] hidden_dims must be a list of positive integers; got '16' \(str\)\. Write e\.g\. hidden_dims = "
         r"\[400, 400\]"),
    Case("config-not-utf8", CLI, "a --config file in Latin-1, not UTF-8",
         _config("c.toml", "[run]\nout = \"r\u00e9sultats\"\n".encode("latin1")), ValueError,
         r"--config '.*c\.toml' is not UTF-8 text \(byte 14: invalid continuation byte\); save it as UTF-8"),
    Case("config-fifo", CLI, "--config c.toml, a FIFO (named pipe)",
         lambda t: [*TRAIN, "--out", str(t / "o"), "--config", str(_fifo("c.toml")(t))], ValueError,
         r"--config '.*c\.toml' is a FIFO \(named pipe\), not a regular file; pass a \.toml or \.yaml file"),
    Case("fit-config-as-val", PY, "fit(model, x, config) with the config in val's place",
         lambda t: lambda: _fit_items(X, TrainConfig(epochs=1)), TypeError,
         r"fit: val is a TrainConfig: pass the config as config=\.\.\. \(the third positional argument is val, the "
         r"validation examples\)"),
    Case("spec-beta-huge", PY, "VAESpec(beta=1e308)", lambda t: lambda: VAESpec(beta=1e308), ValueError,
         r"VAESpec\.beta must be a number in \[0\.0, 1000000\.0\]; got 1e\+308\. beta weighs the KL term: .* far "
         r"above that the float32 loss and its gradients overflow"),
    Case("cli-beta-huge", CLI, "vae train --beta 1e308", lambda t: [*TRAIN, "--beta", "1e308", "--out", str(t / "o")],
         ValueError, r"VAESpec\.beta must be a number in \[0\.0, 1000000\.0\]; got 1e\+308"),
    Case("nan-row-named", PY, "fit on rows with NaN in row 3", lambda t: lambda: _fit(_with(np.nan)), ValueError,
         r"train holds NaN or inf values in 1 example\(s\); clean or drop them first \(row 3, counted from 0\)"),
    Case("nan-image-named", CLI, "vae train --data on a float .npy with a NaN in image 3",
         _train_data(_nan_image_3), ValueError,
         r"got \"NaN or inf in 1 of the 6 images of '.*nan\.npy'\"\. Clean or drop those images \(image 3, counted "
         r"from 0\)"),
    Case("binarize-nan", PY, "vae_core.data.binarize on pixels with a NaN",
         lambda t: lambda: _binarize(_with(np.nan)), ValueError,
         r"binarize\.x must be finite values in \[0, 1\]; got 'NaN or inf at 1 position\(s\), the first at index "
         r"\(3, 5\)'\. Clean or drop those examples first"),
    Case("numpy-bool-batch-size", PY, "TrainConfig(batch_size=np.True_)",
         lambda t: lambda: TrainConfig(batch_size=np.True_), ValueError,
         r"TrainConfig\.batch_size must be an int >= 1; got np\.True_"),
    Case("numpy-float-latent-dim", PY, "VAESpec(latent_dim=np.float64(2.0))",
         lambda t: lambda: VAESpec(latent_dim=np.float64(2.0)), ValueError,
         r"VAESpec\.latent_dim must be an int >= 1; got np\.float64\(2\.0\)"),
    Case("build-seed", PY, "build('torch', seed=-1)", lambda t: lambda: _build(seed=-1), ValueError,
         r"build\.seed must be an int >= 0; got -1\. Pass e\.g\. seed=0, or seed=None for fresh weights"),
]


def _sample(*extra: str, spec: VAESpec = SPEC) -> Callable[[Path], list[str]]:
    """A CLI case: vae sample on a checkpoint of `spec` (tmp/good.safetensors), -o tmp/s.png, `extra` last."""
    return lambda t: ["sample", str(_good_checkpoint(t, spec=spec)), "-o", str(t / "s.png"), *extra]


_WIDE = VAESpec(image_shape=(64, 64, 3), hidden_dims=(2,), latent_dim=2)  # 12,288 values a sample: 4.6 TiB at -n 10**8


# ---------------------------------------------------------------------------- issue 32: sizes before memory
CASES += [
    Case("sample-n-huge", CLI, "vae sample -n 1000000000", _sample("-n", "1000000000"), ValueError,
         r"-n 1,000,000,000 is more than the 100,000,000 samples vae sample draws at once: as float32 they would "
         r"take 238\.4 GiB \(64 values each\); pass a smaller -n \(the grid shows at most 400\), or draw several "
         r"sets with different --seed values$"),
    Case("sample-npy-over-disk", CLI, "vae sample -n 100000000 --npy FILE of 64x64 RGB samples, over the free disk",
         lambda t: _sample("-n", "100000000", "--npy", str(t / "s.npy"), spec=_WIDE)(t), ValueError,
         r"--npy '.*s\.npy' would hold -n 100,000,000 samples of 12,288 values as float32, [\d,.]+ GiB, more than "
         r"the [\d,.]+ GiB free on its disk; pass a smaller -n, or an --npy path on a disk with room$"),
    Case("sample-not-image", CLI, "vae sample of a model of 6 values (no image_shape), without --npy",
         _sample(spec=VAESpec(input_dim=6, hidden_dims=(4,), latent_dim=2)), ValueError,
         r"the checkpoint's input_dim=6 is not an image \(no image_shape\), so there is no grid to draw; pass "
         r"--npy FILE\.npy to save the samples$"),
    Case("train-image-size-huge", CLI, "vae train --data (two 8x8 PNGs) --image-size 1000000,1000000",
         _train_data(_image_dir(lambda folder: None), "--image-size", "1000000,1000000"), MemoryLimitError,
         r"vae train: error: training this model \([\d,]+ parameters, mlp on 1000000x1000000 inputs, batch 1\) needs "
         r"about [\d,.]+ GiB .*: more than the 75% of it that a run may take; use smaller images \(--image-size "
         r"H,W\), .*; or --no-memory-check if you know the machine has the memory$"),
    Case("train-image-size-huge-unchecked", CLI,
         "vae train --data (two 8x8 PNGs) --image-size 1000000,1000000 --no-memory-check: the images cannot load",
         _train_data(_image_dir(lambda folder: None), "--image-size", "1000000,1000000", "--no-memory-check"),
         MemoryLimitError,
         r"load_images: image_size=\(1000000, 1000000\) makes the 2 images of '.*images' \(1000000x1000000x1\) "
         r"need about [\d,.]+ GiB as they are read, and this process can have [\d,.]+ GiB \(.*\): more than the "
         r"75% of it that loading may take; pass a smaller image_size=\(H, W\) \(--image-size H,W\)$"),
    Case("load-images-size-huge", PY, "load_images(folder of two 8x8 PNGs, image_size=(10**6, 10**6))",
         _images_call("load_images", _image_dir(lambda folder: None), image_size=(10 ** 6, 10 ** 6)),
         MemoryLimitError, r"load_images: image_size=\(1000000, 1000000\) makes the 2 images of '.*images' "
                           r"\(1000000x1000000x1\) need about [\d,.]+ GiB as they are read, .*; pass a smaller "
                           r"image_size=\(H, W\) \(--image-size H,W\)$"),
]

# ---------------------------------------------------------------------------- issue 32: found by the fuzz test
CASES += [
    Case("cli-train-threads-huge", CLI, "vae train --threads 2147483648 (once: run.json written, then torch's "
                                        "'Overflow when unpacking long' in the first step)",
         lambda t: [*TRAIN, "--threads", "2147483648", "--out", str(t / "run")], ValueError,
         r"vae train: error: --threads must be at most 4,096; got 2147483648\. Pass the number of CPU threads a "
         r"step may use: this process may run on \d+ CPUs$"),
    Case("fit-threads-huge", PY, "fit(threads=2**31)", lambda t: lambda: _fit(X, threads=2 ** 31), ValueError,
         r"fit: threads must be at most 4,096; got 2147483648\. Pass the number of CPU threads a step may use"),
    Case("cli-train-resume-without-out", CLI, "vae train --resume without --out (once: resumed the working folder)",
         lambda t: [*TRAIN, "--resume"], ValueError,
         r"vae train: error: --resume needs --out: the folder of the run to continue$"),
]


# ---------------------------------------------------------------------------- vae compare --backends
def _compare_backends(value: str) -> Callable[[Path], list[str]]:
    """A CLI case: `vae compare --backends VALUE` on the digits, into tmp/cmp."""
    return lambda t: ["compare", "--backends", value, "--dataset", "digits", "--epochs", "1", "--no-progress",
                      "--out", str(t / "cmp")]


def _compare_call(backends: Any) -> Callable[[Path], Callable[[], Any]]:
    """A python case: compare_backends(backends=...) on the digits, into tmp/cmp."""
    def prepare(tmp: Path) -> Callable[[], Any]:
        from vae_core.cli.compare import compare_backends

        return lambda: compare_backends(dataset="digits", out=tmp / "cmp", progress=False,
                                        config_changes={"epochs": 1}, backends=backends)
    return prepare


BACKENDS_TAKES = (r"must be two or more of the registered backends \(.*\), each once, (comma-separated, )?the first "
                  r"the reference the others are compared with; got ")

CASES += [
    Case("cli-compare-backends-unknown", CLI, "vae compare --backends torch,mxnet", _compare_backends("torch,mxnet"),
         ValueError, rf"vae compare: error: --backends {BACKENDS_TAKES}'torch,mxnet': 'mxnet' is not a registered "
                     r"backend; pass only registered names, e.g. --backends torch,tf$"),
    Case("cli-compare-backends-one", CLI, "vae compare --backends tf", _compare_backends("tf"), ValueError,
         rf"--backends {BACKENDS_TAKES}'tf': only 'tf'; add a backend to compare it with, e.g. --backends tf,torch$"),
    Case("cli-compare-backends-twice", CLI, "vae compare --backends torch,tf,torch",
         _compare_backends("torch,tf,torch"), ValueError,
         rf"--backends {BACKENDS_TAKES}'torch,tf,torch': 'torch' is named twice; name each backend once$"),
    Case("cli-compare-backends-empty", CLI, "vae compare --backends torch,,tf", _compare_backends("torch,,tf"),
         ValueError, rf"--backends {BACKENDS_TAKES}'torch,,tf': an empty name; drop the extra comma, e.g. "
                     r"--backends torch,tf$"),
    Case("compare-backends-one", PY, 'compare_backends(backends=("torch",))', _compare_call(("torch",)), ValueError,
         rf"compare_backends\.backends {BACKENDS_TAKES}\('torch',\): only 'torch'; add a backend to compare it with, "
         r"e.g. backends=\('torch', 'tf'\)$"),
    Case("compare-backends-type", PY, "compare_backends(backends=2)", _compare_call(2), ValueError,
         rf"compare_backends\.backends {BACKENDS_TAKES}2: not a comma-separated string or a sequence of names; pass "
         r"e.g. backends=\('torch', 'tf'\)$"),
]


# ---------------------------------------------------------------------------- issue 33: the JAX backend
def _fit_jax(**kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    def prepare(tmp: Path) -> Callable[[], None]:
        from vae_core import build, fit

        return lambda: fit(build("jax", SPEC, seed=0), X, None, TrainConfig(epochs=1), progress=False, **kwargs)
    return prepare


def _fit_jax_under_mesh(axes: tuple[str, ...], **kwargs: Any) -> Callable[[Path], Callable[[], None]]:
    """fit while `jax.sharding.get_mesh()` gives a stand-in for a mesh with these axes, 2 devices each: a real mesh
    of several CPU devices needs the CPU split before JAX starts, which this test process is past."""
    def prepare(tmp: Path) -> Callable[[], None]:
        import jax

        from vae_core import build, fit

        class StandIn:  # the properties `mesh_of_context` reads
            empty, size, axis_names, shape = False, 2 ** len(axes), axes, {a: 2 for a in axes}

        def call() -> None:
            original = jax.sharding.get_mesh
            jax.sharding.get_mesh = lambda: StandIn()
            try:
                fit(build("jax", SPEC, seed=0), X, None, TrainConfig(epochs=1, batch_size=8), progress=False,
                    **kwargs)
            finally:
                jax.sharding.get_mesh = original
        return call
    return prepare


CASES += [
    Case("jax-fit-threads", PY, 'fit(build("jax"), threads=2)', _fit_jax(threads=2), ValueError,
         r"threads=2: the JAX backend cannot set its CPU threads: XLA sizes its pool when JAX starts, from the CPUs "
         r"the process may run on; start the process on 2 CPU\(s\) \(taskset -c 0-1 \.\.\.\), or leave threads at "
         r"its default"),
    Case("cli-train-jax-threads", CLI, "vae train --backend jax --threads 2",
         lambda t: [*TRAIN, "--backend", "jax", "--threads", "2", "--out", str(t / "run")], ValueError,
         r"vae train: error: --threads 2 applies to backends torch, tf, not 'jax'; drop --threads"),
    Case("jax-fit-mesh-two-axes", PY, "fit(build(\"jax\")) under jax.set_mesh of a 2-axis mesh",
         _fit_jax_under_mesh(("data", "model")), ValueError,
         r"fit: the mesh set by jax\.set_mesh has axes \{'data': 2, 'model': 2\}, but the jax backend splits the "
         r"batch along one axis; set a one-axis mesh"),
    Case("jax-fit-mesh-device", PY, "fit(build(\"jax\"), device=\"cpu\") under jax.set_mesh of a 2-device mesh",
         _fit_jax_under_mesh(("batch",), device="cpu"), ValueError,
         r"fit: this fit runs under a mesh of 2 devices \(jax\.set_mesh\), which decides where it trains; got "
         r"device='cpu'\. Pass device='auto', or call fit outside the mesh"),
    Case("jax-fit-launched", PY, "fit(build(\"jax\")) in a process started as one of WORLD_SIZE=2",
         lambda t: lambda: _with_env({"WORLD_SIZE": "2"}, _fit_jax()(t)), ValueError,
         r"fit: this process is one of WORLD_SIZE=2 started by a launcher \(torchrun\), but the jax backend trains "
         r"in one process"),
]
