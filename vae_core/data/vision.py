"""torchvision's datasets, read offline from a root folder, as a `Dataset` whose training split streams.

`load_torchvision(name, root, ...)` (and `load_dataset("torchvision:...", data_dir=root)`) reads:

- `torchvision:mnist`, `torchvision:fashion-mnist`: `<root>/MNIST/raw/` and `<root>/FashionMNIST/raw/`, the four
  IDX files uncompressed (`train-images-idx3-ubyte`, ...), where torchvision keeps them;
- `torchvision:cifar10`: `<root>/cifar-10-batches-py/` (`data_batch_1`..`5`, `test_batch`, `batches.meta`), the
  python version of CIFAR-10, whose MD5s torchvision checks;
- `torchvision:image-folder`: torchvision's `ImageFolder`, a folder of class folders (`<root>/cat/1.png`); with
  `<root>/train/` and `<root>/test/`, those two (each a folder of the same class folders), else a stratified 80/20
  split of `<root>` fixed by `SPLIT_SEED`.

The training split, `x_train`, is the torchvision dataset itself (for an image folder split 80/20, a torch `Subset`
of it). Its items are (image, label) pairs: a PIL image for MNIST and CIFAR-10 (which `fit` reads from their `data`
a batch at a time, `vae_core.data.in_memory`), a uint8 (H, W, C) array for an image folder; `fit` reads them by
index in its own order (`vae_core.data.items.ItemRows`): an image folder is decoded a batch at a time, never loaded whole. The test split is
read into memory as (M, D) rows. torchvision and torch are imported here, when such a dataset is loaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vae_core.checks import fail
from vae_core.data.dataset import DIGIT_CLASSES, FASHION_MNIST_CLASSES, Dataset, import_optional
from vae_core.data.idx import IDX_NAMES
from vae_core.data.image_files import DEEP_MODES, open_checked, pillow, pixels, read_upright, upright_size
from vae_core.data.image_files import read_mode as own_mode

TORCH_EXTRA = "pip install 'vae-core[torch]' (torch with torchvision)"
IMAGE_FOLDER = "torchvision:image-folder"
SPLIT_SEED = 0  # the 80/20 split of an image folder without train/ and test/: fixed, so every command finds it
TEST_SHARE = 0.2


@dataclass(frozen=True)
class _Source:
    """Where torchvision finds one of its datasets under the root, and how a user gets the files there."""

    cls: str  # the torchvision.datasets class
    folder: str  # under the root
    files: tuple[str, ...]  # in `folder`
    get: str  # how to get them, for the error when they are missing


_SOURCES: dict[str, _Source] = {
    "torchvision:mnist": _Source("MNIST", "MNIST/raw", IDX_NAMES, "put the four IDX files there, uncompressed (gunzip "
                                 "*.gz), or use --dataset mnist, which reads them as they are"),
    "torchvision:fashion-mnist": _Source(
        "FashionMNIST", "FashionMNIST/raw", IDX_NAMES, "gunzip the four .gz files there (Debian's "
        "dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist, which --dataset fashion-mnist "
        "reads as they are)"),
    "torchvision:cifar10": _Source(
        "CIFAR10", "cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into the root"),
}
TORCHVISION_DATASETS: tuple[str, ...] = (*_SOURCES, IMAGE_FOLDER)
_CLASSES = {"torchvision:mnist": DIGIT_CLASSES, "torchvision:fashion-mnist": FASHION_MNIST_CLASSES}


def load_torchvision(name: str, root: str | os.PathLike[str] | None, *, download: bool = False,
                     image_size: tuple[int, int] | None = None, mode: str | None = None,
                     dtype: str = "float32") -> Dataset:
    """The torchvision dataset `name` (TORCHVISION_DATASETS) under `root`: `x_train` the map-style dataset of
    (uint8 (H, W, C), label) items, `x_test` its test split read into (M, D) rows (float32 in [0, 1], or uint8 with
    dtype="uint8"), and `class_names` the names of the labels.

    download: torchvision fetches MNIST, Fashion-MNIST or CIFAR-10 into `root` when missing (not an image folder).
    image_size (H, W), mode ("L" or "RGB"): an image folder's files resized (bilinear) and converted; without them
    every file must have the first file's size and mode, and one that does not is refused by name before training.
    """
    root = _check_root(name, root, download, image_size, mode)
    datasets = import_optional("torchvision.datasets", f"dataset {name!r}", TORCH_EXTRA)
    if name == IMAGE_FOLDER:
        train, y_train, test, y_test, classes = _image_folder(datasets, root, image_size, mode)
    else:
        source = _SOURCES[name]
        if not download:
            _check_files(name, root, source)
        try:
            train, test = (getattr(datasets, source.cls)(root, train=split, download=download)
                           for split in (True, False))
        except (OSError, EOFError, RuntimeError, ValueError, AssertionError, KeyError) as e:
            error = " ".join(f"{type(e).__name__}: {e}".split())
            if isinstance(e, RuntimeError) and "corrupted" in str(e):  # CIFAR-10's files are all there: their MD5s
                error = "their MD5 checksums are not those of the published files"
            if download:
                raise ValueError(f"{name}: torchvision could not download it into {str(root)!r} ({error}); "
                                 f"{source.get}") from None
            raise ValueError(f"{name}: torchvision could not read {str(root / source.folder)!r} ({error}); the files "
                             f"are damaged or not {source.cls}'s: replace them ({source.get}, or download=True / "
                             f"--download)") from None
        y_train, y_test = np.asarray(train.targets, np.int64), np.asarray(test.targets, np.int64)
        classes = _CLASSES.get(name) or tuple(str(c) for c in train.classes)
    if len(train) == 0:
        raise ValueError(f"{name}: the training split under {str(root)!r} is empty; it needs at least one image")
    x_test = read_items(test, name)  # (M, H, W, C) uint8
    first = hwc(train[0][0])
    if first.shape != x_test.shape[1:]:
        raise ValueError(f"{name}: the training images are {first.shape} and the test images {x_test.shape[1:]}; "
                         f"both splits must hold images of one size")
    h, w, c = x_test.shape[1:]
    rows = x_test.reshape(len(x_test), -1)
    rows = rows if dtype == "uint8" else rows.astype(np.float32) / np.float32(255.0)
    return Dataset(name, train, y_train, rows, y_test, (h, w) if c == 1 else (h, w, c), tuple(classes))


def hwc(image: Any) -> np.ndarray:
    """An image (PIL, or an array) as a uint8 (H, W, C) array."""
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def read_items(dataset: Any, name: str) -> np.ndarray:
    """Every item's image of a map-style dataset of (image, label) items, as (N, H, W, C) uint8."""
    if len(dataset) == 0:
        raise ValueError(f"{name}: the test split is empty; it needs at least one image")
    first = hwc(dataset[0][0])
    out = np.empty((len(dataset), *first.shape), np.uint8)
    out[0] = first
    for i in range(1, len(dataset)):
        out[i] = hwc(dataset[i][0])
    return out


