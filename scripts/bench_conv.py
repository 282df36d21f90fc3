"""Benchmark the conv VAE: quality after N epochs and epoch time, both backends, against a hand-written torch loop.

The model (issue 18's prototype by default): two stride-2 4x4 convolutions of 32 and 64 channels, a 256-unit dense
layer and 20 latents, mirrored with transposed convolutions; Bernoulli decoder on the grey levels; Adam 1e-3,
batch 128; full Fashion-MNIST (60,000 train / 10,000 test).

- loop: the same network written the plain PyTorch way (nn.Conv2d(padding=1), nn.ConvTranspose2d(padding=1),
  torch.optim.Adam, F.binary_cross_entropy_with_logits summed over pixels, a randperm per epoch), on float32 data;
- torch: `vae_core.fit` on the torch backend, on the uint8 pixels (x / 255 per batch);
- tf: `vae_core.fit` on the TF backend, the same.

Each runs in its own child process, one after the other, so peak RSS is per variant and one does not slow the
other. Epoch time is the training steps only (no validation pass). Test -ELBO: one sample per image with fixed
noise on the 10,000 test images (`vae_core.evaluate`; the loop's weights are scored by the same formula);
IWAE NLL (`vae_core.metrics.iwae_nll`) on the first --iwae-images test images.

    .venv/bin/python -m scripts.bench_conv --epochs 20 --out                  # the committed run
    .venv/bin/python -m scripts.bench_conv --epochs 2 --limit 6000 --iwae-k 0  # a quick check
    .venv/bin/python -m scripts.bench_conv --variants torch --conv-channels 32,64,128 --out bench_conv_32_64_128
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
VARIANTS = ("loop", "torch", "tf")
TARGET_LOSS, TARGET_LOOP_RATIO = 238.5, 1.1  # test -ELBO after 20 epochs; torch's time over the loop's


def _data(limit: int | None, dtype: str):
    from vae_core.data import load_dataset

    data = load_dataset("fashion-mnist", data_dir=ROOT / ".data" if (ROOT / ".data").is_dir() else None,
                        dtype=dtype)
    x_train, x_test = data.x_train, data.x_test
    if limit:
        x_train, x_test = x_train[:limit], x_test[:max(1000, limit // 6)]
    return x_train, x_test


def _spec(args):
    from vae_core import VAESpec

    return VAESpec(architecture="conv", image_shape=(28, 28), conv_channels=tuple(args.conv_channels),
                   hidden_dims=tuple(args.hidden_dims), latent_dim=20)


# ----------------------------------------------------------------------------------------------- children
def _run_loop(args) -> dict:
    """The hand-written PyTorch loop; its trained weights are moved into a vae_core model for scoring."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from backends.torch.weights import native_parameters
    from vae_core import build

    spec = _spec(args)
    x_train, x_test = _data(args.limit, "float32")
    torch.manual_seed(args.seed)
    chans = (1, *spec.conv_channels)

    class ConvVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
            side = 28 // 2 ** len(spec.conv_channels)
            self.map = (chans[-1], side, side)
            widths = (chans[-1] * side * side, *spec.hidden_dims)
            self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
            self.mu, self.log_var = nn.Linear(widths[-1], 20), nn.Linear(widths[-1], 20)
            back = (20, *reversed(widths))
            self.dfc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back, back[1:]))
            rev = tuple(reversed(chans))
            self.dec = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(rev, rev[1:]))

        def forward(self, x):
            h = x.view(-1, 1, 28, 28)
            for conv in self.enc:
                h = F.relu(conv(h))
            h = h.flatten(1)
            for fc in self.fc:
                h = F.relu(fc(h))
            mu, log_var = self.mu(h), self.log_var(h)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            h = z
            for fc in self.dfc:
                h = F.relu(fc(h))
            h = h.view(-1, *self.map)
            for i, conv in enumerate(self.dec):
                h = conv(h)
                h = F.relu(h) if i < len(self.dec) - 1 else h
            return h.flatten(1), mu, log_var

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where `fit`'s device="auto" runs
    net = ConvVAE().to(device)
    # The same initial weights as ours: a vae_core model's parameters, in torch's layouts, are in the loop's order
    # (encoder convs, dense, mu, log_var, decoder dense, transposed convs) and flatten the map as it does.
    ours = build("torch", spec, seed=args.seed)
    pairs = list(zip(net.parameters(), native_parameters(ours).values()))
    with torch.no_grad():
        for mine, theirs in pairs:
            mine.copy_(theirs.to(device))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(x_train).to(device)
    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), 128):
            xb = x[perm[i:i + 128]]
            out, mu, log_var = net(xb)
            recon = F.binary_cross_entropy_with_logits(out, xb, reduction="sum") / len(xb)
            kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp()) / len(xb)
            loss = recon + kl
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    with torch.no_grad():  # the loop's weights into our model, to score both the same way
        for mine, theirs in pairs:
            theirs.copy_(mine.cpu())
    return {"seconds": seconds, **_score(ours, x_test, args)}


