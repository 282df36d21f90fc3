"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(out: Path, name: str, lines: list[str], rows: object | None = None) -> None:
    """`out`/`name`.md from the report's lines (printed too), and `name`.json from `rows` when given."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    if rows is not None:
        (out / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


def fashion_mnist(limit: int | None = None, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Full Fashion-MNIST (x_train, x_test); with `limit`, the first `limit` train and max(1000, limit/6) test.
    dtype="uint8" keeps the stored pixels, which vae_core's `fit` reads as x / 255 (4x less memory)."""
    from vae_core.data import load_dataset

    data = load_dataset("fashion-mnist", dtype=dtype)
    x_train, x_test = data.x_train, data.x_test
    if limit:
        x_train, x_test = x_train[:limit], x_test[:max(1000, limit // 6)]
    return x_train, x_test
