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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vae_core import CheckpointError, TrainConfig, VAESpec

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
    Case("unknown-backend", PY, 'build("jax")', lambda t: lambda: __import__("vae_core").build("jax"), ValueError,
         r"backend must be one of \['tf', 'torch'\]; got 'jax'"),
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
    Case("cli-backend", CLI, "vae train --backend jax", lambda t: [*TRAIN, "--backend", "jax", "--out", str(t / "o")],
         SystemExit, r"argument --backend: invalid choice: 'jax'"),
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
         r"export\.format must be one of onnx, saved_model, litert, torch_export; got 'tflite'\. Did you mean "
         r"'litert'\?"),
    Case("cli-export-format", CLI, "vae export --format tflite", _export_cli("tflite"), SystemExit,
         r"argument --format: invalid choice: 'tflite' \(choose from 'onnx', 'saved_model', 'litert', "
         r"'torch_export'\)"),
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
]