def _run_ours(backend: str, args) -> dict:
    from vae_core import TrainConfig, build, fit

    x_train, x_test = _data(args.limit, "uint8")
    model = build(backend, _spec(args), seed=args.seed)
    history = fit(model, x_train, None, TrainConfig(epochs=args.epochs, seed=args.seed), progress=False)
    return {"seconds": history["seconds"], "train_loss": history["train_loss"], **_score(model, x_test, args)}


def _score(model, x_test, args) -> dict:
    """Test -ELBO and IWAE of the trained model, which is also saved for `vae plot` (git-ignored runs/)."""
    from vae_core import evaluate
    from vae_core.registry import save_checkpoint
    from vae_core.metrics import iwae_nll

    saved = ROOT / "runs" / "bench_conv" / "-".join(map(str, (*args.conv_channels, "h", *args.hidden_dims))) / \
        f"{args.child}.safetensors"
    saved.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(saved, model, epoch=args.epochs)
    out = {"test": evaluate(model, x_test, seed=0), "checkpoint": str(saved.relative_to(ROOT))}
    if args.iwae_k:
        start = time.perf_counter()
        r = iwae_nll(model, x_test[:args.iwae_images], k=args.iwae_k, seed=0)
        out["iwae"] = {"nll": r.nll, "stderr": r.stderr, "k": r.k, "n": r.n,
                       "seconds": time.perf_counter() - start}
    return out


