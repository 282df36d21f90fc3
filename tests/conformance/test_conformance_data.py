"""`fit` on map-style datasets (a torch `Dataset`, `TensorDataset`, any class with `__len__` and `__getitem__`), one
test body for every backend (the `backend` argument, tests/conftest.py): the trainer keeps choosing the order and
the noise and reads each batch's items by index (`vae_core.data.items.ItemRows`), so a dataset trains exactly as
the same rows given as an array, with or without parallel readers (`data_workers`), through a SIGTERM and a
resume. The refusals are cases of tests/cli/bad_inputs.py."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, evaluate, fit

torch = pytest.importorskip("torch")  # torch's TensorDataset and DataLoader are the datasets users bring

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2, image_shape=(8, 8))
RGB = VAESpec(image_shape=(4, 4, 3), hidden_dims=(16,), latent_dim=2)  # input_dim 48
CONFIG = TrainConfig(epochs=2, batch_size=16)


def _rows(n: int, d: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)  # (n, d)


def _history(h: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: v for k, v in h.items() if k != "seconds"}


class Items:
    """A plain map-style dataset over `examples`, with (example, label) items, recording the indices it is asked
    for; `hook(i)` runs before each read. It can be iterated, but fit must not: it reads by index."""

    def __init__(self, examples, hook=None):
        self.examples, self.hook, self.reads = examples, hook, []

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        self.reads.append(i)
        if self.hook is not None:
            self.hook(i)
        return self.examples[i], i % 10

    def __iter__(self):
        raise AssertionError("fit iterated the dataset instead of reading it by index")


def test_a_dataset_trains_exactly_as_its_rows_read_by_index(backend):
    """A TensorDataset of (x, label) trains bit for bit as the array x (the same history, and evaluate agrees),
    whether its items are read in the training process or by parallel readers (data_workers=2). The items are read
    by index, never scanned first: item 0 once (its dtype), then each epoch every item once, in the trainer's order
    (`epoch_permutation`), a batch (TF: a block of batches) at a time; the padding of a last batch and the blocks
    TF reads ahead past a run read nothing. The validation set is read once, at the start."""
    from vae_core.train.schedule import epoch_permutation

    x, val = _rows(70), _rows(12, seed=2)
    as_array = fit(build(backend, SPEC, seed=0), x, val, CONFIG, progress=False)
    model = build(backend, SPEC, seed=0)
    val_dataset = torch.utils.data.TensorDataset(torch.from_numpy(val))
    in_workers = fit(model, torch.utils.data.TensorDataset(torch.from_numpy(x), torch.arange(70)), val_dataset,
                     CONFIG, progress=False, data_workers=2)
    assert _history(in_workers) == _history(as_array)
    assert evaluate(model, val_dataset) == evaluate(model, val)

    recorded, recorded_val = Items(list(x)), Items(list(val))
    in_process = fit(build(backend, SPEC, seed=0), recorded, recorded_val, CONFIG, progress=False)
    assert _history(in_process) == _history(as_array)
    order, reads = [int(i) for epoch in (0, 1) for i in epoch_permutation(0, epoch, 70)], recorded.reads[1:]
    assert recorded.reads[0] == 0 and recorded_val.reads == [0, *range(12)]
    assert reads == order


def test_uint8_channels_first_images_train_as_the_uint8_array(backend):
    """uint8 (C, H, W) torch images, as torchvision's read_image gives them, are the channels-last uint8 array's
    examples: the same history, bit for bit."""
    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)  # (N, H, W, C)
    channels_first = [torch.from_numpy(image.transpose(2, 0, 1).copy()) for image in images]  # (C, H, W) each
    config = TrainConfig(epochs=1, batch_size=16)
    as_array = fit(build(backend, RGB, seed=0), images, images[:8], config, progress=False)
    as_dataset = fit(build(backend, RGB, seed=0), Items(channels_first), Items(channels_first[:8]), config,
                     progress=False)
    assert _history(as_dataset) == _history(as_array)


def test_a_sigterm_while_readers_read_stops_at_a_step_and_the_resume_is_exact(backend, tmp_path):
    """SIGTERM to the training process and to the reader (a DataLoader worker for torch, as a signal to the process
    group would be; TF's readers are threads): the trainer stops at a step boundary with a checkpoint, and resuming
    with the dataset ends exactly where the uninterrupted run on the array does. A dataset of another length is
    refused on resume, as another array is."""
    from vae_core import CheckpointError, read_checkpoint
    from vae_core.train.interrupt import TrainingInterrupted

    x = _rows(100)
    config = TrainConfig(epochs=2, batch_size=8, checkpoint_every_steps=5)  # 13 steps an epoch
    whole = fit(build(backend, SPEC, seed=0), x, None, config, out_dir=tmp_path / "whole", progress=False)
    trainer, marker = os.getpid(), tmp_path / "signalled"

    def sigterm_once(i: int) -> None:
        if i == 37 and not marker.exists():  # item 37 of epoch 1 (not the dtype read of item 0)
            marker.touch()
            os.kill(os.getpid(), signal.SIGTERM)  # the reader itself: a worker process ignores it
            if os.getpid() != trainer:
                os.kill(trainer, signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as stop:
        fit(build(backend, SPEC, seed=0), Items(x, hook=sigterm_once), None, config, out_dir=tmp_path / "cut",
            progress=False, data_workers=2)
    cut = tmp_path / "cut" / "last.safetensors"
    assert marker.exists() and stop.value.checkpoint == str(cut) and stop.value.signum == signal.SIGTERM
    assert "position" in read_checkpoint(cut).trainer_state  # item 37 is the 14th of epoch 1: a step inside it
    with pytest.raises(CheckpointError, match=r"a run with 100 training examples and batch_size 8, but this run "
                                              r"has 64 and 8"):
        fit(build(backend, SPEC, seed=0), Items(x[:64]), None, config, resume_from=cut, progress=False)
    resumed = fit(build(backend, SPEC, seed=0), Items(x), None, config, out_dir=tmp_path / "cut", resume_from=cut,
                  progress=False, data_workers=2)
    assert _history(resumed) == _history(whole)
    a, b = read_checkpoint(tmp_path / "whole" / "last.safetensors"), read_checkpoint(cut)
    for name in a.weights:
        np.testing.assert_array_equal(b.weights[name], a.weights[name], err_msg=name)


@pytest.mark.parametrize("data_workers", [0, 2])
def test_a_bad_item_read_during_training_is_one_error_naming_it(backend, data_workers):
    """An item that raises while training runs (after the first steps) stops fit with the error of
    tests/cli/bad_inputs.py, not a framework's wrapper of it, whoever read it."""
    x = _rows(100)

    def fail_at_73(i: int) -> None:
        if i == 73:
            raise OSError("disk on fire")

    with pytest.raises(ValueError, match=r"^train\[73\] raised OSError: disk on fire\. Every index in \[0, 100\)"):
        fit(build(backend, SPEC, seed=0), Items(x, hook=fail_at_73), None, TrainConfig(epochs=1, batch_size=8),
            progress=False, data_workers=data_workers)


def test_an_item_may_be_any_array_like_in_any_layout():
    """The example of an item is what np.asarray reads (NumPy, torch, TF tensors, PIL images), alone or first in a
    tuple or list, as a row, a channels-last image, (H, W) for one channel, or channels first."""
    tf = pytest.importorskip("tensorflow")
    from PIL import Image

    from vae_core.data.items import ItemRows

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    rows = images.reshape(4, 64)
    kinds = [images, rows, images[..., None], images[:, None], [torch.from_numpy(i) for i in images],
             [(tf.constant(i), 0) for i in images], [[Image.fromarray(i), "label"] for i in images]]
    for kind in kinds:
        items = ItemRows(kind if not isinstance(kind, np.ndarray) else list(kind), SPEC)
        assert items.shape == (4, 64) and items.dtype == np.uint8
        np.testing.assert_array_equal(items.take(np.array([2, 0, 2])), rows[[2, 0, 2]])
    floats = ItemRows([torch.from_numpy(r.astype(np.float64) / 255) for r in rows], SPEC)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(floats), (rows / 255).astype(np.float32))


