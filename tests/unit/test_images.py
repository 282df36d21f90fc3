"""The user's own images: `vae_core.data.load_images` on folders of PNG/JPEG files and on .npy/.npz arrays."""
import re

import numpy as np
import pytest

from vae_core.data import load_images, read_images
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
    with pytest.raises(FileNotFoundError, match=r"no \.png/\.jpg/\.jpeg/\.webp/.* files"):
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


# ------------------------------------------------------------------- issue 32: no silent data changes in image files
def _gradient16(path):
    """An 8x8 16-bit grey PNG of 64 levels spread over 0..65535; returns the levels."""
    levels = (np.arange(64) * 65535 // 63).astype(np.uint16).reshape(8, 8)
    PIL.fromarray(levels).save(path)
    assert PIL.open(path).mode.startswith("I")  # Pillow reads it as a 16-bit mode
    return levels


def test_16_bit_files_keep_every_level_scaled_by_the_16_bit_range(tmp_path):
    levels = _gradient16(tmp_path / "a.png")
    _gradient16(tmp_path / "b.png")
    images = read_images(tmp_path)
    assert images.x.dtype == np.float32 and images.image_shape == (8, 8)
    assert len(np.unique(images.x[0])) == 64  # Pillow's own convert("L") keeps 2 of them
    np.testing.assert_allclose(images.x[0], levels.reshape(-1) / 65535, rtol=1e-6)
    assert images.x.min() == 0.0 and images.x.max() == 1.0
    data = load_images(tmp_path, mode="L")  # the advice an older vae_core gave: now it keeps the levels too
    assert data.x_train.dtype == np.float32 and len(np.unique(data.x_train)) == 64
    rgb = read_images(tmp_path, mode="RGB")
    assert rgb.image_shape == (8, 8, 3) and np.array_equal(rgb.x[0, 0::3], images.x[0])
    resized = read_images(tmp_path, image_size=(4, 4))
    assert resized.x.dtype == np.float32 and len(np.unique(resized.x[0])) == 16 and resized.x.max() <= 1.0


def test_an_8_bit_file_beside_16_bit_ones_is_scaled_by_255(tmp_path):
    _gradient16(tmp_path / "a.png")
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    PIL.fromarray(grey).save(tmp_path / "b.png")
    images = read_images(tmp_path)
    assert images.x.dtype == np.float32 and images.files == ("a.png", "b.png")
    np.testing.assert_allclose(images.x[1], grey.reshape(-1) / 255, rtol=1e-6)


def test_32_bit_integer_and_float_files_are_refused_by_name_with_a_fix(tmp_path):
    PIL.fromarray(np.full((4, 4), 70000, np.int32), "I").save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"'.*wide\.tif' holds 32-bit integer pixels in \[70000, 70000\].*save it "
                                         r"as a 16-bit PNG"):
        read_images(tmp_path)
    (tmp_path / "wide.tif").unlink()
    PIL.fromarray(np.full((4, 4), 0.5, np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"'.*float\.tif' holds 32-bit float pixels .*a \.npy of floats in \[0, 1\]"):
        read_images(tmp_path, mode="L")


@pytest.mark.parametrize("suffix, orientation, turn", [(".png", 6, -1), (".png", 8, 1), (".jpg", 6, -1)])
def test_the_exif_orientation_is_applied(tmp_path, suffix, orientation, turn):
    rows, cols = np.mgrid[:16, :24]
    pixels = (6 * rows + 4 * cols).astype(np.uint8)  # 16 high, 24 wide as stored; smooth, so a JPEG keeps it
    exif = PIL.Exif()
    exif[0x0112] = orientation  # 6: turn 90 degrees clockwise to show; 8: counter-clockwise
    PIL.fromarray(pixels).save(tmp_path / f"a{suffix}", exif=exif.tobytes(), **({"quality": 100} if suffix == ".jpg"
                                                                                  else {}))
    images = read_images(tmp_path)
    assert images.image_shape == (24, 16)  # upright: 24 high, 16 wide
    shown = images.x[0].reshape(24, 16).astype(int)
    assert np.abs(shown - np.rot90(pixels, turn)).max() <= (0 if suffix == ".png" else 3)
    assert np.abs(shown - np.rot90(pixels, -turn)).mean() > 20  # not the other way round


def test_animated_files_are_refused_by_name(tmp_path):
    frames = [PIL.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    _folder(tmp_path, [(8, 8)], mode="L", classes=("a",))
    frames[0].save(tmp_path / "a" / "moving.png", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"'.*moving\.png' is animated \(2 frames\): only its first frame would be "
                                         r"read; save the frames you want as still images"):
        load_images(tmp_path)
    (tmp_path / "a" / "moving.png").unlink()
    frames[0].save(tmp_path / "a" / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"'.*moving\.gif' is animated"):
        load_images(tmp_path, mode="L")


def test_an_unreadable_file_is_refused_by_name(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2, classes=("a",))
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match=r"load_images: '.*broken\.png' is not a readable image .*; remove or "
                                         r"replace it"):
        load_images(tmp_path)


def test_other_image_types_are_read_and_other_files_counted_in_one_warning(tmp_path):
    _folder(tmp_path, [(8, 8)] * 2, classes=("a",))
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    PIL.fromarray(rgb).save(tmp_path / "a" / "c.bmp")
    PIL.fromarray(rgb).save(tmp_path / "a" / "d.webp", lossless=True)
    PIL.fromarray(rgb).save(tmp_path / "a" / "e.tif")
    for name in ("notes.txt", "labels.txt", "README"):
        (tmp_path / "a" / name).write_text("x")
    with pytest.warns(UserWarning) as caught:
        images = read_images(tmp_path)
    assert images.files == ("a/000.png", "a/001.png", "a/c.bmp", "a/d.webp", "a/e.tif")
    for i in (2, 3, 4):  # lossless: exactly the pixels written
        np.testing.assert_array_equal(images.x[i], rgb.reshape(-1))
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1 and caught[0].filename == __file__, notes
    assert re.fullmatch(r"read_images: skipped 3 files that are not images in '.*' \(2 \.txt, 1 \(no extension\)\); "
                        r"it reads \.png/\.jpg/.*/\.tiff files", notes[0]), notes[0]
