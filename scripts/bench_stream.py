"""Train on a .npy larger than the memory the process may use: `fit` reads a memory-mapped training set a batch at
a time (`vae_core.data.mapped.MappedRows`).

The script writes a uint8 .npy of random 28x28 images (--gib of them) and runs each variant in a child process
inside a Linux cgroup-v1 memory cgroup limited to --limit-gib, after dropping the file's pages from the page cache:
- torch / tf "stream": `load_images(path)` and `fit` on its `x_train`, the memory-mapped split;
- torch "in memory": the same split read into memory first (`np.asarray`), the control: it cannot fit under the
  limit, so the kernel must kill it.
The parent samples each child's resident memory (/proc/PID/status: RssAnon, the process's own allocations, and
VmHWM, its peak RSS with the mapped file's pages) every 50 ms. One epoch, batch 1024, a small MLP: the point is
the memory, not the model. Needs root for the cgroup (/sys/fs/cgroup/memory); it is not part of the test suite.

    .venv/bin/python -m scripts.bench_stream --gib 3 --limit-gib 1.5 --out   # the committed run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scripts.benchlib import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results"
CGROUP = Path("/sys/fs/cgroup/memory")
SIDE = 28  # images are SIDE x SIDE grey levels
VARIANTS = (("torch", "stream"), ("tf", "stream"), ("torch", "in memory"))


def _write_images(path: Path, gib: float) -> int:
    """A uint8 (N, 28, 28) .npy of about `gib` GiB, written in 64 MiB pieces, then dropped from the page cache."""
    n = int(gib * 2**30) // (SIDE * SIDE)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, SIDE, SIDE))
    rng, step = np.random.default_rng(0), (64 << 20) // (SIDE * SIDE)
    for lo in range(0, n, step):
        out[lo:lo + step] = rng.integers(0, 256, (min(step, n - lo), SIDE, SIDE), dtype=np.uint8)
    out.flush()
    del out
    return n


def _drop_cached(path: Path) -> None:
    """The file's pages out of the page cache, so a child reads it from disk (charged to its own cgroup) and does
    not start warm from the one before."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _child(args) -> None:
    from vae_core import TrainConfig, VAESpec, build, fit
    from vae_core.data import load_images

    data = load_images(args.data, test_fraction=0.001)
    x_train = np.asarray(data.x_train) if args.mode == "in memory" else data.x_train
    spec = VAESpec(input_dim=SIDE * SIDE, hidden_dims=(64,), latent_dim=8, image_shape=(SIDE, SIDE))
    start = time.perf_counter()
    history = fit(build(args.backend, spec, seed=0), x_train, None, TrainConfig(epochs=1, batch_size=1024),
                  progress=False, device="cpu")
    print(json.dumps({"n_train": len(data.x_train), "train_type": type(x_train).__name__,
                      "seconds": time.perf_counter() - start, "train_loss": history["train_loss"][0]}))


def _status_kib(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("RssAnon", "VmHWM")}


def _run(backend: str, mode: str, data: Path, group: Path) -> dict:
    cmd = [sys.executable, "-m", "scripts.bench_stream", "--child", "--backend", backend, "--mode", mode,
           "--data", str(data)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = group / "cgroup.procs"
    _drop_cached(data)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:  # never a full pipe
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out_file, stderr=err_file, text=True,
                                preexec_fn=lambda: procs.write_text(str(os.getpid())))  # into the cgroup, then exec
        peak = {"RssAnon": 0, "VmHWM": 0}
        while proc.poll() is None:
            for key, kib in _status_kib(proc.pid).items():
                peak[key] = max(peak[key], kib)
            time.sleep(0.05)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    result = {"backend": backend, "mode": mode, "exit": proc.returncode, "wall_s": time.perf_counter() - start,
              "peak_rss_anon_mib": peak["RssAnon"] / 1024, "peak_rss_mib": peak["VmHWM"] / 1024}
    if proc.returncode == 0:
        result.update(json.loads(out.strip().splitlines()[-1]))
    else:
        result["stderr_tail"] = err.strip().splitlines()[-1:] if err.strip() else []
    return result


def _report(results: list[dict], args, n: int, command: str) -> str:
    lines = ["# Training on a .npy larger than the memory limit", "", f"Command: `{command}`", "",
             f"Machine: {cpu_name()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}.", "",
             f"Data: {n:,} random uint8 28x28 images in one .npy, {n * SIDE * SIDE / 2**30:.2f} GiB; each child "
             f"runs in a memory cgroup limited to {args.limit_gib} GiB (page cache included). `load_images` with "
             f"test_fraction 0.001; one epoch, batch 1024, MLP 784-64-8.", "",
             "| backend | training set | exit | wall (s) | peak RssAnon (MiB) | peak RSS with file pages (MiB) | "
             "train loss |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        loss = f"{r['train_loss']:.2f}" if "train_loss" in r else "-"
        exit_ = "killed (SIGKILL)" if r["exit"] == -9 else str(r["exit"])
        lines.append(f"| {r['backend']} | {r['mode']} | {exit_} | {r['wall_s']:.1f} | {r['peak_rss_anon_mib']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} | {loss} |")
    lines += ["", "RssAnon is the memory the process allocated itself; the file pages it maps count in RSS too, "
              "but the kernel can drop them, and does under the cgroup's limit. The in-memory control shows the "
              "limit is real: reading the split into memory gets the process killed."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=3.0, help="size of the .npy to write (GiB)")
    p.add_argument("--limit-gib", type=float, default=1.5, help="the children's memory limit (GiB)")
    p.add_argument("--out", action="store_true", help="write scripts/results/bench_stream.{md,json}")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if not os.access(CGROUP, os.W_OK):
        print(f"bench_stream: needs a writable cgroup-v1 memory hierarchy at {CGROUP} (root on Linux)", file=sys.stderr)
        return 2
    group = CGROUP / f"vae-bench-stream-{os.getpid()}"
    group.mkdir()
    results = []
    try:
        (group / "memory.limit_in_bytes").write_text(str(int(args.limit_gib * 2**30)))
        with tempfile.TemporaryDirectory(dir=ROOT / ".data" if (ROOT / ".data").is_dir() else None) as tmp:
            data = Path(tmp) / "images.npy"
            n = _write_images(data, args.gib)
            for backend, mode in VARIANTS:
                results.append(_run(backend, mode, data, group))
                print(json.dumps(results[-1]), flush=True)
    finally:
        group.rmdir()
    command = "python -m scripts.bench_stream " + " ".join(argv if argv is not None else sys.argv[1:])
    report = _report(results, args, n, command)
    print(report)
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_stream.md").write_text(report)
        (RESULTS / "bench_stream.json").write_text(json.dumps({"results": results, "n": n, "gib": args.gib,
                                                               "limit_gib": args.limit_gib}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
