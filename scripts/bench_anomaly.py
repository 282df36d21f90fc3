"""Per-example scores (`vae_core.score`, −log p̂(x) in nats) as an outlier test, and where it fails.

The default model (784-400-400-20, Bernoulli, `TrainConfig` defaults but --epochs) is trained on Fashion-MNIST's
training split without one class (--holdout, default 0: T-shirt/top), in each backend, from the same seed. Each
backend's model scores, in that backend, Fashion-MNIST's 10,000 test images and the 1,000 test images of the
offline MNIST digits (`load_dataset("mnist-5k")`), with k = 1 (the one-sample negative ELBO) and k = 100
importance samples (--k100-limit scores only the first N images of each set at k = 100). Reported:

- the AUROC (scikit-learn's `roc_auc_score`) of the held-out class's test images against the other nine classes'
  test images, a higher score meaning "outlier": 1.0 separates them perfectly, 0.5 is chance, below 0.5 the
  held-out class looks *more* typical than the classes the model saw;
- the AUROC of the MNIST digits against those nine classes' test images: the known failure of VAE likelihoods
  (Nalisnick et al. 2019, "Do deep generative models know what they don't know?"): simpler images, mostly
  black background, score as more likely than the data the model was trained on;
- the mean score of each Fashion-MNIST test class and of MNIST, and the torch checkpoint scored in TF (the same
  scores, to float32 rounding).

With --out it also runs `vae score` on the torch model (MNIST's test images, with Fashion-MNIST's test split as
--reference, k = 100) and copies its histogram to docs/gallery/scores.png.

    .venv/bin/python -m scripts.bench_anomaly --epochs 1 --limit 3000 --k100-limit 300   # quick check, prints
    .venv/bin/python -m scripts.bench_anomaly --out       # the committed run: scripts/results/bench_anomaly.*
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
GALLERY = ROOT / "docs" / "gallery" / "scores.png"
KS = (1, 100)
SEED = 0


def _version(*distributions: str) -> str:
    """The installed version of the first of `distributions` found (tensorflow-cpu or tensorflow, say)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in distributions:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def _auroc(outliers: np.ndarray, inliers: np.ndarray) -> float:
    """AUROC of `outliers` (positives) against `inliers`, the score itself the decision value (higher: outlier)."""
    from sklearn.metrics import roc_auc_score

    truth = np.concatenate([np.ones(len(outliers)), np.zeros(len(inliers))])
    return float(roc_auc_score(truth, np.concatenate([outliers, inliers])))


def _run_backend(backend: str, x_train: np.ndarray, fashion, mnist, args) -> tuple[dict, object]:
    """Train `backend`'s default model on x_train, score both test sets at each k: (its results, the model)."""
    import vae_core

    start = time.perf_counter()
    model = vae_core.build(backend, vae_core.VAESpec(), seed=SEED)
    history = vae_core.fit(model, x_train, None, vae_core.TrainConfig(epochs=args.epochs, seed=SEED),
                           progress=False)
    result = {"train_seconds": time.perf_counter() - start, "final_train_loss": history["train_loss"][-1],
              "k": {}}
    print(f"{backend}: trained {args.epochs} epochs in {result['train_seconds']:.0f} s, train loss "
          f"{result['final_train_loss']:.2f}", flush=True)
    for k in KS:
        n_f, n_m = len(fashion.x_test), len(mnist.x_test)
        if k > 1 and args.k100_limit:
            n_f, n_m = min(n_f, args.k100_limit), min(n_m, args.k100_limit)
        start = time.perf_counter()
        f_scores = vae_core.score(model, fashion.x_test[:n_f], k=k, seed=SEED)  # (n_f,)
        m_scores = vae_core.score(model, mnist.x_test[:n_m], k=k, seed=SEED)  # (n_m,)
        y = fashion.y_test[:n_f]
        held, seen = f_scores[y == args.holdout], f_scores[y != args.holdout]
        result["k"][k] = {
            "score_seconds": time.perf_counter() - start, "n_fashion": n_f, "n_mnist": n_m,
            "auroc_holdout": _auroc(held, seen), "auroc_mnist": _auroc(m_scores, seen),
            "mean_score": {**{fashion.class_names[c]: float(f_scores[y == c].mean()) for c in range(10)},
                           "MNIST (mnist-5k test)": float(m_scores.mean())},
            "flagged_at_seen_q99": {"holdout": float((held > np.quantile(seen, 0.99)).mean()),
                                    "mnist": float((m_scores > np.quantile(seen, 0.99)).mean())}}
        r = result["k"][k]
        print(f"  k={k}: AUROC held-out {r['auroc_holdout']:.3f}, MNIST {r['auroc_mnist']:.3f} "
              f"({r['score_seconds']:.0f} s)", flush=True)
    return result, model


