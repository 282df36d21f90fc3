"""The user's own images as a `vae_core.data.Dataset`: a folder of image files, or a .npy/.npz array.

`load_images(path)` returns uint8 pixels when the source is uint8 (8-bit files; `fit` and the models read uint8
as x / 255, 4x smaller than float32), or float32 in [0, 1] for float arrays and for a folder with a 16-bit file
(levels / 65535, every level kept; `vae_core.data.image_files` says how each file is read). The training split of
a .npy stays in the memory-mapped file (`vae_core.data.mapped.MappedRows`), so a training set larger than memory
trains a batch at a time. Rows are (N, H*W*C), channels last, with `image_shape` (H, W) for one channel or (H, W, C). The train/test split is a function of `seed` alone.
`read_images(path)` gives every image unsplit, in file order, with each file's name (what `vae score` scores).
Pillow reads the files (`pip install 'vae-core[data]'`); arrays need NumPy only and never unpickle.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from vae_core.checks import as_float, caller_stacklevel, fail, listed
from vae_core.data.dataset import DATA_EXTRA, Dataset
from vae_core.data.image_files import DEEP_MODES, IMAGE_SUFFIXES, MODES, as_unit_floats, pillow, pixels, read_mode, \
    read_upright, skipped_note
from vae_core.data.mapped import MappedRows, is_mapped
from vae_core.io.files import FILE, FOLDER, path_kind
from vae_core.system.memory import GIB, REFUSE_SHARE, MemoryLimitError, available_memory

ARRAY_SUFFIXES = (".npy", ".npz")
CHANNELS = (1, 3)  # what an array may hold too: the images vae_core plots


class Images(NamedTuple):
    """Every image of a folder of files or of an array file, in file order: what `load_images` splits."""

    x: np.ndarray  # (N, H*W*C) rows, channels last: uint8 or float32; for a .npy, a view of its memory map
    y: np.ndarray  # (N,) int64: each file's folder among `class_names`; 0 for an array
    image_shape: tuple[int, ...]  # (H, W), or (H, W, C) for colour
    class_names: tuple[str, ...] | None  # a folder's class folders (see load_images); None for an array
    files: tuple[str, ...] | None  # each image's file, relative to the folder; None for an array


def read_images(path: str | os.PathLike[str], *, image_size: tuple[int, int] | None = None,
                mode: str | None = None) -> Images:
    """Every image of `path`, unsplit, in file order (sorted paths for a folder, rows for an array): new data to
    score, say. `path`, `image_size` and `mode` are `load_images`'; a .npy stays memory-mapped (`x` is a view of the
    map, which `vae_core.score` and `fit` read a batch at a time). At least one image."""
    path = _check_arguments(path, image_size, mode, 0.5, 0, owner="read_images")
    images = _read(path, image_size, mode, "read_images")
    if len(images.x) == 0:
        fail("read_images", "path", "at least 1 image", f"0 in {str(path)!r}")
    return images


def _read(path: Path, image_size: tuple[int, int] | None, mode: str | None, owner: str) -> Images:
    """`Images` of a checked `path` (a folder, or a .npy/.npz file); `owner` names the caller in errors."""
    names = files = None
    if path.is_dir():
        x, y, names, files = _read_folder(path, image_size, mode, owner)
    else:
        if image_size is not None or mode is not None:
            fail(owner, "image_size" if image_size is not None else "mode", "None for an array file",
                 image_size if image_size is not None else mode,
                 "image_size and mode apply to image files; resize or convert the array before saving it")
        x = _read_array(path, owner)
        y = np.zeros(len(x), np.int64)
    image_shape = tuple(int(s) for s in (x.shape[1:3] if x.shape[3] == 1 else x.shape[1:]))
    rows = x.reshape(len(x), int(np.prod(x.shape[1:])))  # (N, H*W*C), channels last; a view of a .npy's map
    return Images(rows, y, image_shape, names, files)


def load_images(path: str | os.PathLike[str], *, image_size: tuple[int, int] | None = None, mode: str | None = None,
                test_fraction: float = 0.1, seed: int = 0) -> "Dataset":
    """Read the user's images and split them reproducibly into train and test.

    path: a folder of .png/.jpg/.jpeg/.webp/.bmp/.gif/.tif/.tiff files (searched recursively; other files are
        skipped and counted in one UserWarning; `y` is the index of each file's own folder among the sorted folders
        that hold images, 0 when all lie in one folder, and `class_names` are those folders' paths relative to
        `path`; `files_train` and `files_test` name each image's file). Each file is read upright (its EXIF
        orientation applied); 8-bit files give uint8 pixels, and a 16-bit grey file makes the whole folder float32
        in [0, 1] (16-bit levels / 65535, 8-bit ones / 255); an animated file, a float file or one Pillow cannot
        read is refused by name (`vae_core.data.image_files`). Or a .npy/.npz array of
        shape (N, H, W) or (N, H, W, C) with C 1 or 3, uint8 or float in [0, 1] (a .npz holding one array, or one
        named "images" or "x"; `y` is 0). A .npy is memory-mapped: its training split stays in the file (`x_train` is a
        `vae_core.data.mapped.MappedRows`, which `fit` reads a batch at a time), and its test split is read into memory
        (float64 is cast to float32 as it is read).
    image_size: (H, W) to resize every file to (Pillow, bilinear); without it every file must have the size of
        the first, and a file that does not is refused by name. Images that would need more than REFUSE_SHARE of
        the available memory as they are read (`vae_core.system.memory`) are refused (MemoryLimitError) before the
        first is.
    mode: "L" or "RGB" to convert every file to; without it every file must share the first file's mode ("1" and
        16-bit grey count as "L"), and a file that does not is refused by name.
    test_fraction: the share of images held out for testing, in (0, 1); at least one image each side.
    seed: the split is `np.random.default_rng(seed).permutation(N)`: the first `round(N * test_fraction)` go to test.
    """
    path = _check_arguments(path, image_size, mode, test_fraction, seed)
    rows, y, image_shape, names, files = _read(path, image_size, mode, "load_images")
    n = len(rows)
    if n < 2:
        fail("load_images", "path", "at least 2 images (one to train on, one to test)", f"{n} in {str(path)!r}")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    order = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])  # sorted: a memory map is read in file order
    if is_mapped(rows):  # the training split stays in the file; the test split is read into memory
        x_train, x_test = MappedRows(rows, train), np.asarray(MappedRows(rows, test))
    else:
        x_train, x_test = np.ascontiguousarray(rows[train]), np.ascontiguousarray(rows[test])
    files_of = (lambda index: None) if files is None else (lambda index: tuple(files[i] for i in index))
    return Dataset(path.stem or path.name, x_train, y[train], x_test, y[test], image_shape, names,
                   files_train=files_of(train), files_test=files_of(test))


def _check_arguments(path: Any, image_size: Any, mode: Any, test_fraction: Any, seed: Any,
                     owner: str = "load_images") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        fail(owner, "path", "a folder of images or a .npy/.npz file (str or os.PathLike)",
             type(path).__name__)
    path = Path(path)
    kind = path_kind(path, f"{owner}: path")  # None: nothing there; a name too long: ValueError naming the limit
    if kind is None:
        raise FileNotFoundError(f"{owner}: path {str(path)!r} does not exist; pass a folder of "
                                f"{'/'.join(IMAGE_SUFFIXES)} files or a .npy/.npz array")
    if kind != FOLDER and path.suffix.lower() not in ARRAY_SUFFIXES:
        fail(owner, "path", "a folder of images, or a file ending in .npy or .npz", str(path),
             "Put single images in a folder and pass the folder")
    if kind not in (FOLDER, FILE):  # a FIFO is never opened (reading one blocks until a writer comes), nor a device
        fail(owner, "path", "a folder of images, or a regular .npy/.npz file", f"{str(path)!r}, {kind}",
             "Save the array to a regular file and pass that")
    if image_size is not None and not (isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)):
        fail(owner, "image_size", "None or two positive ints (H, W)", image_size)
    if mode is not None and mode not in MODES:
        fail(owner, "mode", "None, 'L' (grey levels) or 'RGB'", mode)
    fraction = as_float(test_fraction)  # a NumPy float too; never a bool
    if fraction is None or not 0 < fraction < 1:
        fail(owner, "test_fraction", "a number in (0, 1)", test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail(owner, "seed", "an int >= 0", seed)
    return path


def _read_folder(folder: Path, image_size: tuple[int, int] | None, mode: str | None,
                 owner: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(N, H, W, C) uint8 (float32 in [0, 1] with a 16-bit file), (N,) folder labels of every image file under
    `folder`, in sorted path order, the class names (each label's folder, relative to `folder`; `folder`'s own name
    for the files directly in it), and each image's file, relative to `folder`."""
    pillow(owner, DATA_EXTRA)
    found = [p for p in folder.rglob("*") if p.is_file()]
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
    note = skipped_note(owner, folder, (p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES))
    if note is not None:  # other files beside the images: counted, never skipped without a word
        warnings.warn(note, UserWarning, stacklevel=caller_stacklevel())
    if not files:
        raise FileNotFoundError(f"{owner}: no {'/'.join(IMAGE_SUFFIXES)} files in {str(folder)!r}")
    classes = {folder: i for i, folder in enumerate(sorted({p.parent for p in files}))}
    labels = np.array([classes[p.parent] for p in files], np.int64)
    names = tuple(d.relative_to(folder).as_posix() if d != folder else folder.resolve().name or "." for d in classes)
    images, first = [], None
    for file in files:
        image = read_upright(file, owner, DATA_EXTRA)  # EXIF orientation applied; animated or unreadable: refused
        own_mode = read_mode(image.mode)  # 8- and 16-bit grey files alike are "L"
        if mode is None and own_mode not in MODES:
            fail(owner, "mode", f"given for {str(file)!r}, whose mode is {image.mode!r}", None,
                 "Pass mode='L' or 'RGB' (--image-mode) to convert every file")
        size = image.size if image_size is None else (int(image_size[1]), int(image_size[0]))  # (W, H)
        if first is None:
            first = (file, size, mode or own_mode)
            _check_folder_fits(owner, folder, len(files), size, first[2], image.mode in DEEP_MODES, image_size)
        elif (size, mode or own_mode) != first[1:]:
            what = "size" if size != first[1] else "mode"
            got = f"{size[1]}x{size[0]}" if what == "size" else own_mode
            want = f"{first[1][1]}x{first[1][0]}" if what == "size" else first[2]
            fix = "Pass image_size=(H, W) (--image-size H,W) to resize every file" if what == "size" else \
                "Pass mode='L' or 'RGB' (--image-mode) to convert every file"
            raise ValueError(f"{owner}: {str(file)!r} has {what} {got}, but {str(first[0])!r} (the first file) "
                             f"has {want}; every image must have the same {what}. {fix}")
        images.append(pixels(image, mode or own_mode, image_size, file, owner))  # uint8, or float32 for 16 bits
    return np.stack(as_unit_floats(images)), labels, names, tuple(f.relative_to(folder).as_posix() for f in files)