def child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = _run_loop(args) if args.child == "loop" else _run_ours(args.child, args)
    result.update(variant=args.child, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.child_out.write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------- parent
def _versions() -> dict:
    import numpy as np

    out = {"numpy": np.__version__}
    for module in ("torch", "tensorflow"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            out[module] = None
    return out


def markdown(cmd: str, meta: dict, runs: dict) -> str:
    spec = meta["spec"]
    lines = ["# Conv VAE benchmark", "", f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']}, {os.cpu_count()} cores; NumPy {meta['versions']['numpy']}, torch "
             f"{meta['versions']['torch']}, TensorFlow {meta['versions']['tensorflow']}; {meta['date']}.", "",
             f"Model: conv_channels {tuple(spec['conv_channels'])}, kernel {spec['kernel_size']}, hidden_dims "
             f"{tuple(spec['hidden_dims'])}, latent_dim {spec['latent_dim']} ({meta['num_params']:,} parameters); "
             f"Bernoulli decoder on grey levels; Adam 1e-3, batch 128, seed {meta['seed']}; Fashion-MNIST "
             f"{meta['n_train']:,} train / {meta['n_test']:,} test images, {meta['epochs']} epochs.", "",
             "| variant | s/epoch (median of epochs 2+) | images/s | first epoch (s) | peak RSS (MiB) | test -ELBO | "
             "IWAE NLL | epoch times (s) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in runs.items():
        steady = statistics.median(r["seconds"][1:] or r["seconds"])
        iwae = (f"{r['iwae']['nll']:.2f} ± {r['iwae']['stderr']:.2f} (k={r['iwae']['k']}, {r['iwae']['n']:,} images)"
                if "iwae" in r else "-")
        lines.append(f"| {name} | {steady:.2f} | {meta['n_train'] / steady:.0f} | {r['seconds'][0]:.2f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['test']['loss']:.2f} | {iwae} | "
                     f"{', '.join(f'{t:.1f}' for t in r['seconds'])} |")
    lines.append("")
    steady = {n: statistics.median(r["seconds"][1:] or r["seconds"]) for n, r in runs.items()}
    if "loop" in steady and "torch" in steady:
        ratio = steady["torch"] / steady["loop"]
        lines.append(f"- torch / loop epoch time: **{ratio:.2f}x** (target <= {TARGET_LOOP_RATIO}x): "
                     f"{'met' if ratio <= TARGET_LOOP_RATIO else 'NOT met'}.")
    if "tf" in steady and "torch" in steady:
        ratio = steady["tf"] / steady["torch"]
        lines.append(f"- tf / torch epoch time: **{ratio:.2f}x** (target <= 1.0x): "
                     f"{'met' if ratio <= 1.0 else 'NOT met'}.")
    for name, r in runs.items():
        loss = r["test"]["loss"]
        lines.append(f"- {name} test -ELBO {loss:.2f} after {meta['epochs']} epochs (target <= {TARGET_LOSS}): "
                     f"{'met' if loss <= TARGET_LOSS else 'NOT met'}.")
    lines += ["", "Epoch time is the training steps of the epoch (no validation). Variants ran one after another "
              "in their own processes on a shared machine: compare them by ratios of the same run. The loop "
              "trains on float32 pixels, ours on the uint8 pixels (x / 255 per batch), which is most of the RSS "
              "difference. Test -ELBO: one sample per image, fixed noise (`vae_core.evaluate(seed=0)`), the loop's "
              "weights scored by the same function.", ""]
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 32,64; got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive ints; got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS),
                   help=f"comma-separated, of {','.join(VARIANTS)}")
    p.add_argument("--conv-channels", type=_int_list, default=[32, 64])
    p.add_argument("--hidden-dims", type=_int_list, default=[256])
    p.add_argument("--iwae-k", type=int, default=1000, help="IWAE samples per image (0: no IWAE)")
    p.add_argument("--iwae-images", type=int, default=1000, help="IWAE on the first N test images")
    p.add_argument("--out", nargs="?", const="bench_conv", default=None, metavar="NAME",
                   help="write NAME.md and NAME.json into --results-dir")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where --out writes (default scripts/results)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(v not in VARIANTS for v in args.variants):
        p.error(f"--variants must be a comma-separated list of {','.join(VARIANTS)}; got {','.join(args.variants)}")
    if args.child:
        child(args)
        return 0
    if "loop" in args.variants and 28 % 2 ** len(args.conv_channels):
        p.error("the loop variant needs 28 to halve evenly through every conv (at most 2 of them)")

    argv = sys.argv[1:] if argv is None else argv
    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "scripts.bench_conv", *argv])
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            out = Path(tmp) / f"{variant}.json"
            rest = [a for a in argv if a not in ("--out", "--results-dir", str(args.results_dir))
                    and not (args.out and a == args.out)]
            subprocess.run([sys.executable, "-m", "scripts.bench_conv", *rest, "--child", variant,
                            "--child-out", str(out)], check=True, cwd=ROOT)
            runs[variant] = json.loads(out.read_text())
            print(f"{variant}: {runs[variant]['seconds']} test {runs[variant]['test']['loss']:.2f}", file=sys.stderr)
    spec = _spec(args)
    x_train, x_test = _data(args.limit, "uint8")
    meta = {"machine": cpu_name(), "versions": _versions(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "spec": spec.to_dict(), "num_params": spec.num_params, "seed": args.seed, "epochs": args.epochs,
            "n_train": len(x_train), "n_test": len(x_test)}
    text = markdown(cmd, meta, runs)
    print(text)
    if args.out:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / f"{args.out}.md").write_text(text)
        (args.results_dir / f"{args.out}.json").write_text(json.dumps({"command": cmd, "meta": meta, "runs": runs},
                                                                      indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
