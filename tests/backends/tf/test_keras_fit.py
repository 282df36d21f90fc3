"""Keras' own `compile`/`fit` on a `build("tf")` model: the speed settings `VAE.compile` picks when the caller
picks none (XLA, and `vae_core.fit`'s batches per compiled call, run as one XLA program by
`backends.tf.steps.block_train_function`), a caller's explicit values winning, `vae_core.fit`'s own compile left as
it was, and the same numbers from every setting (`scripts/bench_keras_fit.py` measures the speed). Each XLA program
compiles in a few seconds on a CPU, so these tests compile as few as they can."""
import csv

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from backends.tf import steps  # noqa: E402
from backends.tf.steps import default_steps_per_execution  # noqa: E402
from backends.tf.pipeline import BATCHES_PER_BLOCK, CONV_BATCHES_PER_BLOCK  # noqa: E402
from backends.tf.train import Trainer  # noqa: E402
from backends.tf.weights import export_weights  # noqa: E402
from vae_core import TrainConfig, VAESpec, build  # noqa: E402
from vae_core.data import load_dataset  # noqa: E402

# The 8x8 digits; the first 1408 training rows are 44 batches of 32, two calls an epoch at the default 32 steps per
# execution.
DIGITS = load_dataset("digits")
SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=2, image_shape=DIGITS.image_shape)
CONV = VAESpec(input_dim=64, architecture="conv", conv_channels=(4,), hidden_dims=(8,), latent_dim=2,
               image_shape=DIGITS.image_shape)
BATCH = 32
X = DIGITS.x_train[:1408]  # (1408, 64): 44 whole batches


def compiled(spec=SPEC, **options):
    model = build("tf", spec, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **options)
    return model


def settings(model) -> tuple[bool, int]:
    return model.jit_compile, model.steps_per_execution


@pytest.fixture
def blockable(monkeypatch):
    """What `block_train_function`'s function decided at each call of a fit: True, a block; False, Keras' own."""
    decisions, decide = [], steps._blockable

    def spy(element_spec):
        decisions.append(decide(element_spec))
        return decisions[-1]

    monkeypatch.setattr(steps, "_blockable", spy)
    return decisions


def runs_blocks(model) -> bool:
    """Whether Keras' fit will run `backends.tf.steps.block_train_function`'s function, not Keras' own."""
    return getattr(model.train_function, "__module__", None) == "backends.tf.steps"


# ----------------------------------------------------------------------------------------------- the settings
def test_defaults_are_xla_and_the_batches_per_call_of_vae_core_fit():
    assert BATCHES_PER_BLOCK > 1
    assert settings(compiled()) == (True, BATCHES_PER_BLOCK)
    assert runs_blocks(compiled())
    assert settings(compiled(jit_compile="auto")) == (True, BATCHES_PER_BLOCK)  # "auto" is the default
    assert settings(compiled(CONV)) == (True, CONV_BATCHES_PER_BLOCK)  # as vae_core.fit runs a conv model
    assert default_steps_per_execution(SPEC) == BATCHES_PER_BLOCK
    # Keras itself turns XLA off when run eagerly; the steps per call stay
    assert settings(compiled(run_eagerly=True)) == (False, BATCHES_PER_BLOCK)


@pytest.mark.parametrize("options, want", [
    (dict(jit_compile=False), (False, 1)),  # an explicit jit_compile keeps Keras' steps_per_execution=1
    (dict(jit_compile=True), (True, 1)),
    (dict(steps_per_execution=5), (True, 5)),
    (dict(jit_compile=False, steps_per_execution=1), (False, 1)),
    (dict(jit_compile=False, steps_per_execution=8), (False, 8)),
])
def test_a_callers_explicit_values_win(options, want):
    model = compiled(**options)
    assert settings(model) == want
    assert runs_blocks(model) == (want[0] and want[1] > 1)


def test_vae_core_fit_compiles_as_before():
    """The Trainer passes jit_compile alone and runs one block of batches per call: its callback reads the step log
    after every call, which holds one block."""
    model = build("tf", SPEC, seed=0)
    Trainer(model, TrainConfig(batch_size=BATCH), "/cpu:0")
    assert settings(model) == (True, 1) and not runs_blocks(model)


