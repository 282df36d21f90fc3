"""The vae_core VAE as a Keras 3 model on TensorFlow.

Layers follow `spec.layers()` (`vae_core.model.architecture`): for "conv", stride-2 Conv2D+ReLU layers first, each
reading its input zero-padded by the spec's explicit amounts ("valid" convs, never "same"); an encoder Dense+ReLU
stack over `hidden_dims`; Dense heads `mu` and `log_var`; a decoder Dense+ReLU stack over reversed `hidden_dims`
(and, for "conv", to the last conv map, then Conv2DTranspose+ReLU layers, each cropped by the spec's amounts); and
`out`, a Dense or a Conv2DTranspose, giving `spec.output_dim` values per example (Bernoulli logits, Gaussian means,
or means then log-variances for "gaussian_learned") as channels-last rows. Keras' kernels (Dense (in, out),
Conv2D (kh, kw, in, out), Conv2DTranspose (kh, kw, out, in)) and its NHWC maps are the neutral layouts.

Inputs may be NumPy arrays or tensors, cast to the model's float dtype: float32, or float64 for a model built
with dtype="float64" (what `fit(precision="fp64")` trains). Every method returns `tf.Tensor`s (call `.numpy()` or
`np.asarray(...)` for arrays), like the torch backend returns torch tensors.

Training through Keras: `model.compile(optimizer=keras.optimizers.Adam(1e-3)); model.fit(x, epochs=...,
batch_size=..., validation_data=(x_val,))` trains on vae_core's negative ELBO. A batch may also be a dict
`{"x": (B, D), "eps": (B, L)}` to fix the reparameterisation noise (the vae_core `fit` uses that for shared noise
and for a deterministic validation loss). Metrics "loss", "recon", "kl" are `keras.metrics.Mean` trackers weighted
by batch size, so Keras reports exact means over the epoch's examples, for training and validation alike.
Targets `y` and sample weights are ignored: the objective is vae_core's negative ELBO of x. The Keras hooks
`train_step` and `test_step` run the steps of `backends.tf.steps`. A `compile` that picks neither jit_compile nor
steps_per_execution gets `vae_core.fit`'s speed settings (`VAE.compile`), and Keras' `fit` then runs each call's
batches in one XLA program (`backends.tf.steps.block_train_function`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import numpy as np
import tensorflow as tf

from backends.tf import steps as _steps
from backends.tf.distributed import strategy_of as _strategy_of
from backends.tf.weights import import_weights
from vae_core.checks import check_seed
from vae_core.data.rows import rows_shape
from vae_core.model.architecture import CONV, CONV_TRANSPOSE, Layer
from vae_core.model.attributes import SpecAttributes
from vae_core.model.init import init_weights
from vae_core.model.spec import VAESpec


@keras.saving.register_keras_serializable(package="vae_core")
class Sampling(keras.layers.Layer):
    """Reparameterisation: z = mu + exp(0.5 * log_var) * eps, eps ~ N(0, I).

    `call((mu, log_var), eps=None)`: with `eps` given (B, L) the output is deterministic; otherwise eps is drawn
    from this layer's `keras.random.SeedGenerator` (seeded by `seed`; `reseed(s)` restarts its stream).
    """

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def reseed(self, seed: int) -> None:
        """Restart the noise stream: the draws after `reseed(s)` are a function of s alone."""
        self.seed_generator.state.assign(np.array([int(seed), 0], dtype=np.int64))

    def call(self, inputs, eps=None):
        mu, log_var = inputs  # (B, L) each
        if eps is None:
            eps = keras.random.normal(tf.shape(mu), dtype=mu.dtype, seed=self.seed_generator)  # (B, L)
        else:
            eps = tf.cast(tf.convert_to_tensor(eps), mu.dtype)  # (B, L)
        return mu + tf.exp(0.5 * log_var) * eps  # (B, L)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])  # z has mu's shape (B, L)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


# In a .keras archive's config of the VAE, for the reader of Keras' "Could not locate class 'VAE'" error (which
# prints the config): the import that registers the classes. `VAE.from_config` ignores it.
LOAD_HINT = "import backends.tf before keras.models.load_model"


@keras.saving.register_keras_serializable(package="vae_core")
class VAE(SpecAttributes, keras.Model):
    """Variational autoencoder of a `VAESpec` (an MLP, or convolutions then dense layers), built, holding
    `vae_core.init_weights(spec, seed)` (the same in every backend). `vae_core.build("tf", spec, seed=...)` returns
    one.

    Registered as Keras-serializable: `model.save("vae.keras")` and `keras.models.load_model("vae.keras")`
    round-trip with `safe_mode` on, from the JSON config (the spec as a dict) and the weights; nothing is unpickled.
    Keras finds a registered class only once its module is imported (it imports a config's `module` itself only
    for keras, keras_hub, keras_cv and keras_nlp), so a fresh process runs `import backends.tf` first; the config
    carries that line (`LOAD_HINT`), which Keras prints in its "Could not locate class 'VAE'" error.
    """

    backend_name = "tf"

    def __init__(self, spec: VAESpec, *, seed: int | None = None, **kwargs: Any):
        if not isinstance(spec, VAESpec):
            raise TypeError(f"VAE(spec) needs a vae_core.VAESpec; got {type(spec).__name__}")
        seed = check_seed("VAE", seed)  # a plain int: keras.random.SeedGenerator refuses np.int64
        super().__init__(name=kwargs.pop("name", "vae"), **kwargs)  # dtype="float64": a float64 model
        self.spec = spec
        self.encoder_conv_layers, self.encoder_layers, self.decoder_layers, self.decoder_conv_layers = [], [], [], []
        self.plan = {layer.name: layer for layer in spec.layers()}  # neutral name -> its Layer
        for layer in self.plan.values():
            keras_layer = self._keras_layer(layer)
            if layer.name == "encoder.mu":
                self.mu_layer = keras_layer
            elif layer.name == "encoder.log_var":
                self.log_var_layer = keras_layer
            elif layer.name == "decoder.out":
                self.out_layer = keras_layer
            else:
                half = self.encoder_layers if layer.name.startswith("encoder.") else self.decoder_layers
                if ".conv." in layer.name:
                    half = self.encoder_conv_layers if layer.name.startswith("encoder.") else self.decoder_conv_layers
                half.append(keras_layer)
        # Keras tracks the lists assigned above; these are the names the layers had before conv models existed.
        self.sampling = Sampling(seed=seed, name="sampling", dtype=self.dtype_policy)
        # float64 accumulators: an epoch's sum of 60,000 losses keeps ~1e-12 relative precision
        self.loss_tracker = keras.metrics.Mean(name="loss", dtype="float64")
        self.recon_tracker = keras.metrics.Mean(name="recon", dtype="float64")
        self.kl_tracker = keras.metrics.Mean(name="kl", dtype="float64")
        # The train step's own state (the trainer's step log, the compiled replica step): a plain object, set once.
        # Keras' and TF's attribute tracking pass it by (they track variables, layers and metrics, and wrap lists
        # and dicts), so the tf.Variable it holds during a fit never becomes a weight or saved state of the model.
        self.step_state = _steps.StepState()
        # Built at once, holding the shared initial weights: VAE(spec, seed=s) equals the torch backend's. Built with
        # its input shape, (None, D) rows, which Keras records: its export and TF's LiteRT converter read the model's
        # input signature from it (built with no shape, they refuse the model: "input shapes have not been set").
        self.build((None, spec.input_dim))
        import_weights(self, init_weights(spec, seed))

    # ----------------------------------------------------------------------------------------------- layers
    def _keras_layer(self, layer: Layer) -> keras.layers.Layer:
        """The Keras layer of one planned layer: Dense, or a "valid" stride-2 Conv2D / Conv2DTranspose (the padding
        and cropping are applied around it, in `_conv`)."""
        options = dict(activation="relu" if layer.relu else None, name=layer.name.replace(".", "_"),
                       dtype=self.dtype_policy)
        if layer.kind == CONV:
            return keras.layers.Conv2D(layer.n_out, layer.kernel_size, strides=2, padding="valid", **options)
        if layer.kind == CONV_TRANSPOSE:
            return keras.layers.Conv2DTranspose(layer.n_out, layer.kernel_size, strides=2, padding="valid", **options)
        return keras.layers.Dense(layer.n_out, **options)

    def build(self, input_shape=None) -> None:
        if self.built:  # built in __init__; Keras calls build again on load and on first call
            return
        for name, keras_layer in self.neutral_layers().items():
            layer = self.plan[name]
            if layer.kind == CONV:
                (top, bottom), (left, right) = layer.level.pad
                h, w = layer.level.in_size
                keras_layer.build((None, h + top + bottom, w + left + right, layer.n_in))
            elif layer.kind == CONV_TRANSPOSE:
                keras_layer.build((None, *layer.level.out_size, layer.n_in))
            else:
                keras_layer.build((None, layer.n_in))
        self.sampling.build(((None, self.spec.latent_dim), (None, self.spec.latent_dim)))  # (mu, log_var)
        self.built = True

    def export(self, filepath, format: str = "tf_saved_model", verbose: Any = None, input_signature: Any = None,
               **kwargs: Any) -> Any:
        """`keras.Model.export`, on a model that was never called too: Keras exports only models called at least once
        ("The model provided has never called"), so the model is called once symbolically first, on a
        `keras.KerasTensor` of its input shape, which runs no op, draws no noise and changes no weight. The exported
        `serve` endpoint is `call`: it samples z, as `model(x)` does (use `vae_core.deploy.export` or
        `backends.tf.export.encoder`/`decoder` for the deterministic encoder and decoder)."""
        if input_signature is None:
            self(keras.KerasTensor((None, self.spec.input_dim), dtype=self.input_dtype))
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    def neutral_layers(self) -> dict[str, keras.layers.Layer]:
        """Neutral layer name (prefix of `spec.weight_shapes()`) -> its Keras layer, in layer order."""
        layers = {f"encoder.conv.{i}": layer for i, layer in enumerate(self.encoder_conv_layers)}
        layers.update({f"encoder.{i}": layer for i, layer in enumerate(self.encoder_layers)})
        layers.update({"encoder.mu": self.mu_layer, "encoder.log_var": self.log_var_layer})
        layers.update({f"decoder.{i}": layer for i, layer in enumerate(self.decoder_layers)})
        layers.update({f"decoder.conv.{i}": layer for i, layer in enumerate(self.decoder_conv_layers)})
        layers["decoder.out"] = self.out_layer
        return layers

    def _conv(self, name: str, keras_layer: keras.layers.Layer, h: tf.Tensor) -> tf.Tensor:
        """A conv of the zero-padded map, or a transposed conv's output cropped: the spec's amounts, (B, h, w, c)."""
        layer = self.plan[name]
        (top, bottom), (left, right) = layer.level.pad
        if layer.kind == CONV:
            return keras_layer(tf.pad(h, [[0, 0], [top, bottom], [left, right], [0, 0]]))
        full = keras_layer(h)  # (B, full_h, full_w, c): the uncropped output (ReLU commutes with the crop)
        height, width = layer.level.in_size
        return full[:, top:top + height, left:left + width, :]

    # ----------------------------------------------------------------------------------------------- forward
    def encode(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        """q(z|x) parameters: x (B, D) rows or (B, H, W, C) images -> mu (B, L), log_var (B, L)."""
        h = self._float(x)
        if self.spec.architecture == "conv":
            h = tf.reshape(h, (-1, *(*self.spec.image_shape, 1)[:3]))  # (B, H, W, C)
            for i, layer in enumerate(self.encoder_conv_layers):
                h = self._conv(f"encoder.conv.{i}", layer, h)  # (B, h_i, w_i, conv_channels[i])
        h = tf.reshape(h, (tf.shape(h)[0], -1))  # (B, D), or (B, h*w*c): the conv map flattened channels last
        for layer in self.encoder_layers:
            h = layer(h)  # (B, H_i)
        return self.mu_layer(h), self.log_var_layer(h)  # (B, L), (B, L)

    def reparameterize(self, mu, log_var, eps=None) -> tf.Tensor:
        """z = mu + exp(0.5 * log_var) * eps: (B, L); eps (B, L) fixed, or drawn from the model's seeded stream."""
        return self.sampling((self._float(mu), self._float(log_var)), eps=eps)  # (B, L)

    def decode(self, z) -> tf.Tensor:
        """Decoder output (B, spec.output_dim): logits, means, or means then log-variances, channels-last rows."""
        h = self._float(z)  # (B, L)
        for layer in self.decoder_layers:
            h = layer(h)  # (B, H_i), then (B, h*w*c) for conv
        if self.spec.architecture != "conv":
            return tf.cast(self.out_layer(h), self._out_dtype)  # (B, D) or (B, 2D); float32 under mixed precision
        h = tf.reshape(h, (-1, *self.plan[f"decoder.{len(self.decoder_layers) - 1}"].writes_map))  # (B, h, w, c)
        for i, layer in enumerate(self.decoder_conv_layers):
            h = self._conv(f"decoder.conv.{i}", layer, h)  # (B, h_j, w_j, c_j)
        out = tf.cast(self._conv("decoder.out", self.out_layer, h), self._out_dtype)  # (B, H, W, C or 2C)
        c, rows = self.spec.channels, tf.shape(out)[0]
        if self.spec.likelihood == "gaussian_learned":  # means then log-variances, each flattened (H, W, C)
            return tf.concat([tf.reshape(out[..., :c], (rows, -1)), tf.reshape(out[..., c:], (rows, -1))], 1)
        return tf.reshape(out, (rows, -1))  # (B, D)

    def call(self, x, eps=None, training=False):
        """(decoder_out (B, D|2D), mu (B, L), log_var (B, L)) for one sample z ~ q(z|x) (noise `eps` if given);
        x is (B, D) rows or (B, H, W, C) images."""
        mu, log_var = self.encode(x)  # (B, L) each
        z = self.sampling((mu, log_var), eps=eps)  # (B, L)
        return self.decode(z), tf.cast(mu, self._out_dtype), tf.cast(log_var, self._out_dtype)

    def _float(self, x: Any) -> tf.Tensor:
        """A NumPy array or tensor as a tensor of the model's float dtype (float32, or float64 for a float64 model);
        uint8 images become x / 255 (in float32, then widened), as everywhere in vae_core."""
        if isinstance(x, tf.Tensor) and x.dtype == self._out_dtype:
            return x
        x = tf.convert_to_tensor(x)
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 255.0
        return tf.cast(x, self._out_dtype)

    def _rows(self, x: Any, method: str, argument: str) -> tf.Tensor:
        """(D,), (B, D) or images (B, H, W, C) as (B, D) rows of the model's float dtype, checked."""
        x = self._float(x)
        return tf.reshape(x, rows_shape(tuple(x.shape), self.spec, f"{method}: {argument}", single=True))

    @property
    def _out_dtype(self) -> tf.DType:
        """The dtype of the model's outputs and loss: its variables' (float32, or float64 for a float64 model)."""
        return tf.as_dtype(self.dtype_policy.variable_dtype)

    def mean_of(self, decoder_out) -> tf.Tensor:
        """The mean of p(x|z) from a decoder output: sigmoid(logits), or the Gaussian means (first D columns)."""
        if self.spec.likelihood == "bernoulli":
            return tf.sigmoid(decoder_out)  # (B, D)
        return decoder_out[:, :self.spec.input_dim]  # (B, D)

    def sample(self, n: int, *, seed: int | None = None) -> tf.Tensor:
        """n draws from the prior decoded to data space (mean of p(x|z)): (n, D).

        z ~ N(0, I) comes from `np.random.default_rng(seed)` (float32), so a seed gives the same z in every
        backend; `seed=None` draws fresh entropy.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sample(n) needs n to be an int >= 1; got {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"sample: seed must be None or an int >= 0; got {seed!r}")
        z = np.random.default_rng(seed).standard_normal((int(n), self.spec.latent_dim), dtype=np.float32)  # (n, L)
        return self.mean_of(self.decode(z))  # (n, D)

    def reconstruct(self, x) -> tf.Tensor:
        """Mean of p(x|z) at z = mu(x), deterministic: (B, D) rows or (B, H, W, C) images -> (B, D)."""
        mu, _ = self.encode(self._rows(x, "reconstruct", "x"))  # (B, L)
        return self.mean_of(self.decode(mu))  # (B, D)

    def interpolate(self, x1, x2, steps: int = 10) -> tf.Tensor:
        """Decoded points on the line between the encoder means of x1 and x2 ((D,) or (1, D)): (steps, D)."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
            raise ValueError(f"interpolate(steps) needs an int >= 2; got {steps!r}")
        ends = []
        for name, x in (("x1", x1), ("x2", x2)):
            rows = self._rows(x, "interpolate", name)  # (1, D)
            if rows.shape[0] != 1:
                raise ValueError(f"interpolate: {name} must be one example of shape ({self.spec.input_dim},) or "
                                 f"(1, {self.spec.input_dim}); got shape {tuple(np.shape(x))}")
            ends.append(self.encode(rows)[0])  # (1, L)
        mu1, mu2 = ends
        alpha = tf.reshape(tf.linspace(tf.constant(0.0, mu1.dtype), 1.0, int(steps)), (-1, 1))  # (steps, 1)
        z = (1.0 - alpha) * mu1 + alpha * mu2  # (steps, L)
        return self.mean_of(self.decode(z))  # (steps, D)

    # ----------------------------------------------------------------------------------------------- training
    @property
    def metrics(self):
        return [self.loss_tracker, self.recon_tracker, self.kl_tracker]

    def compile(self, *args: Any, jit_compile: Any = "auto", steps_per_execution: int | None = None,
                **kwargs: Any) -> None:
        """`keras.Model.compile`, with the speed settings of `vae_core.fit` when the caller picks none.

        jit_compile="auto" (the default) means XLA on every device (Keras' "auto" turns it off on CPU-only
        machines; the XLA step is faster on CPU too), except under a tf.distribute strategy or with
        run_eagerly=True, where XLA stays off as in Keras. With jit_compile left at "auto", steps_per_execution
        defaults to the batches `vae_core.fit` runs per call (`default_steps_per_execution`: 32 for an MLP, 1
        for conv models or under a strategy). An explicit value of either wins; an explicit jit_compile without
        steps_per_execution keeps Keras' steps_per_execution=1 (what `vae_core.fit`'s own compile, which runs one
        block per call, relies on). With XLA and several steps per call, Keras' `fit` runs each call's batches in
        one XLA program (`backends.tf.steps.block_train_function`) instead of one XLA call per batch. None of
        this changes the numbers a step computes (`tests/backends/tf/test_keras_fit.py`).
        """
        under_strategy = _strategy_of(self) is not None or tf.distribute.has_strategy()
        if isinstance(jit_compile, str) and jit_compile == "auto":
            if steps_per_execution is None:
                steps_per_execution = _steps.default_steps_per_execution(self.spec, under_strategy)
            jit_compile = not (under_strategy or kwargs.get("run_eagerly", False))
        super().compile(*args, jit_compile=jit_compile,
                        steps_per_execution=1 if steps_per_execution is None else steps_per_execution, **kwargs)
        if self.jit_compile and self.steps_per_execution > 1 and not self.run_eagerly and not under_strategy:
            # each call's batches in one XLA program, not one XLA call per batch; `fit` keeps a set train function
            super().make_train_function(force=True)  # Keras' own, for data that cannot be stacked into blocks
            self.train_function = _steps.block_train_function(self, self.train_function)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """What `keras.models.load_model` calls: compile as saved, and build the optimizer so its saved state loads.

        Keras' own version skips models that override `compile`, as this one does."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        """Keras' hook: one optimizer step on a batch, or one per batch of a block (`backends.tf.steps.train_step`)."""
        return _steps.train_step(self, data)

    def test_step(self, data):
        """Keras' hook: a batch's losses into the trackers (`backends.tf.steps.test_step`)."""
        return _steps.test_step(self, data)

    def get_config(self) -> dict[str, Any]:
        # "load_with" first: Keras prints the config in its error when the class is not registered yet
        return {"load_with": LOAD_HINT, "spec": self.spec.to_dict(), "seed": self.sampling.seed, "name": self.name,
                "dtype": self.dtype_policy.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "VAE":
        return cls(VAESpec.from_dict(config["spec"]), seed=config.get("seed"), name=config.get("name", "vae"),
                   dtype=config.get("dtype"))


@contextlib.contextmanager
def eval_mode(model: VAE) -> Iterator[None]:
    """Inference while the block runs, as the torch backend's `eval_mode`. A Keras model has no mode to switch
    (every call passes `training` explicitly, False by default) and records gradients only inside a
    GradientTape, so there is nothing to set or restore."""
    yield


def check_model(model: Any, caller: str) -> VAE:
    """`model`, if it is this backend's VAE; else a TypeError naming `caller` and how to build one."""
    if not isinstance(model, VAE):
        raise TypeError(f"{caller}: model must be a TF VAE built by vae_core.build('tf', ...); "
                        f"got {type(model).__module__}.{type(model).__name__}")
    return model
