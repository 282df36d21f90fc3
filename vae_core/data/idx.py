"""IDX files (MNIST, Fashion-MNIST): a reader, where to find them, and checksum-verified downloads."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from vae_core.data.dataset import import_optional
from vae_core.io.files import check_regular_file

CACHE_ENV = "VAE_CORE_DATA"

# The four files of an IDX release: (images, labels) for train and test.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

IDX_NAMES: tuple[str, ...] = tuple(n for pair in IDX_FILES.values() for n in pair)

IMAGE_SHAPE_28: tuple[int, int] = (28, 28)

# Upstream URLs and md5 of the published .gz files (verified by pooch on download).
MIRRORS: dict[str, str] = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
}

GZ_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}

# Debian's `dataset-fashion-mnist` installs the four files as .gz here. Their .gz md5s do
# NOT match the upstream ones above: Debian re-wrote the gzip headers (the stored file name
# is dropped, so each file is 23-24 bytes smaller, and the mtime differs). The decompressed
# bytes do match the published md5s of the uncompressed upstream files (listed below, as
# in torchvision's FashionMNIST.raw_data), so we verify those when reading Debian's copy.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

RAW_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # ndim -> magic (labels / images)
_UBYTE = 0x08

def _idx_bytes(path: Path) -> bytes:
    """Raw bytes of an IDX file, decompressed when it is gzip (by suffix or magic)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read IDX file {path}: {exc}") from exc
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"IDX file {path}: expected a valid gzip stream, but decompression "
                             f"failed ({exc}); the file is corrupt or truncated, download it again") from exc
    return data

def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Check the header and payload size of an IDX buffer and return its uint8 array."""
    if len(data) < 4:
        raise ValueError(f"IDX file {path}: expected at least a 4-byte header, found {len(data)} bytes")
    zero, dtype_byte, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or ndim not in _IDX_MAGIC:
        raise ValueError(f"IDX file {path}: expected magic number 0x00000801 (labels) or 0x00000803 "
                         f"(images), found 0x{magic:08x}; this is not an MNIST-style IDX file")
    if dtype_byte != _UBYTE:
        raise ValueError(f"IDX file {path}: expected dtype byte 0x08 (unsigned byte), found 0x{dtype_byte:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path}: expected a {header}-byte header for {ndim} dimension(s), "
                         f"found only {len(data)} bytes (truncated file)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected, found = int(np.prod(dims, dtype=np.int64)), len(data) - header
    if found != expected:
        kind = "truncated" if found < expected else "oversized"
        raise ValueError(f"IDX file {path}: expected {expected} payload bytes for shape {dims}, "
                         f"found {found} ({kind} or corrupt file)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)

def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX ubyte file (plain or .gz) into a uint8 array; ValueError if malformed."""
    path = check_regular_file(Path(path), "IDX file", "pass an MNIST-style IDX file (plain or .gz)")  # never a FIFO
    return _parse_idx(_idx_bytes(path), path).copy()

def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None