def _check_root(name: str, root: Any, download: Any, image_size: Any, mode: Any) -> Path:
    if name not in TORCHVISION_DATASETS:
        fail("load_torchvision", "name", f"one of {', '.join(map(repr, TORCHVISION_DATASETS))}", name)
    where = "the folder of class folders" if name == IMAGE_FOLDER else \
        f"the torchvision root, the folder that holds {_SOURCES[name].folder}/"
    if root is None or not isinstance(root, (str, os.PathLike)):
        fail("load_dataset", "data_dir", f"{where} for {name!r} (a str or os.PathLike)", root,
             f"Pass data_dir=ROOT (vae train --dataset {name} --data-dir ROOT)")
    root = Path(root).expanduser()
    if name == IMAGE_FOLDER and download:
        fail("load_dataset", "download", f"False for {name!r}: an image folder is read from data_dir", download,
             "Drop download=True (--download)")
    if name != IMAGE_FOLDER and (image_size is not None or mode is not None):
        fail("load_dataset", "image_size" if image_size is not None else "mode", f"None for {name!r}",
             image_size if image_size is not None else mode,
             f"image_size and mode (--image-size, --image-mode) apply to {IMAGE_FOLDER!r} and your own images")
    if image_size is not None and not (isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)):
        fail("load_dataset", "image_size", "None or two positive ints (H, W)", image_size)
    if mode not in (None, "L", "RGB"):
        fail("load_dataset", "mode", "None, 'L' (grey levels) or 'RGB'", mode)
    if not root.is_dir() and not (download and not root.exists()):
        what = "is a file" if root.exists() else "does not exist"
        raise FileNotFoundError(f"{name}: data_dir (--data-dir) {str(root)!r} {what}; pass {where}")
    return root


