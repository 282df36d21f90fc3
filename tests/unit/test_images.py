"""The user's own images: `vae_core.data.load_images` on folders of PNG/JPEG files and on .npy/.npz arrays."""
import numpy as np
import pytest

from vae_core.data import load_images
from vae_core.data.mapped import MappedRows

PIL = pytest.importorskip("PIL.Image")


def _folder(root, shapes, mode="RGB", suffix=".png", classes=("a", "b")):
    """Image files of the given (H, W) sizes under root/<class>/, cycling through the classes; returns the arrays
    in sorted path order."""
    rng = np.random.default_rng(0)
    written = {}
    for i, (h, w) in enumerate(shapes):
        folder = root / classes[i % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
        path = folder / f"{i:03d}{suffix}"
        PIL.fromarray(pixels, mode).save(path)
        written[path] = pixels
    return [written[p] for p in sorted(written)]


def test_a_folder_of_pngs_is_uint8_rows_with_folder_labels_and_a_reproducible_split(tmp_path):
    pixels = _folder(tmp_path, [(27, 29)] * 20)
    data = load_images(tmp_path, seed=3)
    assert data.image_shape == (27, 29, 3) and data.input_dim == 27 * 29 * 3
    assert data.x_train.dtype == np.uint8 and (len(data.x_train), len(data.x_test)) == (18, 2)
    test = np.sort(np.random.default_rng(3).permutation(20)[:2])
    np.testing.assert_array_equal(data.x_test, np.stack([pixels[i] for i in test]).reshape(2, -1))
    np.testing.assert_array_equal(data.y_test, test >= 10)  # sorted paths: the 10 files of a/, then b/'s
    again = load_images(tmp_path, seed=3)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    assert not np.array_equal(load_images(tmp_path, seed=4).x_test, data.x_test)


def test_grey_jpegs_have_one_channel(tmp_path):
    _folder(tmp_path, [(16, 12)] * 4, mode="L", suffix=".jpg", classes=("all",))
    data = load_images(tmp_path, test_fraction=0.25)
    assert data.image_shape == (16, 12) and data.x_train.shape == (3, 192) and set(data.y_train) == {0}


def test_mixed_sizes_are_refused_naming_the_file_unless_resized(tmp_path):
    _folder(tmp_path, [(28, 28), (28, 28), (30, 28)])
    with pytest.raises(ValueError, match=r"load_images: '.*002\.png' has size 30x28, but '.*000\.png' \(the first "
                                         r"file\) has 28x28.*image_size=\(H, W\) \(--image-size H,W\)"):
        load_images(tmp_path)
    data = load_images(tmp_path, image_size=(16, 20))
    assert data.image_shape == (16, 20, 3) and len(data.x_train) + len(data.x_test) == 3


def test_mixed_modes_are_refused_naming_the_file_unless_converted(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2, mode="RGB", classes=("a",))
    _folder(tmp_path / "z", [(8, 8)], mode="L", classes=("grey",))
    with pytest.raises(ValueError, match=r"'.*grey.000\.png' has mode L, but .* has RGB.*mode='L' or 'RGB'"):
        load_images(tmp_path)
    assert load_images(tmp_path, mode="L").image_shape == (8, 8)


def test_npy_is_memory_mapped_and_npz_read_without_pickles(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (50, 9, 7, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    seen = {}
    real_load = np.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    data = load_images(tmp_path / "x.npy")
    assert seen == {"mmap_mode": "r", "allow_pickle": False}
    assert data.image_shape == (9, 7, 3) and data.x_train.dtype == np.uint8 and len(data.x_test) == 5
    assert isinstance(data.x_train, MappedRows) and isinstance(data.x_train.source, np.memmap)  # stays in the file
    assert type(data.x_test) is np.ndarray  # the test split is read
    rows = images.reshape(50, -1)
    np.testing.assert_array_equal(data.x_train[[0, 2]], rows[data.x_train.index[[0, 2]]])
    np.testing.assert_array_equal(np.sort(np.concatenate([data.x_train, data.x_test]), axis=0), np.sort(rows, axis=0))
    np.savez(tmp_path / "x.npz", images=images.astype(np.float32) / 255, labels=np.zeros(50))
    seen.clear()
    floats = load_images(tmp_path / "x.npz")
    assert floats.x_train.dtype == np.float32 and floats.image_shape == (9, 7, 3)
    assert seen == {"allow_pickle": False}


@pytest.mark.parametrize("make, match", [
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8), np.uint8)), r"shape \(N, H, W\) or \(N, H, W, C\)"),
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8, 8, 2), np.uint8)), r"with C 1 or 3 .*\(4, 8, 8, 2\)"),
    (lambda p: np.save(p / "a.npy", np.full((4, 8, 8), 2.0)), r"float pixels in \[0, 1\]"),
    (lambda p: np.save(p / "a.npy", np.zeros((4, 8, 8), np.int32)), r"uint8 images, or float32/float64"),
    (lambda p: np.save(p / "a.npy", np.array([{"x": 1}], dtype=object)), r"not a readable NumPy file without pickles"),
    (lambda p: np.savez(p / "a.npz", a=np.zeros((4, 8, 8)), b=np.zeros(4)), r"one named 'images' or 'x'"),
])
def test_bad_arrays_are_refused_with_what_was_found(tmp_path, make, match):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(ValueError, match=match):
        load_images(path)


def test_bad_arguments_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"no \.png/\.jpg/\.jpeg files"):
        load_images(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"load_images\.image_size must be None for an array file"):
        load_images(tmp_path / "a.npy", image_size=(4, 4))
    with pytest.raises(ValueError, match=r"load_images\.test_fraction must be a number in \(0, 1\)"):
        load_images(tmp_path / "a.npy", test_fraction=1.0)
    with pytest.raises(ValueError, match=r"load_images\.mode must be None, 'L' \(grey levels\) or 'RGB'"):
        load_images(tmp_path, mode="CMYK")


def test_importing_the_images_module_first_works():
    """vae_core.data re-exports load_images; vae_core.data.images imported first, in a fresh process, has no cycle."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "from vae_core.data.images import load_images; import vae_core.data"],
                   check=True)
