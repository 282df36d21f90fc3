"""Keras' own `keras.callbacks.TensorBoard` on Keras' own `fit` of a `build("tf")` model: it works out of the box
with our extras (TensorFlow >= 2.20 no longer brings the `tensorboard` package; the `tf`, `tf-cpu` and
`tensorboard` extras do), and its files use the tags our `vae_core.callbacks.TensorBoard` writes."""
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402

from vae_core import VAESpec, build  # noqa: E402
from vae_core.data import load_dataset  # noqa: E402


def test_keras_own_tensorboard_callback_logs_a_keras_fit(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    data = load_dataset("digits")
    model = build("tf", VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(data.x_train, validation_data=(data.x_test,), epochs=2, batch_size=256, verbose=0,
                        callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    for run, prefix in (("train", ""), ("validation", "val_")):
        accumulator = EventAccumulator(str(tmp_path / run), size_guidance={"tensors": 0})
        accumulator.Reload()
        assert "epoch_loss" in accumulator.Tags()["tensors"]  # TF 2 writes scalars as tensors
        logged = accumulator.Tensors("epoch_loss")
        assert [e.step for e in logged] == [0, 1]  # Keras counts epochs from 0
        assert [float(make_ndarray(e.tensor_proto)) for e in logged] == pytest.approx(history.history[f"{prefix}loss"])
