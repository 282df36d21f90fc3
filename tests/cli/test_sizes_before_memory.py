"""Sizes before memory (issue 32): `vae sample -n N` draws a chunk at a time (a capped grid, every sample in --npy,
memory bounded), and a huge --batch-size allocates nothing batch-sized. The refusals are in tests/cli/bad_inputs.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_core import VAESpec, build, save_checkpoint
from vae_core.cli import main, sample
from vae_core.viz.gallery import to_numpy

ROOT = Path(__file__).resolve().parents[2]
SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2)  # 8x8 images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _checkpoint(backend: str, folder: Path, spec: VAESpec = SPEC):
    model = build(backend, spec, seed=0)
    return model, save_checkpoint(folder / f"{backend}.safetensors", model, epoch=1)


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def test_sample_caps_the_grid_and_writes_every_sample_to_npy(backend, tmp_path, capsys, monkeypatch):
    model, ckpt = _checkpoint(backend, tmp_path)
    monkeypatch.setattr(sample, "MAX_CHUNK", 64)  # 1000 samples in 16 chunks
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    assert main(["sample", str(ckpt), "-n", "1000", "-o", str(png), "--npy", str(npy), "--backend", backend]) == 0
    err = capsys.readouterr().err
    assert (f"vae sample: note: the grid shows the first {sample.GRID_MAX} of the 1000 samples (a grid holds at most "
            f"{sample.GRID_MAX}); all 1000 are in {str(npy)!r}") in err
    samples = np.load(npy, allow_pickle=False)
    assert samples.shape == (1000, 64) and samples.dtype == np.float32
    # the chunks draw the z of one seeded generator: the samples of model.sample(1000, seed=0)
    np.testing.assert_allclose(samples, to_numpy(model.sample(1000, seed=0)), rtol=1e-5, atol=1e-6)
    full = _png_size(png)
    capped = tmp_path / "capped.png"
    assert main(["sample", str(ckpt), "-n", str(sample.GRID_MAX), "-o", str(capped), "--backend", backend]) == 0
    assert full[1] == _png_size(capped)[1]  # as many rows as a grid of GRID_MAX
    assert not list(tmp_path.glob(".*.tmp"))  # the .npy's temp file replaced it
    capsys.readouterr()
    assert main(["sample", str(ckpt), "-n", "500", "-o", str(tmp_path / "t.png"), "--backend", backend]) == 0
    assert "pass --npy FILE.npy to save all of them" in capsys.readouterr().err


def test_sample_without_an_image_shape_writes_the_npy_alone(backend, tmp_path, capsys):
    _, ckpt = _checkpoint(backend, tmp_path, VAESpec(input_dim=6, hidden_dims=(4,), latent_dim=2))
    npy = tmp_path / "s.npy"
    assert main(["sample", str(ckpt), "-n", "30", "--npy", str(npy), "-o", str(tmp_path / "s.png"),
                 "--backend", backend]) == 0
    assert np.load(npy).shape == (30, 6) and not (tmp_path / "s.png").exists()
    assert "no grid" in capsys.readouterr().err


def _peak_rss_mib(argv: list[str], cwd: Path) -> tuple[int, float]:
    """(exit status, peak resident memory in MiB) of `python -m vae_core.cli *argv` in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(cwd / "child.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vae_core.cli", *argv], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return proc.returncode, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="os.wait4 (peak memory of a child) is POSIX")
def test_sample_memory_stays_bounded_for_a_large_n(tmp_path):
    # 200,000 samples of 256 values are 195 MiB as float32 (and several times that while one decode made them all);
    # drawn a chunk at a time, the peak is that of 400 samples plus a chunk. The chunking is backend-neutral (torch).
    _, ckpt = _checkpoint("torch", tmp_path, VAESpec(input_dim=256, hidden_dims=(16,), latent_dim=2))
    n = 200_000
    small_status, small = _peak_rss_mib(["sample", str(ckpt), "-n", "400", "--npy", "small.npy"], tmp_path)
    status, large = _peak_rss_mib(["sample", str(ckpt), "-n", str(n), "--npy", "large.npy"], tmp_path)
    assert small_status == 0 and status == 0, (tmp_path / "child.err").read_text()
    rows = np.load(tmp_path / "large.npy", mmap_mode="r")
    assert rows.shape == (n, 256) and rows.dtype == np.float32 and 0 <= float(rows[-1].min()) <= 1
    assert large - small < 80, f"peak {large:.0f} MiB for -n {n} against {small:.0f} MiB for -n 400"


def test_a_batch_size_beyond_the_data_allocates_nothing_batch_sized(backend, tmp_path, capsys):
    # 10**9 examples of 64 floats would be 238 GiB: the step holds the 1437 training digits instead
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--epochs", "1",
                 "--batch-size", "1000000000", "--no-plots", "--no-progress", "--backend", backend,
                 "--out", str(out)]) == 0
    assert (out / "last.safetensors").is_file()