def _cross_backend(torch_model, checkpoint: Path, fashion) -> dict:
    """The torch model's checkpoint scored in TF at k = 100: the largest relative difference from torch's scores."""
    import vae_core

    x = fashion.x_test[:1000]
    a = vae_core.score(torch_model, x, k=100, seed=SEED)
    b = vae_core.score(vae_core.load_checkpoint(checkpoint, backend="tf"), x, k=100, seed=SEED)
    return {"n": len(x), "k": 100, "max_rel_diff": float(np.max(np.abs(b - a) / np.abs(a)))}


def _gallery(checkpoint: Path, tmp: Path) -> dict:
    """`vae score` on the torch checkpoint: MNIST's test images, Fashion-MNIST's test split as the reference."""
    import contextlib
    import io

    from vae_core.cli import main

    argv = ["score", str(checkpoint), "--dataset", "mnist-5k", "--reference", "fashion-mnist", "--k", "100",
            "--backend", "torch", "--no-progress", "--out", str(tmp / "scores.csv")]
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        status = main(argv)
    if status != 0:
        raise RuntimeError(f"vae score exited {status}")
    GALLERY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp / "scores.png", GALLERY)
    shown = ["vae", argv[0], "torch.safetensors", *argv[2:-2], "--out", "scores.csv"]  # not the temporary folder's
    return {"command": shlex.join(shown), "output": said.getvalue().strip()}


