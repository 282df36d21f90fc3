"""Benchmark the torch backend's training loop against a loop in the seed's style (section 3.1/3.4).

Trains the default model (784-400-400-20, Bernoulli, Adam 1e-3, batch 128) on full Fashion-MNIST for
--epochs epochs in three variants, each in its own subprocess so peak memory is measured per variant:

- reference: the seed's style: a torch.utils.data.DataLoader over a per-sample Dataset that turns each
  uint8 image into a float tensor, the batch moved to the device each step, `.item()` on every step's
  losses, torch.optim.Adam with its defaults; the same model size, the same initial weights and the
  same shuffled order as ours (only the reparameterisation noise streams differ);
- ours fp32: `backends.torch.fit(..., precision="fp32")`;
- ours bf16: `backends.torch.fit(..., precision="bf16")` (autocast; loss and Adam in float32).

Reports seconds/epoch, images/second, peak memory (CPU: the worker's peak RSS; CUDA: the peak of
torch.cuda.max_memory_allocated), and the test loss after training (`backends.torch.evaluate`, the same
fixed noise for all), with ratios against the reference. Writes a Markdown table and JSON under --out.

    .venv/bin/python scripts/bench_torch.py                 # 3 epochs, full Fashion-MNIST
    .venv/bin/python scripts/bench_torch.py --epochs 1 --limit 6000   # a quick sanity run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import cpu_name  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = ("reference", "fp32", "bf16")
# Targets of the issue, on the CPU: images/s ratio vs the reference and |test loss - reference's| in nats.
TARGETS = {"fp32": (1.5, 0.5), "bf16": (2.5, 1.0)}


# ---------------------------------------------------------------- data


def load_data(limit: int | None):
    from vae_core.data import load_dataset

    try:
        data, note = load_dataset("fashion-mnist"), ""
    except FileNotFoundError as e:
        note = (f"Fashion-MNIST is not available ({e}); FELL BACK to the offline 'mnist-5k' "
                f"(4,000 train images): the timings are NOT comparable with a Fashion-MNIST run")
        print(f"WARNING: {note}", file=sys.stderr)
        data = load_dataset("mnist-5k")
    x_train, x_test = data.x_train, data.x_test
    if limit is not None:
        x_train, x_test = x_train[:limit], x_test[:limit]
    return data.name, x_train, x_test, note


# ---------------------------------------------------------------- the seed-style reference loop


def run_reference(x_train: np.ndarray, spec, args, device):
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from vae_core import init_weights
    from vae_core.training import epoch_permutation

    class PerSample(Dataset):
        """uint8 images, converted to a float tensor in [0, 1] one item at a time (like ToTensor)."""

        def __init__(self, images: np.ndarray) -> None:
            self.images = images

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, i: int):
            return torch.from_numpy(self.images[i]).float().div(255.0), 0

    class SeedVAE(nn.Module):
        def __init__(self, d: int, h: tuple[int, ...], k: int) -> None:
            super().__init__()
            enc, width = [], d
            for w in h:
                enc += [nn.Linear(width, w), nn.ReLU()]
                width = w
            self.encoder = nn.Sequential(*enc)
            self.fc_mu, self.fc_log_var = nn.Linear(width, k), nn.Linear(width, k)
            dec, width = [], k
            for w in reversed(h):
                dec += [nn.Linear(width, w), nn.ReLU()]
                width = w
            self.decoder = nn.Sequential(*dec, nn.Linear(width, d))

        def forward(self, x):
            h = self.encoder(x)
            mu, log_var = self.fc_mu(h), self.fc_log_var(h)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            return self.decoder(z), mu, log_var

        def neutral_layers(self):
            n = len(spec.hidden_dims)
            layers = {f"encoder.{i}": self.encoder[2 * i] for i in range(n)}
            layers.update({"encoder.mu": self.fc_mu, "encoder.log_var": self.fc_log_var})
            layers.update({f"decoder.{i}": self.decoder[2 * i] for i in range(n)})
            layers["decoder.out"] = self.decoder[2 * n]
            return layers

    class EpochOrder(torch.utils.data.Sampler):
        """shuffle=True, but in the order our loop uses (epoch_permutation): the same batches as ours."""

        def __init__(self, n: int) -> None:
            self.n, self.epoch = n, 0

        def __len__(self) -> int:
            return self.n

        def __iter__(self):
            order = epoch_permutation(args.seed, self.epoch, self.n)
            self.epoch += 1
            return iter(order.tolist())

    torch.manual_seed(args.seed)
    model = SeedVAE(spec.input_dim, spec.hidden_dims, spec.latent_dim)
    init = init_weights(spec, args.seed)  # the same initial weights as our variants
    with torch.no_grad():
        for name, layer in model.neutral_layers().items():
            layer.weight.copy_(torch.from_numpy(init[f"{name}.kernel"].T))
            layer.bias.copy_(torch.from_numpy(init[f"{name}.bias"]))
    model.to(device)
    images = np.round(x_train * 255.0).astype(np.uint8)  # the raw pixels, as the seed's dataset holds them
    loader = DataLoader(PerSample(images), batch_size=args.batch_size, sampler=EpochOrder(len(images)),
                        num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    _sync(device)
    start = time.perf_counter()
    epoch_seconds = []
    for _ in range(args.epochs):
        epoch_start = time.perf_counter()
        model.train()
        total = 0.0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            logits, mu, log_var = model(data)
            recon = F.binary_cross_entropy_with_logits(logits, data, reduction="sum") / data.size(0)
            kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp()) / data.size(0)
            loss = recon + kl
            loss.backward()
            optimizer.step()
            total += loss.item()
            recon.item()
            kl.item()
        _sync(device)
        epoch_seconds.append(time.perf_counter() - epoch_start)
    seconds = time.perf_counter() - start

    weights = {}
    for name, layer in model.neutral_layers().items():
        weights[f"{name}.kernel"] = np.ascontiguousarray(layer.weight.detach().cpu().numpy().T)
        weights[f"{name}.bias"] = layer.bias.detach().cpu().numpy().copy()
    return seconds, epoch_seconds, weights


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- one variant per process


def worker(args) -> dict:
    import torch

    from backends.torch import build_model, evaluate, fit, weights
    from backends.torch.train import resolve_device
    from vae_core import TrainConfig, VAESpec

    device = resolve_device(args.device)
    dataset, x_train, x_test, note = load_data(args.limit)
    spec = VAESpec(input_dim=x_train.shape[1])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.worker == "reference":
        seconds, epoch_seconds, trained = run_reference(x_train, spec, args, device)
        model = weights.import_weights(build_model(spec, seed=args.seed), trained)
    else:
        model = build_model(spec, seed=args.seed)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        _sync(device)
        start = time.perf_counter()
        history = fit(model, x_train, None, config, device=args.device, precision=args.worker, progress=False)
        _sync(device)
        seconds, epoch_seconds = time.perf_counter() - start, history["seconds"]
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process"
    test = evaluate(model, x_test, seed=0, device=args.device)
    n = len(x_train)
    return {"variant": args.worker, "dataset": dataset, "dataset_note": note, "n_train": n, "n_test": len(x_test),
            "epochs": args.epochs, "train_seconds": seconds, "epoch_seconds": epoch_seconds, "seconds_per_epoch": seconds / args.epochs,
            "images_per_second": n * args.epochs / seconds, "peak_memory_mib": peak, "memory_measure": kind,
            "test_loss": test["loss"], "test_recon": test["recon"], "test_kl": test["kl"],
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- report


def median_run(runs: list[dict]) -> dict:
    """One variant over its rounds: the run with the median time per epoch, listing every round's time.
    Training is deterministic on the CPU, so the test loss is the same in every round."""
    ordered = sorted(runs, key=lambda r: r["seconds_per_epoch"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_seconds_per_epoch"] = [r["seconds_per_epoch"] for r in runs]
    chosen["peak_memory_mib"] = max(r["peak_memory_mib"] for r in runs)
    return chosen


def report(results: list[dict], args, command: str) -> tuple[str, dict]:
    ref = next((r for r in results if r["variant"] == "reference"), None)
    rows = []
    for r in results:
        speedup = r["images_per_second"] / ref["images_per_second"] if ref else None
        delta = r["test_loss"] - ref["test_loss"] if ref else None
        r["speedup_vs_reference"], r["test_loss_minus_reference"] = speedup, delta
        target = TARGETS.get(r["variant"])
        if target and ref:
            r["target"] = {"min_speedup": target[0], "max_abs_loss_delta": target[1],
                           "met": bool(speedup >= target[0] and abs(delta) <= target[1])}
        rows.append(r)
    first = results[0]
    device = first["device"]
    title = {"reference": "reference (seed style)", "fp32": "ours fp32", "bf16": "ours bf16 (autocast)"}
    lines = [
        f"# torch training loop benchmark ({device})", "",
        f"Command: `{command}`", "",
        f"Data: {first['dataset']}, {first['n_train']} train / {first['n_test']} test images; "
        f"{first['epochs']} epoch(s), batch {args.batch_size}, seed {args.seed}; model 784-400-400-20 Bernoulli, "
        f"Adam 1e-3.",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU(s), torch {first['torch']} with {first['threads']} threads, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Memory: {first['memory_measure']}. Test loss: negative ELBO per image (nats), fixed eval noise.", "",
    ]
    if first["dataset_note"]:
        lines += [f"**{first['dataset_note']}**", ""]
    if len(first.get("rounds_seconds_per_epoch", [])) > 1:
        lines += [f"Rounds: {len(first['rounds_seconds_per_epoch'])}, the variants interleaved; each row is the "
                  f"variant's median round (s/epoch of every round in the last column).", ""]
    lines += ["| variant | s/epoch | images/s | speedup | peak memory (MiB) | test loss | Δ loss vs ref | target | rounds (s/epoch) |",
              "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        target = r.get("target")
        verdict = "" if not target else (f"≥{target['min_speedup']}x, ±{target['max_abs_loss_delta']}: "
                                         + ("met" if target["met"] else "NOT met"))
        speed = "" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
        delta = "" if r["test_loss_minus_reference"] is None else f"{r['test_loss_minus_reference']:+.2f}"
        lines.append(f"| {title[r['variant']]} | {r['seconds_per_epoch']:.2f} | {r['images_per_second']:,.0f} | "
                     f"{speed} | {r['peak_memory_mib']:.0f} | {r['test_loss']:.2f} | {delta} | {verdict} | "
                     f"{', '.join(f'{v:.2f}' for v in r.get('rounds_seconds_per_epoch', []))} |")
    payload = {"command": command, "batch_size": args.batch_size, "seed": args.seed, "cpu": cpu_name(),
               "results": rows}
    return "\n".join(lines) + "\n", payload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="training epochs per variant (default 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--out", type=Path, default=ROOT / "scripts" / "results", help="folder for the .md and .json")
    p.add_argument("--limit", type=int, default=None, help="use only the first N train (and test) images")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="run the variants this many times, interleaved, and report each one's median epoch time "
                        "(a shared machine's noise hits every variant alike)")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epochs < 1 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs, --rounds and --limit must be >= 1")

    if args.worker:
        args.result_file.write_text(json.dumps(worker(args)))
        return

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"--variants must be a comma-separated subset of {VARIANTS}; got {args.variants!r}")
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    command = shlex.join([python, *sys.argv])
    passthrough = ["--epochs", str(args.epochs), "--device", args.device, "--batch-size", str(args.batch_size),
                   "--seed", str(args.seed)] + ([] if args.limit is None else ["--limit", str(args.limit)])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for variant in variants:
                result_file = Path(tmp) / f"{variant}-{round_}.json"
                print(f"== {variant} (round {round_ + 1}/{args.rounds}) ...", flush=True)
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", variant,
                                "--result-file", str(result_file), *passthrough], check=True, cwd=ROOT)
                r = json.loads(result_file.read_text())
                print(f"   {r['seconds_per_epoch']:.2f} s/epoch, {r['images_per_second']:,.0f} images/s, "
                      f"peak {r['peak_memory_mib']:.0f} MiB, test loss {r['test_loss']:.2f}", flush=True)
                runs[variant].append(r)
    results = [median_run(rs) for rs in runs.values()]
    text, payload = report(results, args, command)
    args.out.mkdir(parents=True, exist_ok=True)
    device = results[0]["device"].split(":")[0]
    stem = f"bench_torch_{device}" + ("" if args.limit is None else f"_limit{args.limit}")
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    print()
    print(text)
    print(f"wrote {args.out / stem}.md and .json")


if __name__ == "__main__":
    main()