def _check_files(name: str, root: Path, source: _Source) -> None:
    """A FileNotFoundError naming the folder looked in, the files missing there, and how to get them."""
    folder = root / source.folder
    missing = [f for f in source.files if not (folder / f).is_file()]
    if not missing:
        return
    hint = ""
    parts, resolved = Path(source.folder).parts, root.resolve()
    for up in range(1, len(parts) + 1):  # data_dir names a folder below the root (.../MNIST): say which to pass
        if resolved.parts[-up:] == parts[:up] and all((root.joinpath(*parts[up:]) / f).is_file() for f in source.files):
            hint = (f" They are under {str(root)!r}, a folder below the root: pass data_dir (--data-dir) "
                    f"{str(resolved.parents[up - 1])!r}.")
    if not hint and all((folder / f"{f}.gz").is_file() for f in missing):
        hint = f" {str(folder)!r} holds them gzipped: gunzip them there (torchvision reads them uncompressed)."
    raise FileNotFoundError(f"{name}: {len(missing)} of its files not found in {str(folder)!r} (missing: "
                            f"{', '.join(missing)}); data_dir (--data-dir) must be the torchvision root that holds "
                            f"{source.folder}/." + (hint or f" To get them: {source.get}; or pass download=True "
                                                            f"(--download) on a machine online, and torchvision "
                                                            f"fetches them"))


@dataclass(frozen=True)
class ImageFile:
    """An image folder's loader: a file as uint8 (H, W, C), converted to `mode` and resized (bilinear) to `size`
    (H, W) when given. A module-level class, so DataLoader workers can pickle it."""

    mode: str
    size: tuple[int, int] | None = None

    def __call__(self, path: str) -> np.ndarray:
        image = read_upright(path, IMAGE_FOLDER, TORCH_EXTRA)  # its EXIF orientation applied
        return pixels(image, self.mode, self.size, path, IMAGE_FOLDER)  # 8-bit: _scan refuses 16-bit files


def _class_folders(root: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"{IMAGE_FOLDER}: data_dir (--data-dir) {str(root)!r} holds no class folders; put "
                                f"each class's images in a folder of its own ({str(root / 'CLASS' / '1.png')!r}), or "
                                f"read a flat folder of images with load_images (vae train --data FOLDER)")
    return classes


