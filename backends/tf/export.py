"""The TF model's deterministic halves as Keras models, and the formats TensorFlow writes: `saved_model` (Keras'
ExportArchive, signatures `encode` and `decode`) and `litert` (TF's LiteRT converter, from that SavedModel).

`encoder(model)` and `decoder(model)` are functional `keras.Model`s with no sampling inside, sharing the VAE's
weights, so Keras' and TF's own tools take them as they are (`encoder(model).export(path)`,
`tf.lite.TFLiteConverter.from_keras_model(encoder(model))`):

    encoder(model)(x)  x (N, D) -> {"mean": (N, L), "log_var": (N, L)}: q(z|x)'s parameters
    decoder(model)(z)  z (N, L) -> {"mean": (N, D)}: sigmoid(logits) for Bernoulli, the means for the Gaussians;
                       and "log_var" (N, D) for "gaussian_learned"

`model(x)` itself keeps sampling z (the seed's definition). `vae_core.deploy.export` calls `write` and `load`; the
tensor and file names come from `vae_core.deploy.formats`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from backends.tf.model import check_model
from vae_core.deploy.formats import FORMATS, PARTS, SIGNATURES, signatures

WRITES = ("saved_model", "litert")  # the formats this backend writes (vae_core.deploy.formats.FORMATS[f].backend)


class _Encode(keras.layers.Layer):
    """x (N, D) -> {"mean", "log_var"} of q(z|x): the VAE's `encode`, as a layer holding the VAE."""

    def __init__(self, vae: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vae = vae

    def call(self, x):
        mean, log_var = self.vae.encode(x)  # (N, L) each
        return {"mean": mean, "log_var": log_var}


class _Decode(keras.layers.Layer):
    """z (N, L) -> {"mean"} (N, D), and "log_var" (N, D) for a learned variance: the decoder's mean."""

    def __init__(self, vae: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vae = vae

    def call(self, z):
        spec, out = self.vae.spec, self.vae.decode(z)  # (N, D) or (N, 2D)
        d = spec.input_dim
        if spec.likelihood == "bernoulli":
            return {"mean": tf.reshape(tf.sigmoid(out), (-1, d))}  # probabilities
        result = {"mean": tf.reshape(out[:, :d], (-1, d))}  # reshaped: the static width survives the slice
        if spec.likelihood == "gaussian_learned":
            result["log_var"] = tf.reshape(out[:, d:], (-1, d))
        return result


def _part(model: keras.Model, part: str) -> keras.Model:
    (name, (_, width)), = signatures(model.spec)[part]["inputs"]
    inputs = keras.Input((width,), name=name, dtype=model.dtype_policy.variable_dtype)
    layer = (_Encode if part == "encoder" else _Decode)(model, name=SIGNATURES[part])
    return keras.Model(inputs, layer(inputs), name=part)


def encoder(model: keras.Model) -> keras.Model:
    """The VAE's encoder as a deterministic functional `keras.Model` sharing its weights: x -> {mean, log_var}."""
    return _part(check_model(model, "encoder"), "encoder")


def decoder(model: keras.Model) -> keras.Model:
    """The VAE's decoder, mapped to its mean, as a deterministic functional `keras.Model` sharing its weights."""
    return _part(check_model(model, "decoder"), "decoder")


def _calling(half: keras.Model) -> Callable:
    """`half` as a function of its one input (an endpoint's signature is its function's own arguments)."""
    def call(rows):
        return half(rows)
    return call


def _write_saved_model(model: keras.Model, folder: str) -> None:
    """One SavedModel with the signatures `encode` and `decode` (and `serving_default`, Keras' alias of the
    first, which TF Serving needs). Nothing is tracked by hand: `add_endpoint` keeps the variables its function
    reads, each once (tracking the model too stores every weight twice)."""
    archive = keras.export.ExportArchive()
    for part in PARTS:
        half = _part(model, part)
        (name, shape), = signatures(model.spec)[part]["inputs"]
        archive.add_endpoint(SIGNATURES[part], _calling(half), input_signature=[tf.TensorSpec(shape, tf.float32,
                                                                                              name=name)])
    archive.write_out(folder, verbose=False)


def write(model: keras.Model, folder: str | Path, format: str) -> dict[str, str]:
    """Write `format` into `folder` (which exists) from a float32 model; returns what wrote it, for export.json."""
    check_model(model, "write")
    if format not in WRITES:
        raise ValueError(f"write: format must be one of {WRITES} for the tf backend; got {format!r}")
    if format == "saved_model":
        _write_saved_model(model, str(folder))
        return {"framework": f"tensorflow {tf.__version__}, keras {keras.__version__}",
                "tool": "keras.export.ExportArchive"}
    files = FORMATS[format].files()
    with tempfile.TemporaryDirectory(prefix="vae-export-") as saved:  # the converter reads a SavedModel
        _write_saved_model(model, saved)
        for part in PARTS:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURES[part]])
            (Path(folder) / files[part]).write_bytes(converter.convert())  # float32, builtin ops only
    return {"framework": f"tensorflow {tf.__version__}, keras {keras.__version__}",
            "tool": "tf.lite.TFLiteConverter.from_saved_model"}


def load(folder: str | Path, format: str) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, ...]]]:
    """Each half of a `saved_model` folder, loaded with tf.saved_model.load and called through its signature, as a
    function of a float32 array that returns its outputs as arrays, in `signatures(spec)`'s order."""
    if format != "saved_model":
        raise ValueError(f"load: format must be 'saved_model' for the tf backend (litert runs in ai_edge_litert); "
                         f"got {format!r}")
    loaded = tf.saved_model.load(str(folder))
    runners = {}
    for part in PARTS:
        signature = loaded.signatures[SIGNATURES[part]]
        (name, _), = signature.structured_input_signature[1].items()
        outputs = list(signature.structured_outputs)

        def run(rows: np.ndarray, signature=signature, name=name, outputs=outputs, owner=loaded
                ) -> tuple[np.ndarray, ...]:  # `owner` keeps the loaded object, which holds the variables, alive
            out = signature(**{name: tf.constant(np.asarray(rows, dtype=np.float32))})
            return tuple(out[key].numpy() for key in _ordered(outputs))
        runners[part] = run
    return runners


def _ordered(names: list[str]) -> list[str]:
    """A signature's output keys in the formats' order: mean first, then log_var (a SavedModel sorts them)."""
    return sorted(names, key=lambda n: (n != "mean", n))


def versions() -> dict[str, str]:
    """The frameworks' versions, for export.json and the benchmark."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
