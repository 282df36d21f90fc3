"""The TensorBoard view of `vae compare --tensorboard`, drawn from its event files:
docs/gallery/tensorboard_compare.png.

Runs `vae compare --tensorboard LOGS` (both backends, the same spec, config, data and initial weights), then reads
the event files back with tensorboard's EventAccumulator and draws what TensorBoard's Scalars tab shows for them:
one chart per tag (`epoch_loss`, `epoch_recon`, `epoch_kl`), the four runs (`torch/train`, `torch/validation`,
`tf/train`, `tf/validation`) overlaid, in TensorBoard's run colours, with its run list beside them. The curves are
the files' values, unsmoothed (TensorBoard's smoothing slider at 0).

    .venv/bin/python -m scripts.make_tensorboard_figure                        # Fashion-MNIST, 10 epochs (minutes)
    .venv/bin/python -m scripts.make_tensorboard_figure --dataset digits --epochs 5 --out /tmp/tb.png   # seconds
    .venv/bin/python -m scripts.make_tensorboard_figure --logs runs/tb   # keep the event files there (and redraw)
"""
from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gallery" / "tensorboard_compare.png"
TAGS = ("epoch_loss", "epoch_recon", "epoch_kl")
RUNS = ("torch/train", "torch/validation", "tf/train", "tf/validation")
COLORS = ("#12b5cb", "#425066", "#e8710a", "#e52592")  # TensorBoard's run palette
BORDER, PANEL, TEXT = "#dadce0", "#f5f5f5", "#202124"


def run_compare(logs: Path, dataset: str, epochs: int) -> str:
    """`vae compare ... --tensorboard logs` into a temporary --out; returns its command line."""
    from vae_core.cli import main

    with tempfile.TemporaryDirectory() as out:
        argv = ["compare", "--dataset", dataset, "--epochs", str(epochs), "--same-init", "--out", out,
                "--tensorboard", str(logs), "--no-progress"]
        if main(argv) != 0:
            raise SystemExit(f"vae compare failed: {shlex.join(argv)}")
    return shlex.join(["vae", *argv]).replace(out, "runs/compare")


def read_runs(logs: Path) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """{run: {tag: (steps, values)}} of the event files under `logs`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = {}
    for run in RUNS:
        accumulator = EventAccumulator(str(logs / run), size_guidance={"scalars": 0})
        accumulator.Reload()
        curves[run] = {tag: ([e.step for e in accumulator.Scalars(tag)], [e.value for e in accumulator.Scalars(tag)])
                       for tag in TAGS if tag in accumulator.Tags()["scalars"]}
    return curves


def draw(curves: dict[str, dict[str, tuple[list[int], list[float]]]], path: Path, caption: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    from vae_core.viz.figures import pyplot

    plt = pyplot()
    fig = plt.figure(figsize=(13.0, 4.6), facecolor="white")
    side = fig.add_axes((0.0, 0.0, 0.17, 1.0), facecolor=PANEL)  # the run list
    side.set_xticks([]), side.set_yticks([])
    for spine in side.spines.values():
        spine.set_color(BORDER)
    side.text(0.1, 0.92, "Runs", fontsize=12, weight="bold", color=TEXT, transform=side.transAxes)
    for i, (run, color) in enumerate(zip(RUNS, COLORS)):
        y = 0.82 - 0.08 * i
        side.add_patch(plt.Rectangle((0.1, y - 0.02), 0.07, 0.045, color=color, transform=side.transAxes))
        side.text(0.22, y, run, fontsize=10, va="center", color=TEXT, transform=side.transAxes)
    side.text(0.1, 0.06, "Smoothing 0", fontsize=9, color="#5f6368", transform=side.transAxes)
    for j, tag in enumerate(TAGS):
        ax = fig.add_axes((0.205 + j * 0.267, 0.17, 0.235, 0.66))
        for run, color in zip(RUNS, COLORS):
            if tag in curves[run]:
                steps, values = curves[run][tag]
                ax.plot(steps, values, color=color, lw=1.8, marker="o", ms=3)
        ax.set_title(tag, loc="left", fontsize=11, color=TEXT, pad=8)
        ax.grid(color="#e0e0e0", lw=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(colors="#5f6368", labelsize=8)
        ax.set_xlabel("step (epoch)", fontsize=8, color="#5f6368")
        for spine in ax.spines.values():
            spine.set_color(BORDER)
    fig.text(0.205, 0.94, "Scalars", fontsize=13, weight="bold", color=TEXT)
    fig.text(0.205, 0.025, caption, fontsize=8, color="#5f6368")
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--logs", type=Path, default=None,
                        help="the event files' folder: compare's runs go there (default: a temporary folder); if it "
                             "holds them already (and the command.txt this script writes), they are drawn again")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        logs = args.logs or Path(folder) / "tb"
        if not (logs / "command.txt").is_file():
            command = run_compare(logs, args.dataset, args.epochs).replace(str(logs), "runs/tb")
            (logs / "command.txt").write_text(command + "\n")
        command = (logs / "command.txt").read_text().strip()
        path = draw(read_runs(logs), args.out, f"Drawn from the event files of: {command}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
