"""torchvision's datasets by name (`load_dataset("torchvision:...", data_dir=root)`), read offline from tiny roots
in tmp_path: what each split holds, that the training split streams through `fit` as the same rows would, the image
folder's split, and the class names, which the plots show in place of the labels."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torchvision")

import vae_core  # noqa: E402
from vae_core.data import Dataset, load_dataset, load_images  # noqa: E402
from vae_core.data.dataset import DIGIT_CLASSES, FASHION_MNIST_CLASSES  # noqa: E402
from vae_core.data import vision  # noqa: E402
from tests import torchvision_roots as roots  # noqa: E402

SPEC = dict(hidden_dims=(16,), latent_dim=2)
CONFIG = vae_core.TrainConfig(epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchvision")
    return roots.idx_root(roots.idx_root(root, "MNIST"), "FashionMNIST")


@pytest.mark.parametrize("name, folder, names", [("torchvision:mnist", "MNIST", DIGIT_CLASSES),
                                                 ("torchvision:fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES)])
def test_idx_datasets_hold_the_builtin_readers_images(idx_root, name, folder, names):
    data = load_dataset(name, data_dir=idx_root)
    same = load_dataset("mnist", data_dir=idx_root / folder / "raw")  # the IDX reader of the built-in sets
    assert type(data.x_train).__name__ == folder and len(data.x_train) == 60  # the torchvision dataset itself
    image, label = data.x_train[7]
    image = np.asarray(image)  # torchvision's item: a PIL image
    assert image.dtype == np.uint8 and image.shape == (28, 28) and label == same.y_train[7]
    np.testing.assert_array_equal(image.reshape(-1), (same.x_train[7] * 255).round().astype(np.uint8))
    np.testing.assert_array_equal(data.x_test, same.x_test)  # read into memory, float32 / 255
    np.testing.assert_array_equal(data.y_train, same.y_train)
    assert data.image_shape == (28, 28) and data.input_dim == 784 and data.class_names == names
    assert load_dataset(name, data_dir=idx_root, dtype="uint8").x_test.dtype == np.uint8
    assert "x_train=" + folder + " of 60 items" in repr(data)


def test_torchvision_in_memory_datasets_are_read_a_batch_at_a_time(idx_root, monkeypatch):
    """MNIST-family datasets without a transform (and a Subset of one) are read from their `data` by one gather per
    batch: the pixels their items give, with no __getitem__ per item; with a transform, item by item."""
    from torch.utils.data import Subset

    from vae_core.data.items import ItemRows

    data = load_dataset("torchvision:fashion-mnist", data_dir=idx_root)
    spec = vae_core.VAESpec(image_shape=(28, 28), **SPEC)
    positions = np.array([5, 0, 59, 7])
    by_item = np.stack([np.asarray(data.x_train[int(i)][0]).reshape(-1) for i in positions])
    for dataset, order in ((data.x_train, positions), (Subset(data.x_train, list(range(59, -1, -1))), 59 - positions)):
        rows = ItemRows(dataset, spec)
        monkeypatch.setattr(type(data.x_train), "__getitem__", lambda *a: pytest.fail("read item by item"))
        np.testing.assert_array_equal(rows.take(order), by_item)
        monkeypatch.undo()
    data.x_train.transform = np.asarray
    reads = []
    rows = ItemRows(data.x_train, spec)
    getitem = type(data.x_train).__getitem__
    monkeypatch.setattr(type(data.x_train), "__getitem__", lambda self, i: reads.append(i) or getitem(self, i))
    np.testing.assert_array_equal(rows.take(positions), by_item)
    assert reads == positions.tolist()


def test_fit_on_a_torchvision_dataset_is_fit_on_its_rows(idx_root, backend):
    data = load_dataset("torchvision:fashion-mnist", data_dir=idx_root)
    rows = load_dataset("fashion-mnist", data_dir=idx_root / "FashionMNIST" / "raw", dtype="uint8")
    spec = vae_core.VAESpec(image_shape=data.image_shape, **SPEC)
    streamed = vae_core.fit(vae_core.build(backend, spec, seed=0), data.x_train, data.x_test, CONFIG, progress=False)
    in_memory = vae_core.fit(vae_core.build(backend, spec, seed=0), rows.x_train, rows.x_test, CONFIG, progress=False)
    assert streamed["train_loss"] == in_memory["train_loss"] and streamed["val_loss"] == in_memory["val_loss"]


def test_cifar10_reads_the_python_batches_and_names_classes(tmp_path, monkeypatch, backend):
    roots.accept_cifar10(monkeypatch, roots.cifar10_root(tmp_path))
    data = load_dataset("torchvision:cifar10", data_dir=tmp_path)
    assert len(data.x_train) == 50 and data.x_test.shape == (20, 32 * 32 * 3) and data.image_shape == (32, 32, 3)
    assert data.class_names == roots.CIFAR_CLASSES
    x, y = roots.images(10, (32, 32, 3), 10, seed=1)  # data_batch_2
    image, label = data.x_train[13]
    np.testing.assert_array_equal(image, x[3])  # channels last, as the model's image_shape
    assert label == y[3]
    spec = vae_core.VAESpec(image_shape=data.image_shape, **SPEC)
    history = vae_core.fit(vae_core.build(backend, spec, seed=0), data.x_train, data.x_test, CONFIG, progress=False)
    assert np.isfinite(history["val_loss"]).all()


def test_image_folder_streams_its_training_split(tmp_path, monkeypatch):
    roots.image_folder(tmp_path, per_class=10)
    reads = []
    monkeypatch.setattr(vision.ImageFile, "__call__", lambda self, path, read=vision.ImageFile.__call__:
                        reads.append(path) or read(self, path))
    data = load_dataset("torchvision:image-folder", data_dir=tmp_path)
    assert len(reads) == len(data.x_test) + 1  # the test split, and training item 0 once: nothing else decoded
    assert data.class_names == ("cat", "dog", "owl") and data.image_shape == (8, 8)
    # a stratified 80/20 split, fixed whatever the run's seed: 2 of each class's 10 images to test
    assert np.bincount(data.y_test).tolist() == [2, 2, 2] and np.bincount(data.y_train).tolist() == [8, 8, 8]
    again = load_dataset("torchvision:image-folder", data_dir=tmp_path, seed=5)
    assert data.x_train.indices == again.x_train.indices
    image, label = data.x_train[3]
    assert image.shape == (8, 8, 1) and image.dtype == np.uint8 and label == data.y_train[3]


def test_image_folder_uses_train_and_test_folders(tmp_path):
    roots.image_folder(tmp_path / "train", per_class=4)
    roots.image_folder(tmp_path / "test", classes=("dog", "owl"), per_class=2, seed=1)  # no cat to test on
    data = load_dataset("torchvision:image-folder", data_dir=tmp_path)
    assert len(data.x_train) == 12 and data.y_test.tolist() == [1, 1, 2, 2]  # labels of train/'s classes
    assert data.class_names == ("cat", "dog", "owl")


def test_image_folder_resizes_and_converts(tmp_path):
    roots.image_folder(tmp_path, classes=("a", "b"), per_class=3)
    roots.image_folder(tmp_path, classes=("a",), per_class=1, shape=(10, 6, 3), seed=2)  # a.000.png: RGB, 10x6
    data = load_dataset("torchvision:image-folder", data_dir=tmp_path, image_size=(5, 7), mode="RGB")
    assert data.image_shape == (5, 7, 3) and data.x_train[0][0].shape == (5, 7, 3)
    assert data.x_test.shape[1] == 5 * 7 * 3


def test_class_names_of_the_builtin_sets_and_own_folders(idx_root, tmp_path):
    assert load_dataset("digits").class_names == DIGIT_CLASSES
    assert load_dataset("fashion-mnist", data_dir=idx_root / "FashionMNIST" / "raw").class_names[0] == "T-shirt/top"
    roots.image_folder(tmp_path / "own", classes=("bird", "cat"), per_class=3)
    assert load_images(tmp_path / "own").class_names == ("bird", "cat")
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"Dataset.class_names must be a name for every label \(labels go up to 2\)"):
        Dataset("d", x, np.array([0, 2]), x, np.array([1, 0]), (2, 2), ("a", "b"))


# ------------------------------------------------------------------ the class names in the plots


def _texts(monkeypatch, module):
    """The texts of every figure `module` saves, as they are saved."""
    import matplotlib.text

    texts = []
    save = module.save
    monkeypatch.setattr(module, "save", lambda fig, *a, **k: texts.append(
        [t.get_text() for t in fig.findobj(matplotlib.text.Text)]) or save(fig, *a, **k))
    return texts


def test_plots_show_class_names(tmp_path, monkeypatch):
    from vae_core.viz import grids, latent

    names = FASHION_MNIST_CLASSES
    labels = np.array([0, 9, 0, 5, 9, 5])
    z = np.random.default_rng(0).normal(size=(6, 2))
    shown = _texts(monkeypatch, latent)
    latent.plot_latent_scatter(z, labels, tmp_path / "s.png", class_names=names, dpi=20)
    latent.plot_latent_scatter(z[:, :1], labels, tmp_path / "s1.png", class_names=names, dpi=20)
    latent.plot_tsne(z, labels, tmp_path / "t.png", class_names=names, dpi=20)
    for texts in shown:
        assert {"T-shirt/top", "Sandal", "Ankle boot"} <= set(texts) and "9" not in texts
    titles = _texts(monkeypatch, grids)
    images = np.random.default_rng(0).random((6, 64))
    grids.plot_reconstructions(images, images, (8, 8), tmp_path / "r.png", labels=labels, class_names=names, dpi=20)
    assert ["T-shirt/top", "Ankle boot", "T-shirt/top"] == [t for t in titles[0] if t in names][:3]
    with pytest.raises(ValueError, match=r"plot_tsne.class_names must be a name for every label"):
        latent.plot_tsne(z, labels, tmp_path / "t.png", class_names=names[:3])


def test_without_torchvision_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)  # what an install without torchvision gives
    with pytest.raises(ImportError, match=r"dataset 'torchvision:mnist' needs the optional package 'torchvision'; "
                                          r"install it with: pip install 'vae-core\[torch\]'"):
        load_dataset("torchvision:mnist", data_dir=tmp_path)


def test_image_folder_reads_files_upright_and_refuses_16_bit_and_animated_ones_by_name(tmp_path):
    """Issue 32: the EXIF orientation is applied (sizes are checked upright, before decoding); a 16-bit file, which
    the uint8 items would clip, and an animated one are refused by name, each with a fix."""
    from PIL import Image

    roots.image_folder(tmp_path, classes=("a", "b"), per_class=3, shape=(8, 6))  # 8 high, 6 wide
    rows, cols = np.mgrid[:6, :8]
    stored = (20 * rows + 10 * cols).astype(np.uint8)  # 6 high, 8 wide as stored: 8 x 6 once turned
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to show
    Image.fromarray(stored).save(tmp_path / "a" / "turned.png", exif=exif.tobytes())
    data = load_dataset("torchvision:image-folder", data_dir=tmp_path)
    assert data.image_shape == (8, 6)
    files = [path for path, _ in data.x_train.dataset.samples]
    turned = vision.ImageFile("L")(files[[i for i, p in enumerate(files) if p.endswith("turned.png")][0]])
    np.testing.assert_array_equal(turned[..., 0], np.rot90(stored, -1))
    Image.fromarray((np.arange(48) * 1000).astype(np.uint16).reshape(8, 6)).save(tmp_path / "b" / "deep.png")
    with pytest.raises(ValueError, match=r"'.*deep\.png' is a 16-bit image .*would clip; read the folder with vae "
                                         r"train --data FOLDER \(load_images, which keeps 16-bit levels"):
        load_dataset("torchvision:image-folder", data_dir=tmp_path, mode="L")
    (tmp_path / "b" / "deep.png").unlink()
    frames = [Image.fromarray(np.full((8, 6), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "b" / "moving.png", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"'.*moving\.png' is animated \(2 frames\)"):
        load_dataset("torchvision:image-folder", data_dir=tmp_path)
