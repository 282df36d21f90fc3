"""The argument parser of the `vae` command (`build_parser`), with the flags several commands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from vae_core.cli.backend_options import applies_suffix, nproc_help
from vae_core.cli.compare import DEFAULT_BACKENDS
from vae_core.cli.options import DATASETS, DEVICES, PRECISIONS, add_field_flags, image_size
from vae_core.deploy.formats import FORMATS
from vae_core.registry import BACKENDS

# `vae --help`'s description
DESCRIPTION = """The `vae` command: train, evaluate, score, sample, reconstruct, plot and compare, in either backend.

    vae train --backend torch --dataset mnist-5k --epochs 10 --out runs/mnist
    vae train --out runs/mnist --resume --epochs 20 --backend tf   # continue that run in the other backend
    vae evaluate runs/mnist/last.safetensors
    vae score runs/mnist/best.safetensors --data new/ --reference mnist-5k --out scores.csv   # per-image scores
    vae sample runs/mnist/last.safetensors -n 100 -o samples.png --npy samples.npy
    vae plot runs/mnist/best.safetensors --out runs/mnist/plots
    vae export runs/mnist/best.safetensors --format onnx --out exports/onnx   # any --format: vae export -h
    vae compare --dataset fashion-mnist --epochs 20 --same-init --out runs/compare
    vae train --dataset fashion-mnist --tensorboard runs/tb --mlflow   # curves in TensorBoard, a run in ./mlruns
    vae train --nproc 2 --dataset fashion-mnist --out runs/fm   # data-parallel: torchrun, or tf's MirroredStrategy

A bad argument exits with status 2 and one line on stderr, never a traceback; so does a second run into a folder
that another run holds, a new run into a folder that holds a run (--resume continues it, --overwrite replaces it),
and an output file that would replace a checkpoint or a run's run.json or history. A run that fails while training
(a non-finite loss, or a disk that refuses a write) exits with status 1 and keeps its last good checkpoint. SIGTERM
and Ctrl-C stop at the next step boundary after a checkpoint of that step, with one line saying how to resume, and
exit 143 and 130.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2 (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_data_flags(p: argparse.ArgumentParser, *, default: str | None, own_images: bool = True) -> None:
    p.add_argument("--dataset", choices=DATASETS, default=default, metavar="NAME",
                   help=f"dataset name: {', '.join(DATASETS)}" + (f" (default: {default})" if default else
                                                                 " (default: the one the checkpoint's run.json names)"))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the IDX files of fashion-mnist or mnist (or their parent); for a torchvision:... "
                        "dataset, torchvision's root (holding MNIST/raw/, FashionMNIST/raw/ or cifar-10-batches-py/), "
                        "or the folder of class folders of torchvision:image-folder")
    p.add_argument("--download", action="store_true",
                   help="download fashion-mnist/mnist if missing (md5-checked); torchvision:mnist, :fashion-mnist and "
                        ":cifar10 are fetched by torchvision into --data-dir")
    p.add_argument("--image-size", type=image_size, default=None, metavar="H,W",
                   help="with --data or --dataset torchvision:image-folder: resize every image file to H x W "
                        "(otherwise mixed sizes are refused)")
    p.add_argument("--image-mode", choices=("L", "RGB"), default=None,
                   help="with --data or --dataset torchvision:image-folder: convert every image file to grey levels "
                        "(L) or colour (RGB)")
    if not own_images:  # `vae compare` runs on the named datasets
        return
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="your own images instead of --dataset: a folder of PNG/JPEG files, or a .npy/.npz array "
                        "(N, H, W[, C]), split 90/10 (--test-fraction) by --seed (vae_core.data.load_images)")
    p.add_argument("--test-fraction", type=float, default=None, metavar="F",
                   help="with --data: the share of images held out for testing (default 0.1); it is read into "
                        "memory, while a .npy's training split stays on disk")


def _add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default=None,
                   help=f"where to run: auto (a GPU if the backend sees one, else the CPU), cpu or cuda (default: "
                        f"auto) {applies_suffix('--device')}")


def _add_backend_flag(p: argparse.ArgumentParser, help_default: str) -> None:
    p.add_argument("--backend", choices=sorted(BACKENDS), default=None, help=f"backend (default: {help_default})")