def test_no_xla_and_one_step_per_call_under_a_strategy():
    """Keras' XLA around a strategy's step fails with several devices ("Trying to access resource ... CPU:1 from
    CPU:0"); `vae_core.fit` runs one global batch per call there. A one-device strategy trains the same way."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = compiled()
    assert settings(model) == (False, 1) and not runs_blocks(model)
    history = model.fit(X[:256], epochs=1, batch_size=BATCH, verbose=0).history
    assert np.isfinite(history["loss"][0])


# ----------------------------------------------------------------------------------------------- the numbers
def _fit(model, data, epochs, **options):
    batch_size = None if isinstance(data, tf.data.Dataset) else BATCH
    history = model.fit(data, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, **options).history
    return history, export_weights(model)


def _uneven_batches() -> tf.data.Dataset:
    """X in 45 batches of 32 rows but for two of 16 (the 21st and the last), of unknown number (as a generator's):
    the first call runs a block of 20, the 16-row batch, then 11 batches one by one; the second a block of 12 and
    the last batch; the third finds no data."""
    sizes = np.array([BATCH] * 20 + [16] + [BATCH] * 23 + [16])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert sizes.sum() == len(X)
    batches = tf.data.Dataset.from_tensor_slices((starts, sizes)).map(lambda a, n: tf.gather(X, tf.range(a, a + n)))
    return batches.filter(lambda batch: True)  # cardinality unknown: Keras calls until StopIteration


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras', for data of unknown length
def test_one_xla_program_per_call_changes_no_number_and_callbacks_still_work(tmp_path, blockable):
    """The defaults (up to 32 batches per call in one XLA program) against Keras' one XLA call per batch
    (jit_compile=True, steps_per_execution=1, which `VAE.compile()` gave before), with the model drawing its own
    noise, on batches of two sizes: the same steps in the same order, so the weights and every epoch mean are
    bit-identical. EarlyStopping and CSVLogger see the epoch logs: with min_delta above any change, epoch 1 sets the
    best and patience 0 stops after epoch 2."""
    callbacks = [keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9),
                 keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))]
    fast = compiled()
    assert runs_blocks(fast)
    got, got_weights = _fit(fast, _uneven_batches(), 10, callbacks=callbacks)
    assert settings(fast) == (True, BATCHES_PER_BLOCK) and runs_blocks(fast)
    assert blockable and all(blockable)
    assert int(fast.optimizer.iterations.numpy()) == 2 * 45  # every step of 2 epochs, then the stop
    want, want_weights = _fit(compiled(jit_compile=True), _uneven_batches(), 2)
    assert got == want
    for name in want_weights:
        np.testing.assert_array_equal(got_weights[name], want_weights[name], err_msg=name)
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for key in got:
        np.testing.assert_allclose([float(r[key]) for r in rows], got[key], rtol=1e-6, err_msg=key)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_data_that_cannot_be_stacked_train_through_keras_own_loop(blockable):
    """Batches whose row length is unknown cannot be stacked into a block: Keras' own function runs them."""
    batches = [X[:BATCH], X[BATCH:2 * BATCH], X[2 * BATCH:2 * BATCH + 5]]
    data = tf.data.Dataset.from_generator(lambda: iter(batches),
                                          output_signature=tf.TensorSpec((None, None), tf.float32))
    model = compiled()
    assert runs_blocks(model)
    history = model.fit(data, epochs=1, shuffle=False, verbose=0).history
    assert blockable and not any(blockable)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert np.isfinite(history["loss"][0])


def test_the_defaults_train_as_keras_without_xla_to_float32_rounding(blockable):
    """The defaults against jit_compile=False, steps_per_execution=1, on fixed noise ({"x", "eps"} batches). XLA
    fuses the step's ops and contracts a * b + c into one fma, so single roundings differ (one float32 ulp,
    ~6e-8 relative), and 88 Adam steps carry them on: measured 6e-7 of a tensor's largest weight and 5e-8 on the
    epoch means. The tolerance, 1e-5 relative, is ~100 ulps, far below what a wrong step moves (a skipped or
    repeated batch changes the means by ~1e-2). With the model drawing its own noise the two differ by more: XLA's
    stateless normal draws another stream than TF's CPU kernel from the same seed (as jit_compile=True did before
    the defaults changed)."""
    x_val = DIGITS.x_test[:320]
    rng = np.random.default_rng(0)
    train = {"x": X, "eps": rng.standard_normal((len(X), SPEC.latent_dim), dtype=np.float32)}
    val = ({"x": x_val, "eps": rng.standard_normal((len(x_val), SPEC.latent_dim), dtype=np.float32)},)
    fast = compiled()
    got, got_weights = _fit(fast, train, 2, validation_data=val)
    assert settings(fast) == (True, BATCHES_PER_BLOCK)
    assert blockable and all(blockable)  # NumPy arrays, through Keras' array adapter, run in blocks
    want, want_weights = _fit(compiled(jit_compile=False, steps_per_execution=1), train, 2, validation_data=val)
    assert set(got) == {"loss", "recon", "kl", "val_loss", "val_recon", "val_kl"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
    assert abs(want["loss"][1] - want["loss"][0]) > 1e-2 * want["loss"][0]  # the epochs differ: it trained
    for name in want_weights:
        scale = np.abs(want_weights[name]).max()
        np.testing.assert_allclose(got_weights[name], want_weights[name], rtol=0, atol=1e-5 * scale, err_msg=name)
