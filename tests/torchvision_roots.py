"""Tiny offline roots that torchvision's datasets read: MNIST and Fashion-MNIST raw IDX folders, a CIFAR-10
`cifar-10-batches-py` in its python pickle format, and image folders of PNG class folders.

Images carry their class (a bright bar whose place depends on the label), so a model learns something in an epoch.
torchvision checks CIFAR-10's files against the published MD5s: `cifar10_root` writes tiny stand-ins and
`accept_cifar10` makes torchvision accept them (monkeypatched MD5s), as it accepts the real files.
"""
from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")


def images(n: int, shape: tuple[int, ...], n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images of `shape` (H, W) or (H, W, C) and labels 0..n_classes-1 in turn: class c a bright bar."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    x = rng.integers(0, 40, (n, *shape)).astype(np.uint8)
    w = shape[1]
    for i, c in enumerate(labels):
        left = int(c * (w - 2) / max(1, n_classes - 1)) if n_classes > 1 else 0
        x[i, 1:-1, left:left + 2] = rng.integers(150, 256)
    return x, labels


def _idx(array: np.ndarray) -> bytes:
    """A uint8 array as an IDX file: magic, dimensions, then the bytes."""
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def idx_root(root: Path, folder: str = "FashionMNIST", n_train: int = 60, n_test: int = 20) -> Path:
    """`root`/`folder`/raw/ with the four IDX files of 28x28 images (folder "MNIST" or "FashionMNIST")."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = images(n, (28, 28), 10, seed)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx(x))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx(y.astype(np.uint8)))
    return root


def cifar10_root(root: Path, per_batch: int = 10, n_test: int = 20) -> Path:
    """`root`/cifar-10-batches-py/ with five training batches of `per_batch` 32x32 RGB images, a test batch and
    batches.meta, pickled as CIFAR-10's python version is (rows of 3072 bytes, channels first)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_FILES[:6]):
        x, y = images(n_test if name == "test_batch" else per_batch, (32, 32, 3), 10, seed=i)
        data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # (N, 3 * 32 * 32), channels first
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": y.tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR_CLASSES)}))
    return root


def accept_cifar10(monkeypatch, root: Path) -> None:
    """torchvision's CIFAR10 checks its files' MD5s: make it expect those of the stand-ins under `root`."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in CIFAR_FILES}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})


def image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 10,
                 shape: tuple[int, ...] = (8, 8), seed: int = 0) -> Path:
    """`root`/<class>/<i>.png: `per_class` PNG images of `shape` ((H, W) grey, (H, W, 3) RGB) per class folder."""
    from PIL import Image

    x, y = images(per_class * len(classes), shape, len(classes), seed)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root
