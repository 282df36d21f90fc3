"""`fit` on iterables of batches (a torch `DataLoader`, a `tf.data.Dataset`, any re-iterable), one test body for
every backend (the `backend` argument, tests/conftest.py): one pass per epoch in the order the stream yields, cut
into the trainer's batches (`vae_core.data.stream.BatchStream`). Fed the trainer's own order, a stream trains
exactly as the array; an interrupted epoch restarts from its first batch. The refusals are cases of
tests/cli/bad_inputs.py."""
from __future__ import annotations

import signal

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec, build, evaluate, fit
from vae_core.train.schedule import epoch_permutation

torch = pytest.importorskip("torch")  # torch's DataLoader is the stream PyTorch users bring
tf = pytest.importorskip("tensorflow")  # and tf.data the one Keras users bring

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2, image_shape=(8, 8))
CONFIG = TrainConfig(epochs=2, batch_size=16)


def _rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)  # (n, 64)


def _history(h: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: v for k, v in h.items() if k != "seconds"}


class Batches:
    """A re-iterable of (batch, labels) of `size` rows of x; pass p (1-based) yields x in `orders(p)`, and
    `hook(p, b)` runs before batch b of pass p."""

    def __init__(self, x, size=50, orders=None, hook=None):
        self.x, self.size, self.hook, self.passes = x, size, hook, 0
        self.orders = orders or (lambda p: np.arange(len(x)))

    def __iter__(self):
        self.passes += 1
        rows = self.x[self.orders(self.passes)]
        for b, lo in enumerate(range(0, len(rows), self.size)):
            if self.hook is not None:
                self.hook(self.passes, b)
            yield rows[lo:lo + self.size], np.zeros(len(rows[lo:lo + self.size]), np.int64)


def _stream(kind: str, x: np.ndarray, order: np.ndarray):
    """x in `order` (every pass) as a stream of `kind`, in batches of 50 (not the trainer's 16)."""
    if kind == "iterable":
        return Batches(x, orders=lambda p: order)
    if kind == "tf.data":
        return tf.data.Dataset.from_tensor_slices((x[order], np.arange(len(x)))).batch(50)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.arange(len(x)))
    return torch.utils.data.DataLoader(dataset, batch_size=50, sampler=order.tolist(),
                                       num_workers=2 if kind == "DataLoader, 2 workers" else 0)


@pytest.mark.parametrize("kind", ["DataLoader", "DataLoader, 2 workers", "tf.data", "iterable"])
def test_a_stream_in_the_trainers_order_trains_as_the_array(backend, kind):
    """Each kind of stream, yielding the rows in the order the trainer would choose (`epoch_permutation` of epoch
    1), trains bit for bit as the array (one epoch: the same batches of 16, cut across the stream's batches of 50),
    its validation set is read whole as the array's, and `evaluate` takes a stream too."""
    x, val = _rows(70), _rows(12, seed=2)
    config = TrainConfig(epochs=1, batch_size=16)
    as_array = fit(build(backend, SPEC, seed=0), x, val, config, progress=False)
    model = build(backend, SPEC, seed=0)
    streamed = fit(model, _stream(kind, x, epoch_permutation(0, 0, 70)), _stream(kind, val, np.arange(12)), config,
                   progress=False)
    assert _history(streamed) == _history(as_array)
    assert evaluate(model, _stream(kind, val, np.arange(12))) == evaluate(model, val)


def test_a_stream_keeps_its_own_order_every_epoch(backend):
    """A stream is read once to count its examples, then once per epoch, in its order: yielding the trainer's
    order of each epoch, it trains three epochs exactly as the array."""
    x = _rows(70)
    config = TrainConfig(epochs=3, batch_size=16)
    stream = Batches(x, orders=lambda p: epoch_permutation(0, max(p - 2, 0), 70))  # pass 1 counts
    assert _history(fit(build(backend, SPEC, seed=0), stream, None, config, progress=False)) == \
        _history(fit(build(backend, SPEC, seed=0), x, None, config, progress=False))
    assert stream.passes == 4