def markdown(cmd: str, meta: dict, results: dict, cross: dict | None, gallery: dict | None) -> str:
    holdout = meta["holdout_name"]
    lines = ["# VAE scores as an outlier test", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']}, shared with other work (load average {meta['load_average_before']:.1f} "
             f"before the run, {meta['load_average_after']:.1f} after); torch {meta['torch']}, TensorFlow "
             f"{meta['tensorflow']}; torch on {meta['torch_threads']} thread(s); {meta['date']}.",
             "",
             f"Model: the default `VAESpec()` (784-400-400-20, Bernoulli decoder), `TrainConfig(epochs="
             f"{meta['epochs']}, seed={SEED})` (batch 128, Adam 1e-3), trained in each backend on the "
             f"{meta['n_train']:,} Fashion-MNIST training images of the nine classes other than {meta['holdout']} "
             f"({holdout}), no validation set. Scores: `vae_core.score(model, x, k=k, seed={SEED})`, −log p̂(x) "
             f"in nats, in the backend that trained the model. Test sets: Fashion-MNIST's 10,000 test images, and "
             f"the 1,000 test images of MNIST (`load_dataset(\"mnist-5k\")`)"
             + (f"; at k = 100, the first {meta['k100_limit']} of each." if meta["k100_limit"] else "."), "",
             f"AUROC: a higher score counts as \"outlier\". *Held-out*: the {holdout} test images against the "
             f"other nine classes' test images. *MNIST*: the MNIST test images against those nine classes' test "
             f"images. 1.0 separates perfectly, 0.5 is chance, below 0.5 the outliers score as *more* likely than "
             f"the data. Flagged: the share above the 0.99 quantile of the nine classes' test scores.", "",
             "| backend | k | AUROC held-out " + holdout + " | AUROC MNIST vs Fashion | held-out flagged | MNIST "
             "flagged | train (s) | scoring (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for backend, r in results.items():
        for k, s in r["k"].items():
            lines.append(f"| {backend} | {k} | **{s['auroc_holdout']:.3f}** | **{s['auroc_mnist']:.3f}** | "
                         f"{100 * s['flagged_at_seen_q99']['holdout']:.1f}% | "
                         f"{100 * s['flagged_at_seen_q99']['mnist']:.1f}% | {r['train_seconds']:.0f} | "
                         f"{s['score_seconds']:.0f} |")
    first = next(iter(results))
    means = {k: results[first]["k"][k]["mean_score"] for k in results[first]["k"]}
    lines += ["", f"Mean score per test set ({first}; nats, lower: more likely under the model; the held-out class "
                  f"in bold):", "", "| test set | " + " | ".join(f"k = {k}" for k in means) + " |",
              "|---|" + "---:|" * len(means)]
    for name in means[KS[0]]:
        label = f"**{name}** (held out)" if name == holdout else name
        lines.append(f"| {label} | " + " | ".join(f"{means[k][name]:.1f}" for k in means) + " |")
    if cross:
        lines += ["", f"Across backends: the torch model's checkpoint scored in TF (first {cross['n']:,} Fashion-MNIST "
                      f"test images, k = {cross['k']}): largest relative difference from torch's scores "
                      f"{cross['max_rel_diff']:.1e}."]
    lines.append("")
    if gallery:
        lines += [f"Histogram (`docs/gallery/scores.png`), on the torch model's checkpoint: `{gallery['command']}`, "
                  f"which printed:", "", "```text",
                  gallery["output"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="training epochs per backend (default 10)")
    p.add_argument("--holdout", type=int, default=0, help="the Fashion-MNIST class left out of training (default 0)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick check)")
    p.add_argument("--k100-limit", type=int, default=None, metavar="N",
                   help="at k = 100, score the first N images of each test set only")
    p.add_argument("--backends", default="torch,tf", help="comma-separated (default torch,tf; torch first)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch's threads (default 1: on a shared 2-core machine a second thread waits more than it "
                        "works)")
    p.add_argument("--out", action="store_true",
                   help="write scripts/results/bench_anomaly.md and .json, and docs/gallery/scores.png")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not 0 <= args.holdout <= 9 or args.epochs < 1 or backends[:1] != ["torch"]:
        p.error("--holdout must be in 0..9, --epochs >= 1, and --backends must start with torch")

    import vae_core
    from vae_core.data import load_dataset

    from vae_core.registry import backend_module

    for backend in backends:  # every framework imported now: a missing one fails before any training
        backend_module(backend)
    if "torch" in backends:
        import torch

        torch.set_num_threads(args.torch_threads)
    cmd = shlex.join([".venv/bin/python", "-m", "scripts.bench_anomaly", *(sys.argv[1:] if argv is None else argv)])
    fashion, mnist = load_dataset("fashion-mnist"), load_dataset("mnist-5k")
    x_train = fashion.x_train[fashion.y_train != args.holdout][:args.limit]
    meta = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "torch": _version("torch"),
            "tensorflow": _version("tensorflow-cpu", "tensorflow"), "date": time.strftime("%Y-%m-%d %H:%M"), "epochs": args.epochs,
            "holdout": args.holdout, "holdout_name": fashion.class_names[args.holdout], "n_train": len(x_train),
            "k100_limit": args.k100_limit, "seed": SEED, "torch_threads": args.torch_threads, "load_average_before": os.getloadavg()[0]}
    results, models = {}, {}
    for backend in backends:
        results[backend], models[backend] = _run_backend(backend, x_train, fashion, mnist, args)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = vae_core.save_checkpoint(Path(tmp) / "torch.safetensors", models["torch"])
        cross = _cross_backend(models["torch"], checkpoint, fashion) if "tf" in backends else None
        gallery = _gallery(checkpoint, Path(tmp)) if args.out else None
    meta["load_average_after"] = os.getloadavg()[0]
    text = markdown(cmd, meta, results, cross, gallery)
    print(text)
    if args.out:
        (RESULTS / "bench_anomaly.md").write_text(text)
        (RESULTS / "bench_anomaly.json").write_text(json.dumps(
            {"command": cmd, **meta, "results": results, "cross_backend": cross, "gallery": gallery}, indent=1))
        print(f"wrote {RESULTS}/bench_anomaly.md and .json, and {GALLERY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