def _add_tensorboard_flag(p: argparse.ArgumentParser, runs: str) -> None:
    p.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                   help=f"log for TensorBoard into {runs}: every epoch's losses, learning rate and seconds; image "
                        f"grids and latent histograms every 5 epochs (view: tensorboard --logdir DIR); needs the "
                        f"tensorboard extra")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vae", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("train", help="train a VAE and write checkpoints, history and plots into --out",
                       description="Train a VAE. Writes into --out: last.safetensors, best.safetensors, run.json, "
                                   "history.json, history.csv and plots/*.png.")
    _add_backend_flag(p, "torch, or run.json's with --resume")
    _add_data_flags(p, default=None)
    p.add_argument("--binarize", choices=["static"], default=None,
                   help="statically binarize the pixels (one Bernoulli draw per pixel, fixed by --seed)")
    p.add_argument("--config", type=Path, default=None, help="TOML or YAML file with [spec], [train], [run] tables")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<dataset>-<backend>)")
    _add_device_flag(p)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"fp32 (default), or bf16 mixed precision: bfloat16 compute, float32 weights, loss and Adam "
                        f"{applies_suffix('--precision')}")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/last.safetensors (either backend wrote it) up to --epochs in total")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out: its files (checkpoints, run.json, history, plots) are removed "
                        "once every argument has passed, before training; without it (or --resume) a folder that "
                        "holds a run is refused")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help=f"{nproc_help()} {applies_suffix('--nproc')}")
    p.add_argument("--no-plots", action="store_true", help="skip the plots at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of a training step; default: auto, the CPUs other processes leave idle (torch "
                        f"follows them each second; tf keeps its own pools) {applies_suffix('--threads')}")
    p.add_argument("--no-memory-check", action="store_true",
                   help="train even when the memory estimate says the model does not fit in what this process can "
                        "have (vae_core.system.memory); by default such a run is refused before anything is written")
    _add_tensorboard_flag(p, "DIR/train and DIR/validation")
    p.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="log the run to MLflow: params, epoch metrics, then plots and best.safetensors as artifacts; "
                        "to the local store ./mlruns (or $MLFLOW_TRACKING_URI), or to URI (a folder, http(s)://...); "
                        "experiment vae-core, or $MLFLOW_EXPERIMENT_NAME; needs the mlflow extra")
    add_field_flags(p)

    p = sub.add_parser("evaluate", help="test -ELBO, recon, KL, IWAE NLL and active units of a checkpoint")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--k", type=int, default=100, help="importance samples for the IWAE NLL; 0 skips it (default 100)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    _add_device_flag(p)

    p = sub.add_parser("score", help="a score per example (-log p(x), nats) as a CSV and a histogram; with "
                                     "--reference, a threshold and flags",
                       description="Score every example of --data or --dataset (or the checkpoint's run.json data) "
                                   "with the checkpoint's model: the importance-weighted estimate of -log p(x) in "
                                   "nats (higher: less likely). Writes --out (a CSV, one row per example) and a "
                                   "histogram PNG beside it. A poor outlier test on its own: another dataset of "
                                   "simpler images can score as more likely than the model's own test set.")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("--split", choices=["test", "train", "all"], default=None,
                   help="which examples: a dataset's test or train split (default test), or with --data every "
                        "image of the folder or file (all, its default) or load_images' split (test, train)")
    p.add_argument("--k", type=int, default=100, help="importance samples per example; 1 is the one-sample "
                                                      "negative ELBO (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (the same scores in every backend)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="score the first N examples only (of the data and of the reference)")
    p.add_argument("--reference", default=None, metavar="NAME|PATH",
                   help="examples the model should find typical, scored the same way: a dataset's test split, or "
                        "every image of a folder or .npy/.npz; draws its histogram and flags each example above "
                        "the --quantile of its scores")
    p.add_argument("--quantile", type=float, default=None, metavar="Q",
                   help="with --reference: the threshold is this quantile of the reference scores (default 0.99)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.csv",
                   help="the CSV to write (index, file, label, class, score, flagged); the histogram goes beside "
                        "it as FILE.png")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and its PNG) if they exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device_flag(p)

    p = sub.add_parser("sample", help="draw samples from the prior of a checkpoint's model")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    p.add_argument("-n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("-o", "--output", type=Path, default=Path("samples.png"), help="PNG grid (default samples.png)")
    p.add_argument("--npy", type=Path, default=None, help="also save the (n, D) samples as .npy")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("reconstruct", help="originals above, reconstructions below")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("-n", type=int, default=10, help="number of test images (default 10)")
    p.add_argument("-o", "--output", type=Path, default=Path("reconstructions.png"))
    p.add_argument("--npy", type=Path, default=None, help="also save the (n, D) reconstructions as .npy")

    p = sub.add_parser("plot", help="every plot of a checkpoint: reconstructions, samples, latents, t-SNE, ...")
    p.add_argument("checkpoint", type=Path)
    _add_backend_flag(p, "the one that wrote the checkpoint")
    _add_data_flags(p, default=None)
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: plots/ beside the checkpoint)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("compare", help="train two or more backends side by side and plot their curves",
                       description="Train the --backends (default torch and tf) with the same spec, config, data and "
                                   "seed; write compare.png, compare.md and compare.json into --out.")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), metavar="A,B[,...]",
                   help=f"the backends to train, two or more of {', '.join(BACKENDS)}, comma-separated; the first is "
                        f"the reference the others' differences are taken against (default: "
                        f"{','.join(DEFAULT_BACKENDS)})")
    _add_data_flags(p, default="mnist-5k", own_images=False)
    p.add_argument("--same-init", action="store_true", help="start both from one neutral checkpoint (init.safetensors)")
    p.add_argument("--lockstep", action="store_true",
                   help="also feed both the same noise (the parity suite's shared eps); implies --same-init")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the comparison in --out (its runs, one folder per backend, and init.safetensors); "
                        "without it a folder that holds one is refused")
    p.add_argument("--config", type=Path, default=None, help="TOML or YAML file with [spec] and [train] tables")
    _add_device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_tensorboard_flag(p, "DIR/BACKEND/train and DIR/BACKEND/validation, one run per backend, so TensorBoard "
                             "overlays the backends' curves")
    add_field_flags(p)
    p = sub.add_parser("export", help="a checkpoint as ONNX, a TF SavedModel, LiteRT, torch.export or jax.export "
                                      "files, verified",
                       description="Export a checkpoint of either backend to --format, into the new or empty folder "
                                   "--out: the deterministic encoder (x -> mean, log_var) and decoder (z -> the "
                                   "decoder's mean), a dynamic batch, and export.json. Each file is then run in its "
                                   "runtime and compared with the NumPy reference of the checkpoint (exit 1, and "
                                   "nothing written, past the tolerance). See docs/deploy.md.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", required=True, choices=tuple(FORMATS),
                   help="onnx (encoder.onnx, decoder.onnx), saved_model (a TF SavedModel with signatures encode and "
                        "decode), litert (encoder.tflite, decoder.tflite), torch_export (encoder.pt2, decoder.pt2) or "
                        "jax_export (encoder.jax_export, decoder.jax_export: serialized jax.export modules)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder to write into")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running the files in their runtime against the NumPy reference")
    return parser

