"""The vae_core VAE as a Keras 3 model on TensorFlow.

Layers follow `VAESpec`: encoder Dense+ReLU stack over `hidden_dims`, Dense heads `mu` and `log_var`, decoder
Dense+ReLU stack over reversed `hidden_dims`, Dense `out` of width `spec.output_dim` (Bernoulli logits, Gaussian
means, or means then log-variances for "gaussian_learned"). Keras Dense kernels are (in, out), the neutral layout.

Inputs may be NumPy arrays or tensors, cast to the model's float dtype: float32, or float64 for a model built
with dtype="float64" (what `fit(precision="fp64")` trains). Every method returns `tf.Tensor`s (call `.numpy()` or
`np.asarray(...)` for arrays), like the torch backend returns torch tensors.

Training through Keras: `model.compile(optimizer=keras.optimizers.Adam(1e-3)); model.fit(x, epochs=...,
batch_size=..., validation_data=(x_val,))` trains on vae_core's negative ELBO. A batch may also be a dict
`{"x": (B, D), "eps": (B, L)}` to fix the reparameterisation noise (the vae_core `fit` uses that for shared noise
and for a deterministic validation loss). Metrics "loss", "recon", "kl" are `keras.metrics.Mean` trackers weighted
by batch size, so Keras reports exact means over the epoch's examples, for training and validation alike.
Targets `y` and sample weights are ignored: the objective is vae_core's negative ELBO of x.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import keras
import numpy as np
import tensorflow as tf

from backends.tf.losses import negative_elbo
from backends.tf.weights import import_weights
from vae_core.init import init_weights
from vae_core.model_attributes import SpecAttributes
from vae_core.spec import VAESpec


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


@keras.saving.register_keras_serializable(package="vae_core")
class VAE(SpecAttributes, keras.Model):
    """MLP variational autoencoder of a `VAESpec`, built, holding `vae_core.init_weights(spec, seed)` (the same in
    every backend). `vae_core.build("tf", spec, seed=...)` returns one.

    Registered as Keras-serializable: `model.save("vae.keras")` and `keras.models.load_model("vae.keras")`
    round-trip with `safe_mode` on, from the JSON config (the spec as a dict) and the weights; nothing is unpickled.
    """

    backend_name = "tf"

    def __init__(self, spec: VAESpec, *, seed: int | None = None, **kwargs: Any):
        if not isinstance(spec, VAESpec):
            raise TypeError(f"VAE(spec) needs a vae_core.VAESpec; got {type(spec).__name__}")
        super().__init__(name=kwargs.pop("name", "vae"), **kwargs)  # dtype="float64": a float64 model
        self.spec = spec
        dense = functools.partial(keras.layers.Dense, dtype=self.dtype_policy)
        self.encoder_layers = [dense(w, activation="relu", name=f"encoder_{i}")
                               for i, w in enumerate(spec.hidden_dims)]
        self.mu_layer = dense(spec.latent_dim, name="encoder_mu")
        self.log_var_layer = dense(spec.latent_dim, name="encoder_log_var")
        self.decoder_layers = [dense(w, activation="relu", name=f"decoder_{i}")
                               for i, w in enumerate(reversed(spec.hidden_dims))]
        self.out_layer = dense(spec.output_dim, name="decoder_out")
        self.sampling = Sampling(seed=seed, name="sampling", dtype=self.dtype_policy)
        # float64 accumulators: an epoch's sum of 60,000 losses keeps ~1e-12 relative precision
        self.loss_tracker = keras.metrics.Mean(name="loss", dtype="float64")
        self.recon_tracker = keras.metrics.Mean(name="recon", dtype="float64")
        self.kl_tracker = keras.metrics.Mean(name="kl", dtype="float64")
        # Built at once, holding the shared initial weights: VAE(spec, seed=s) equals the torch backend's.
        self.build()
        import_weights(self, init_weights(spec, seed))

    # ----------------------------------------------------------------------------------------------- layers
    def build(self, input_shape=None) -> None:
        if self.built:  # built in __init__; Keras calls build again on load and on first call
            return
        width = self.spec.input_dim
        for layer in self.encoder_layers:
            layer.build((None, width))
            width = layer.units
        self.mu_layer.build((None, width))
        self.log_var_layer.build((None, width))
        width = self.spec.latent_dim
        for layer in self.decoder_layers:
            layer.build((None, width))
            width = layer.units
        self.out_layer.build((None, width))
        self.sampling.build(((None, self.spec.latent_dim), (None, self.spec.latent_dim)))  # (mu, log_var)
        self.built = True

    def neutral_layers(self) -> dict[str, keras.layers.Dense]:
        """Neutral layer name (prefix of `spec.weight_shapes()`) -> its Dense layer, in layer order."""
        layers = {f"encoder.{i}": layer for i, layer in enumerate(self.encoder_layers)}
        layers.update({"encoder.mu": self.mu_layer, "encoder.log_var": self.log_var_layer})
        layers.update({f"decoder.{i}": layer for i, layer in enumerate(self.decoder_layers)})
        layers["decoder.out"] = self.out_layer
        return layers

    # ----------------------------------------------------------------------------------------------- forward
    def encode(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        """q(z|x) parameters: x (B, D) -> mu (B, L), log_var (B, L)."""
        h = self._float(x)  # (B, D)
        for layer in self.encoder_layers:
            h = layer(h)  # (B, H_i)
        return self.mu_layer(h), self.log_var_layer(h)  # (B, L), (B, L)

    def reparameterize(self, mu, log_var, eps=None) -> tf.Tensor:
        """z = mu + exp(0.5 * log_var) * eps: (B, L); eps (B, L) fixed, or drawn from the model's seeded stream."""
        return self.sampling((self._float(mu), self._float(log_var)), eps=eps)  # (B, L)

    def decode(self, z) -> tf.Tensor:
        """Decoder output (B, spec.output_dim): logits, means, or means then log-variances."""
        h = self._float(z)  # (B, L)
        for layer in self.decoder_layers:
            h = layer(h)  # (B, H_i)
        return tf.cast(self.out_layer(h), self._out_dtype)  # (B, D) or (B, 2D); float32 under mixed precision

    def call(self, x, eps=None, training=False):
        """(decoder_out (B, D|2D), mu (B, L), log_var (B, L)) for one sample z ~ q(z|x) (noise `eps` if given)."""
        mu, log_var = self.encode(x)  # (B, L) each
        z = self.sampling((mu, log_var), eps=eps)  # (B, L)
        return self.decode(z), tf.cast(mu, self._out_dtype), tf.cast(log_var, self._out_dtype)

    def _float(self, x: Any) -> tf.Tensor:
        """A NumPy array or tensor as a tensor of the model's float dtype (float32, or float64 for a float64 model)."""
        if isinstance(x, tf.Tensor) and x.dtype == self._out_dtype:
            return x
        return tf.cast(tf.convert_to_tensor(x), self._out_dtype)

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
        """Mean of p(x|z) at z = mu(x), deterministic: (B, D) -> (B, D)."""
        mu, _ = self.encode(x)  # (B, L)
        return self.mean_of(self.decode(mu))  # (B, D)

    def interpolate(self, x1, x2, steps: int = 10) -> tf.Tensor:
        """Decoded points on the line between the encoder means of x1 and x2 ((D,) or (1, D)): (steps, D)."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
            raise ValueError(f"interpolate(steps) needs an int >= 2; got {steps!r}")
        mu1, _ = self.encode(tf.reshape(self._float(x1), (1, self.spec.input_dim)))  # (1, L)
        mu2, _ = self.encode(tf.reshape(self._float(x2), (1, self.spec.input_dim)))  # (1, L)
        alpha = tf.reshape(tf.linspace(tf.constant(0.0, mu1.dtype), 1.0, int(steps)), (-1, 1))  # (steps, 1)
        z = (1.0 - alpha) * mu1 + alpha * mu2  # (steps, L)
        return self.mean_of(self.decode(z))  # (steps, D)

    # ----------------------------------------------------------------------------------------------- training
    @property
    def metrics(self):
        return [self.loss_tracker, self.recon_tracker, self.kl_tracker]

    def compile(self, *args: Any, jit_compile: Any = "auto", **kwargs: Any) -> None:
        """`keras.Model.compile`, except that jit_compile="auto" means XLA on every device.

        Keras' "auto" turns XLA off on CPU-only machines; for this MLP the XLA step is faster on CPU too.
        Pass jit_compile=False to opt out.
        """
        super().compile(*args, jit_compile=True if jit_compile == "auto" else jit_compile, **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """What `keras.models.load_model` calls: compile as saved, and build the optimizer so its saved state loads.

        Keras' own version skips models that override `compile`, as this one does."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @staticmethod
    def _unpack(data) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
        """x, eps (or None) and rows (or None) of a batch or block."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            return x["x"], x.get("eps"), x.get("rows")
        return x, None, None

    def _elbo(self, x, eps, training: bool, rows=None):
        out, mu, log_var = self(x, eps=eps, training=training)  # (B, D|2D), (B, L), (B, L)
        return negative_elbo(x, out, mu, log_var, likelihood=self.spec.likelihood, beta=self.spec.beta, rows=rows)

    def _update_trackers(self, x, total, recon, kl, rows=None) -> dict[str, tf.Tensor]:
        # weight each batch mean by its number of examples: exact epoch means
        batch = tf.cast(tf.shape(x)[0] if rows is None else rows, tf.float64)
        for tracker, value in ((self.loss_tracker, total), (self.recon_tracker, recon), (self.kl_tracker, kl)):
            tracker.update_state(tf.cast(value, tf.float64), sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        """One optimizer step on a batch x (B, D); or, for a block x (K, B, D), one step per batch in order.

        Blocks are what `backends.tf.fit` feeds: {"x": (K, B, D), "eps": (K, B, L), "rows": (K,) int32}, with
        rows[k] the real examples of batch k (the rest is padding, masked out of the loss) and empty batches last.
        The K steps run in one compiled loop, so an epoch makes K times fewer calls into the XLA program.
        """
        x, eps, rows = self._unpack(data)
        if x.shape.rank != 3:
            return self._train_batch(x, eps)
        if rows is None:
            rows = tf.fill(tf.shape(x)[:1], tf.shape(x)[1])  # (K,): every row is an example
        n_batches = tf.math.count_nonzero(rows, dtype=tf.int32)  # ()

        def body(k):
            self._train_batch(x[k], None if eps is None else eps[k], rows[k], k)
            return (k + 1,)

        tf.while_loop(lambda k: k < n_batches, body, (tf.constant(0),))
        return {m.name: m.result() for m in self.metrics}

    def _train_batch(self, x, eps, rows=None, k=0) -> dict[str, tf.Tensor]:
        x = self._float(x)  # (B, D)
        with tf.GradientTape() as tape:
            total, recon, kl = self._elbo(x, eps, training=True, rows=rows)  # () each
        grads = tape.gradient(total, self.trainable_variables)
        step_log = self.__dict__.get("_step_log")  # set by backends.tf.fit; None for plain Keras use
        if step_log is not None:  # row k: this step's batch means (loss, recon, kl), read after the block
            step_log.scatter_nd_update([[k]], tf.cast(tf.stack([total, recon, kl]), tf.float64)[None])
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update_trackers(x, total, recon, kl, rows)

    def test_step(self, data):
        x, eps, _ = self._unpack(data)
        x = self._float(x)  # (B, D)
        total, recon, kl = self._elbo(x, eps, training=False)  # () each
        return self._update_trackers(x, total, recon, kl)

    def get_config(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "seed": self.sampling.seed, "name": self.name,
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