@pytest.mark.parametrize("given, found", [
    (lambda: type("Stream", (torch.utils.data.IterableDataset,), {"__iter__": lambda self: iter([])})(),
     r"got Stream, an IterableDataset, which yields examples one at a time: wrap it in "
     r"torch\.utils\.data\.DataLoader\(train, batch_size=\.\.\.\)"),
    (lambda: (row for row in np.zeros((4, 64))), r"got generator, an iterator \(a generator\?\), which can be read "
                                                  r"once: fit reads one pass per epoch"),
    (lambda: torch.zeros(4, 64), r"got Tensor: convert it with np\.asarray"),
    (lambda: "images.npy", r"got str 'images\.npy', a path\? .*load_images\(path\)"),
    (lambda: 3.0, r"got float, which has neither __len__ and __getitem__ nor __iter__"),
])
def test_other_kinds_are_refused_with_a_true_hint(given, found):
    from vae_core.train.arguments import check_fit_inputs

    with pytest.raises(TypeError, match=r"^train must be a NumPy array of shape \(N, 64\) .*, a \.npy map .*, a "
                                        r"map-style dataset \(__len__ and __getitem__.*, or a re-iterable of batches "
                                        r"\(a torch DataLoader, a tf\.data\.Dataset\); " + found):
        check_fit_inputs(SPEC, given(), None, TrainConfig())


def test_dynamic_binarization_reads_a_dataset_into_memory_with_a_warning():
    from vae_core.data.items import ItemRows
    from vae_core.train.arguments import check_fit_inputs

    x = _rows(6)
    assert isinstance(check_fit_inputs(SPEC, Items(x), None, TrainConfig())[0], ItemRows)
    with pytest.warns(UserWarning, match=r"read into memory: .* dynamic_binarization=False to read it a batch"):
        train, _ = check_fit_inputs(SPEC, Items(x), None, TrainConfig(dynamic_binarization=True))
    np.testing.assert_array_equal(train, x)