def _check_folder_fits(owner: str, folder: Path, count: int, size: tuple[int, int], mode: str, deep: bool,
                       image_size: tuple[int, int] | None) -> None:
    """MemoryLimitError naming image_size (--image-size) before a pixel is read, when `count` images of `size`
    (W, H) in `mode` would take more than REFUSE_SHARE of `available_memory()` as they are read: each image's
    pixels (uint8, or float32 for a 16-bit first file `deep`) are held twice (the list of images and the stacked
    array), beside Pillow's own copy of one image (4 bytes a pixel)."""
    width, height = size
    channels = 3 if mode == "RGB" else 1
    need = 2 * count * height * width * channels * (4 if deep else 1) + 4 * height * width
    available, source = available_memory()
    if need <= REFUSE_SHARE * available:
        return
    given = f"image_size={tuple(int(s) for s in image_size)} makes " if image_size is not None else ""
    fix = "a smaller image_size=(H, W) (--image-size H,W)" if image_size is not None else \
        "image_size=(H, W) (--image-size H,W) to shrink them"
    raise MemoryLimitError(f"{owner}: {given}the {count} images of {str(folder)!r} ({height}x{width}x{channels}) "
                           f"need about {need / GIB:,.1f} GiB as they are read, and this process can have "
                           f"{available / GIB:,.1f} GiB ({source}): more than the {REFUSE_SHARE:.0%} of it that "
                           f"loading may take; pass {fix}")


