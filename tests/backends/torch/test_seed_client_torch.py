"""The seed's section 3.1 script, read from ../shared/seed/ at run time, runs unchanged on `build("torch")`.

Section 3.1 is a whole PyTorch program: torchvision's MNIST loaders, its train and evaluate loops with its own loss,
four plots and a `torch.save` checkpoint, all driven by `main()`. As tests/cli/test_seed_client.py does for section 3.2,
the test changes three names and no line of the seed's code:

- `VAE`, the seed's class, is `build("torch")` (the seed calls `VAE().to(DEVICE)`, then `model(x)`,
  `model.encode(x)`, `model.sample(n)`, `model.parameters()` and `model.state_dict()`);
- `EPOCHS` is 2, not 20;
- MNIST is offline: the seed's `datasets.MNIST(root='./data', download=True)` downloads nothing when
  `./data/MNIST/raw/` already holds the four IDX files, so the test writes them there (300 training and 200 test
  images, synthetic: one bar per class, so that there is something to learn) and runs `main()` in that folder.

It needs torchvision, which scripts/setup.sh installs with the torch it was built for (torch 2.14.1, torchvision
0.29.1); without torchvision it is skipped.
"""
import importlib.util
import struct

import numpy as np
import pytest

from tests.cli.test_seed_client import _is_png, _run_section
from vae_core import build

EPOCHS, N_TRAIN, N_TEST = 2, 300, 200
SEED_PLOTS = ("reconstructions.png", "samples.png", "latent_space.png", "training_curves.png")

pytest.importorskip("torch")
# Only a missing torchvision skips: one that is installed but does not import beside this torch fails the test.
if importlib.util.find_spec("torchvision") is None:
    pytest.skip("the seed's section 3.1 needs torchvision (scripts/setup.sh installs it with torch)",
                allow_module_level=True)


def _idx(array: np.ndarray) -> bytes:
    """A uint8 array as an IDX file (the format of MNIST's *-ubyte files): magic, dimensions, then the bytes."""
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _synthetic_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images and their labels: class c is a vertical bar at columns 2c+4 to 2c+7, of random
    brightness, on faint noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.float64)
    for i, c in enumerate(labels):
        images[i, 4:24, 2 * c + 4:2 * c + 8] = rng.uniform(150, 255)
    return images.astype(np.uint8), labels


@pytest.fixture
def offline_mnist(tmp_path, monkeypatch):
    """A working directory whose ./data/MNIST/raw/ holds MNIST's four files, as torchvision's MNIST reads them."""
    import matplotlib
    matplotlib.use("Agg")
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n, seed in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1)):
        images, labels = _synthetic_mnist(n, seed)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx(images))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx(labels))
    monkeypatch.chdir(tmp_path)  # the seed reads ./data and writes its PNGs and vae_model.pt here
    return tmp_path


# The seed hands torch tensors to imshow; NumPy 2 warns about their __array__ signature.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_seed_section_3_1_main_runs_on_the_torch_model(offline_mnist, capsys):
    import torch

    seed = _run_section("3.1", {})  # imports torchvision's datasets and transforms, as the seed does
    built = []

    def our_vae():  # what the seed's main() calls as VAE()
        built.append(build("torch", seed=0))
        return built[-1]

    seed.update(VAE=our_vae, EPOCHS=EPOCHS)
    torch.manual_seed(0)  # the seed's shuffling DataLoader and its reparameterisation noise
    seed["main"]()
    printed = capsys.readouterr().out

    (model,) = built
    n_params = sum(p.numel() for p in model.parameters())
    assert f"Training samples: {N_TRAIN}" in printed and f"Test samples: {N_TEST}" in printed  # torchvision's MNIST
    assert f"Total trainable parameters: {n_params:,}" in printed
    assert f"Epoch   {EPOCHS}/{EPOCHS} |" in printed and "Training complete!" in printed
    # visualize_samples is the seed's defect on its own VAE (sample() keeps autograd on, so imshow fails); ours
    # samples without gradients
    assert [name for name in SEED_PLOTS if not _is_png(offline_mnist / name)] == []

    saved = torch.load(offline_mnist / "vae_model.pt", weights_only=True)
    assert len(saved["train_losses"]) == len(saved["test_losses"]) == EPOCHS
    assert all(np.isfinite(saved["train_losses"] + saved["test_losses"]))
    assert saved["test_losses"][-1] < saved["test_losses"][0]  # the seed's loop trained our model
    steps = EPOCHS * -(-N_TRAIN // 128)  # the seed's BATCH_SIZE, last batch partial
    assert {int(s["step"]) for s in saved["optimizer_state_dict"]["state"].values()} == {steps}
    fresh = build("torch", seed=1)
    fresh.load_state_dict(saved["model_state_dict"])  # the seed's checkpoint loads into a model we build
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor.cpu(), rtol=0, atol=0)
    untrained = build("torch", seed=0).state_dict()
    assert any(not torch.equal(untrained[name], tensor.cpu()) for name, tensor in model.state_dict().items())