def _image_folder(datasets: Any, root: Path, image_size: tuple[int, int] | None,
                  mode: str | None) -> tuple[Any, np.ndarray, Any, np.ndarray, list[str]]:
    """(train dataset, its labels, test dataset, its labels, class names) of an image folder."""
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _class_folders(train_root)
    extensions = datasets.folder.IMG_EXTENSIONS
    samples = datasets.folder.make_dataset(str(train_root), {c: i for i, c in enumerate(classes)}, extensions,
                                           allow_empty=True)
    counts = np.bincount([y for _, y in samples], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise FileNotFoundError(f"{IMAGE_FOLDER}: class folder(s) {empty} of {str(train_root)!r} hold no image "
                                f"files ({', '.join(extensions)}); add images or remove the folder(s)")
    if split:
        extra = sorted(set(_class_folders(root / "test")) - set(classes))
        if extra:
            raise ValueError(f"{IMAGE_FOLDER}: {str(root / 'test')!r} has class folder(s) {extra} that "
                             f"{str(train_root)!r} lacks; the test classes must be among the training classes")
        test_samples = datasets.folder.make_dataset(str(root / "test"), {c: i for i, c in enumerate(classes)},
                                                    extensions, allow_empty=True)
        if not test_samples:
            raise FileNotFoundError(f"{IMAGE_FOLDER}: {str(root / 'test')!r} holds no image files "
                                    f"({', '.join(extensions)}) in its class folders")
    else:
        test_samples = []
    loader = ImageFile(*_scan([p for p, _ in samples + test_samples], image_size, mode))
    folder = datasets.ImageFolder(str(train_root), loader=loader, allow_empty=True)
    targets = np.asarray(folder.targets, np.int64)
    if split:
        return folder, targets, _Files(test_samples, loader), np.array([y for _, y in test_samples], np.int64), classes
    train, test = stratified_split(targets)
    subset = import_optional("torch.utils.data", f"dataset {IMAGE_FOLDER!r}", TORCH_EXTRA).Subset
    test_files = _Files([folder.samples[i] for i in test], loader)
    return subset(folder, train.tolist()), targets[train], test_files, targets[test], classes


@dataclass(frozen=True)
class _Files:
    """(path, label) samples read by `loader`: a test split, as a map-style dataset."""

    samples: Sequence[tuple[str, int]]
    loader: ImageFile

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[i]
        return self.loader(path), label


def stratified_split(labels: np.ndarray, share: float = TEST_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: round(share * n) of each class's n examples to test (at least one of a class
    with two or more), chosen in the order of one permutation fixed by SPLIT_SEED."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    test = []
    for c in np.unique(labels):
        members = order[labels[order] == c]  # class c, in the permuted order
        k = max(1, round(share * len(members))) if len(members) >= 2 else 0
        test.extend(members[:k].tolist())
    if not test:
        raise ValueError(f"{IMAGE_FOLDER}: every class folder holds one image, which leaves none to test on; add "
                         f"images (a class of two or more gives {share:.0%} to the test split), or give train/ and "
                         f"test/ folders")
    test = np.sort(np.array(test, np.int64))
    return np.setdiff1d(np.arange(len(labels)), test), test


def _scan(files: list[str], image_size: tuple[int, int] | None, mode: str | None) -> tuple[str, tuple[int, int]]:
    """(mode, (H, W)) every file is read as, from their headers (nothing is decoded; sizes as the EXIF orientation
    turns them); a file of another size or mode than the first, when image_size or mode does not make them one, is
    refused by name, and so is an animated, float or 16-bit file (`vae_core.data.image_files`)."""
    Image = pillow(IMAGE_FOLDER, TORCH_EXTRA)
    first = None
    for path in files:
        try:
            with Image.open(path) as image:
                open_checked(image, path, IMAGE_FOLDER)  # animated or float: refused by name
                size, read_mode, deep = upright_size(image), own_mode(image.mode), image.mode in DEEP_MODES
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:  # a damaged, unknown or huge file
            raise ValueError(f"{IMAGE_FOLDER}: {path!r} is not a readable image ({e}); remove or replace it") from None
        if deep:  # the items are uint8, as every other dataset's: 16 bits would be clipped to 8
            raise ValueError(f"{IMAGE_FOLDER}: {path!r} is a 16-bit image (Pillow mode {image.mode!r}), which this "
                             f"dataset's uint8 items would clip; read the folder with vae train --data FOLDER "
                             f"(load_images, which keeps 16-bit levels as floats), or save the files as 8-bit images")
        if mode is None and read_mode not in ("L", "RGB"):
            fail("load_dataset", "mode", f"given for {path!r}, whose mode is {read_mode!r}", None,
                 "Pass mode='L' or 'RGB' (--image-mode) to convert every file")
        if first is None:
            first = (path, size, read_mode)
        elif image_size is None and size != first[1]:
            raise ValueError(f"{IMAGE_FOLDER}: {path!r} is {size[1]}x{size[0]} (HxW), but {first[0]!r} (the first "
                             f"file) is {first[1][1]}x{first[1][0]}; every image must have one size. Pass "
                             f"image_size=(H, W) (--image-size H,W) to resize every file")
        elif mode is None and read_mode != first[2]:
            raise ValueError(f"{IMAGE_FOLDER}: {path!r} has mode {read_mode}, but {first[0]!r} (the first file) has "
                             f"{first[2]}; every image must have one mode. Pass mode='L' or 'RGB' (--image-mode) to "
                             f"convert every file")
    assert first is not None
    size = (int(image_size[0]), int(image_size[1])) if image_size is not None else (first[1][1], first[1][0])
    return mode or first[2], size