def _read_array(path: Path, owner: str) -> np.ndarray:
    """The (N, H, W, C) images of a .npy (memory-mapped: uint8, float32, or float64 that is cast as it is read) or
    .npz file (uint8, or float32), float pixels in [0, 1]."""
    try:
        if path.suffix.lower() == ".npy":
            x = np.load(path, mmap_mode="r", allow_pickle=False)
            if not isinstance(x, np.ndarray):  # np.load reads by content: a .npz archive named .npy
                x.close()
                fail(owner, "path", "a .npy array", f"{str(path)!r}, a .npz archive (a zip of arrays)",
                     "Rename it to .npz")
        else:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy array named .npz
                fail(owner, "path", "a .npz archive", f"{str(path)!r}, a .npy array", "Rename it to .npy")
            with archive:
                names = list(archive.files)
                name = names[0] if len(names) == 1 else next((n for n in ("images", "x") if n in names), None)
                if name is None:
                    fail(owner, "path", "a .npz with one array, or one named 'images' or 'x'",
                         f"{str(path)!r} holding {names}", "Save the images alone, or under the name 'images'")
                x = archive[name]
    except (OSError, ValueError, EOFError, OverflowError) as e:  # an empty file; a header dimension of 10**23
        if isinstance(e, ValueError) and str(e).startswith(owner):
            raise
        reason = f"its header declares a shape too large to address: {e}" if isinstance(e, OverflowError) else e
        raise ValueError(f"{owner}: {str(path)!r} is not a readable NumPy file without pickles ({reason})") from None
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W) -> (N, H, W, 1)
    if x.ndim != 4 or x.shape[3] not in CHANNELS:
        fail(owner, "path", "an array of shape (N, H, W) or (N, H, W, C) with C 1 or 3 (grey or RGB)",
             f"shape {x.shape} in {str(path)!r}")
    if x.dtype == np.uint8:
        return x
    if x.dtype not in (np.float32, np.float64):
        fail(owner, "path", "uint8 images, or float32/float64 in [0, 1]", f"dtype {x.dtype} in {str(path)!r}",
             "Scale to [0, 1] floats or store uint8 0-255")
    if not isinstance(x, np.memmap):
        x = np.asarray(x, np.float32)
    # a memory map is scanned a chunk at a time and cast per read (MappedRows), never read whole
    chunks = MappedRows(x.reshape(len(x), -1)).chunks() if isinstance(x, np.memmap) else [x]
    low, high, bad_images, start = np.inf, -np.inf, [], 0
    for chunk in (c for c in chunks if c.size):
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)  # (chunk,) images with a NaN or an inf
        bad_images.extend((start + np.flatnonzero(bad)).tolist())  # their positions in the file, named below
        start += len(chunk)
        if not bad.all():
            low, high = min(low, float(chunk[~bad].min())), max(high, float(chunk[~bad].max()))
    if bad_images:
        fail(owner, "path", "finite float pixels in [0, 1]", f"NaN or inf in {len(bad_images)} of the {len(x)} "
             f"images of {str(path)!r}", f"Clean or drop those images (image{'s' if len(bad_images) > 1 else ''} "
             f"{listed(bad_images)}, counted from 0)")
    if not (low >= 0.0 and high <= 1.0) and len(x):
        fail(owner, "path", "float pixels in [0, 1]", f"values in [{low:.4g}, {high:.4g}] "
             f"in {str(path)!r}", "Divide 0-255 floats by 255, or store uint8")
    return x