def test_uint8_channels_first_batches_train_as_the_uint8_array(backend):
    """A DataLoader of uint8 (C, H, W) image tensors (torchvision's layout) trains as the channels-last uint8
    array."""
    rgb = VAESpec(image_shape=(4, 4, 3), hidden_dims=(16,), latent_dim=2)
    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)  # (N, H, W, C)
    config = TrainConfig(epochs=1, batch_size=8)
    order = epoch_permutation(0, 0, 40)
    loader = torch.utils.data.DataLoader(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), batch_size=16,
                                         sampler=order.tolist())
    assert _history(fit(build(backend, rgb, seed=0), loader, None, config, progress=False)) == \
        _history(fit(build(backend, rgb, seed=0), images, None, config, progress=False))


def test_a_sigterm_mid_epoch_restarts_the_epoch_and_the_resume_is_exact(backend, tmp_path):
    """SIGTERM while epoch 2 reads its batches: no step checkpoint (a stream cannot repeat half an epoch); the
    error says so and names the checkpoint of epoch 1, and resuming from it repeats epoch 2 from its first batch,
    ending exactly where the uninterrupted run ends."""
    from vae_core import read_checkpoint
    from vae_core.train.interrupt import TrainingInterrupted

    x = _rows(400)
    config = TrainConfig(epochs=2, batch_size=8)  # 50 steps an epoch (TF runs blocks of 32)
    whole = fit(build(backend, SPEC, seed=0), Batches(x), None, config, out_dir=tmp_path / "whole", progress=False)

    def sigterm(p: int, b: int) -> None:
        if (p, b) == (3, 1):  # pass 1 counts, pass 2 is epoch 1: the second batch of epoch 2
            signal.raise_signal(signal.SIGTERM)

    cut = tmp_path / "cut" / "last.safetensors"
    with pytest.raises(TrainingInterrupted, match=r"at epoch 2, step \d+ .*train is a stream of batches, which "
                                                  r"cannot resume mid-epoch: checkpoint .* holds the end of epoch 1"
                       ) as stop:
        fit(build(backend, SPEC, seed=0), Batches(x, hook=sigterm), None, config, out_dir=tmp_path / "cut",
            progress=False)
    saved = read_checkpoint(cut)
    assert stop.value.step < 50 and stop.value.checkpoint == str(cut)
    assert saved.epoch == 1 and "position" not in saved.trainer_state
    resumed = fit(build(backend, SPEC, seed=0), Batches(x), None, config, out_dir=tmp_path / "cut", resume_from=cut,
                  progress=False)
    assert _history(resumed) == _history(whole)
    a, b = read_checkpoint(tmp_path / "whole" / "last.safetensors"), read_checkpoint(cut)
    for name in a.weights:
        np.testing.assert_array_equal(b.weights[name], a.weights[name], err_msg=name)


def test_a_stream_is_read_in_order_a_pass_at_a_time():
    """BatchStream: N from a DataLoader's sampler without a pass (its first batch read for the dtype, and that
    pass continued), or counted by one pass; `take` continues where the last stopped, position 0 starts a new
    pass, and anything else out of order is refused."""
    from vae_core.data.stream import BatchStream

    x = _rows(10)
    loader = torch.utils.data.DataLoader(torch.from_numpy(x), batch_size=4, drop_last=True)
    rows = BatchStream(loader, SPEC)
    assert rows.shape == (8, 64) and rows.passes == 1 and rows.dtype == np.float32
    np.testing.assert_array_equal(rows.take(np.arange(0, 3)), x[:3])
    np.testing.assert_array_equal(rows.take(np.arange(3, 8)), x[3:8])
    assert rows.passes == 1
    np.testing.assert_array_equal(rows.take(np.arange(0, 5)), x[:5])
    assert rows.passes == 2
    with pytest.raises(ValueError, match=r"the next position of pass 2 is 5, not 6"):
        rows.take(np.arange(6, 8))
    with pytest.raises(ValueError, match=r"positions must be consecutive and inside \[0, 8\)"):
        rows.take(np.array([5, 7]))
    counted = BatchStream(Batches(x, size=3), SPEC)
    assert counted.shape == (10, 64) and counted.passes == 1
    np.testing.assert_array_equal(np.asarray(counted), x)
    assert counted.passes == 2