def _find_set(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in `folder`, or None unless all four are there."""
    found = {stem: _find_file(folder, stem) for stem in IDX_NAMES}
    return None if any(p is None for p in found.values()) else found  # type: ignore[return-value]

def _cache_root(required: bool) -> Path | None:
    """$VAE_CORE_DATA, else pooch.os_cache('vae_core'); None if pooch is missing and not required."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import pooch
    except ImportError:
        if required:
            import_optional("pooch", "download=True")
        return None
    return Path(pooch.os_cache("vae_core"))

def _candidate_dirs(name: str, data_dir: Path | None) -> list[tuple[Path, str]]:
    """Folders to search, in order, each with a tag saying where it comes from."""
    dirs: list[tuple[Path, str]] = []
    if data_dir is not None:
        dirs += [(data_dir, "data_dir"), (data_dir / name, "data_dir")]
    if name == "fashion-mnist":
        dirs.append((DEBIAN_FASHION_DIR, "debian"))
    root = _cache_root(required=False)
    if root is not None:
        dirs.append((root / name, "cache"))
    return dirs

def _download(name: str) -> dict[str, Path]:
    """Fetch the four .gz files into the cache; pooch checks each md5."""
    pooch = import_optional("pooch", "download=True")
    folder = _cache_root(required=True) / name  # type: ignore[operator]
    paths = {}
    for stem, md5 in GZ_MD5[name].items():
        fname = f"{stem}.gz"
        paths[stem] = Path(pooch.retrieve(MIRRORS[name] + fname, known_hash=f"md5:{md5}",
                                          fname=fname, path=folder, progressbar=False))
    return paths

def _not_found(name: str, searched: list[Path]) -> FileNotFoundError:
    files = ", ".join(f"{s}[.gz]" for s in IDX_NAMES)
    ways = [f"pass data_dir= (CLI: --data-dir) pointing at a folder holding {files} "
            f"(directly or in a subfolder {name!r})"]
    if name == "fashion-mnist":
        ways.append(f"run `apt-get install dataset-fashion-mnist` (installs them in {DEBIAN_FASHION_DIR})")
    ways.append(f"pass download=True (needs network; files are verified by md5 via pooch and cached "
                f"in ${CACHE_ENV} or pooch.os_cache('vae_core'))")
    note = "" if name == "fashion-mnist" else (
        " (`apt-get install dataset-fashion-mnist` provides Fashion-MNIST only, not MNIST.)")
    where = ", ".join(str(p) for p in searched) or "nowhere"
    return FileNotFoundError(f"{name}: IDX files not found (searched: {where}). Fix it in one of these ways: "
                             + "; ".join(f"({i}) {w}" for i, w in enumerate(ways, 1)) + "." + note)

def _locate(name: str, data_dir: Path | None, download: bool) -> tuple[dict[str, Path], bool]:
    """Paths of the four IDX files and whether they are Debian's copy (to be md5-checked)."""
    dirs = _candidate_dirs(name, data_dir)
    for folder, tag in dirs:
        found = _find_set(folder)
        if found is not None:
            return found, tag == "debian"
    if download:
        return _download(name), False
    raise _not_found(name, [d for d, _ in dirs])

def _check_md5(data: bytes, path: Path, expected: str) -> None:
    found = hashlib.md5(data).hexdigest()
    if found != expected:
        raise ValueError(f"IDX file {path}: expected decompressed md5 {expected}, found {found}; "
                         f"reinstall the package or pass data_dir= / download=True")

def _read_split(name: str, images: Path, labels: Path, md5: dict[str, str] | None) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for path, stem in ((images, images.name.removesuffix(".gz")), (labels, labels.name.removesuffix(".gz"))):
        data = _idx_bytes(path)
        if md5 is not None:
            _check_md5(data, path, md5[stem])
        arrays.append(_parse_idx(data, path))
    x, y = arrays
    if x.ndim != 3 or tuple(x.shape[1:]) != IMAGE_SHAPE_28:
        raise ValueError(f"IDX file {images}: expected images of shape (N, 28, 28), found {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"IDX file {labels}: expected a 1-D label file, found shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: expected as many labels as images, found {x.shape[0]} images in "
                         f"{images} but {y.shape[0]} labels in {labels}; the files are from different sets")
    if y.size and y.max() > 9:
        raise ValueError(f"IDX file {labels}: expected labels 0..9, found {int(y.max())}")
    return x.reshape(len(x), -1), y

@functools.lru_cache(maxsize=4)
def _load_idx_cached(name: str, files: tuple[tuple[str, str, int, int], ...], verify: bool) -> tuple[np.ndarray, ...]:
    """Raw uint8 train/test arrays; keyed on (stem, path, size, mtime) so edited files reload."""
    paths = {stem: Path(p) for stem, p, _, _ in files}
    md5 = RAW_MD5.get(name) if verify else None
    out = []
    for split in ("train", "test"):
        img, lab = IDX_FILES[split]
        out += _read_split(name, paths[img], paths[lab], md5)
    return read_only(*out)

def load_idx(name: str, data_dir: Path | None, download: bool) -> tuple[np.ndarray, ...]:
    """The train and test images and labels of the IDX dataset `name`, found or downloaded (see `load_dataset`)."""
    paths, is_debian = _locate(name, data_dir, download)
    key = []
    for stem in IDX_NAMES:
        st = paths[stem].stat()
        key.append((stem, str(paths[stem].resolve()), st.st_size, st.st_mtime_ns))
    return _load_idx_cached(name, tuple(key), is_debian)

def read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Freeze cached arrays so no caller can corrupt them for the next one."""
    for a in arrays:
        a.flags.writeable = False
    return arrays
