"""The JAX model's deterministic halves as compiled functions, and the format JAX writes: `jax_export`
(`jax.export`: each half serialized as StableHLO, the JAX way to serve the model).

    encoder(model)(x)  x (N, D) -> {"mean": (N, L), "log_var": (N, L)}: q(z|x)'s parameters
    decoder(model)(z)  z (N, L) -> {"mean": (N, D)}: sigmoid(logits) for Bernoulli, the means for the Gaussians;
                       and "log_var" (N, D) for "gaussian_learned"

Each is `jax.jit` of a pure function of the model's weights at the time of the call (a copy: later training does
not change it). `write` exports each with `jax.export.export` for a symbolic batch dimension ("batch") and writes
`Exported.serialize()`'s bytes to DIR/encoder.jax_export and DIR/decoder.jax_export: a StableHLO module holding
that half's weights as constants (and nothing of the other half), lowered for the CPU and CUDA GPUs, so no model
code is needed to run it. Serving it is three lines of JAX:

    exported = jax.export.deserialize(bytearray(open("encoder.jax_export", "rb").read()))
    out = exported.call(x)    # {"mean", "log_var"}, for any number of rows

`vae_core.deploy.export` calls `write` and `load`; the file names come from `vae_core.deploy.formats`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from backends.jax.model import check_model
from vae_core.deploy.formats import FORMATS, PARTS, signatures

WRITES = ("jax_export",)  # the formats this backend writes (vae_core.deploy.formats.FORMATS[f].backend)
# The platforms each half is lowered for: the ones this backend runs on. One module serves both (the lowering of
# these layers is the same on each, so the weights are stored once); `Exported.call` picks the caller's device.
PLATFORMS = ("cpu", "cuda")
BATCH = "batch"  # the symbolic batch dimension's name


def _half(model: Any, part: str) -> Callable[[Any], dict[str, jax.Array]]:
    graphdef, state = nnx.split(model)
    state = jax.tree.map(jnp.copy, state)  # the weights as they are now
    spec = model.spec
    d = spec.input_dim

    @jax.jit
    def encode(x):
        vae = nnx.merge(graphdef, state)
        mean, log_var = vae.encode(x)  # (N, L) each
        return {"mean": mean, "log_var": log_var}

    @jax.jit
    def decode(z):
        vae = nnx.merge(graphdef, state)
        out = vae.decode(z)  # (N, D) or (N, 2D)
        if spec.likelihood == "bernoulli":
            return {"mean": jax.nn.sigmoid(out)}  # probabilities
        result = {"mean": out[:, :d]}
        if spec.likelihood == "gaussian_learned":
            result["log_var"] = out[:, d:]
        return result

    return encode if part == "encoder" else decode


def encoder(model: Any) -> Callable[[Any], dict[str, jax.Array]]:
    """The VAE's encoder as a deterministic compiled function: x -> {mean, log_var}."""
    return _half(check_model(model, "encoder"), "encoder")


def decoder(model: Any) -> Callable[[Any], dict[str, jax.Array]]:
    """The VAE's decoder, mapped to its mean, as a deterministic compiled function: z -> {mean[, log_var]}."""
    return _half(check_model(model, "decoder"), "decoder")


def _exported(model: Any, part: str) -> jax.export.Exported:
    """`part` ("encoder" or "decoder") of the model as a `jax.export.Exported`: its StableHLO, for a symbolic batch
    of float32 rows, with the weights as constants (what `jax.export.export(encoder(model))` gives, for PLATFORMS)."""
    (_, (_, width)), = signatures(model.spec)[part]["inputs"]
    batch, = jax.export.symbolic_shape(BATCH)
    rows = jax.ShapeDtypeStruct((batch, width), jnp.float32)
    return jax.export.export(_half(model, part), platforms=PLATFORMS)(rows)


def write(model: Any, folder: str | Path, format: str) -> dict[str, str]:
    """Write `format`'s two files into `folder` (which exists) from a float32 model; returns what wrote them, for
    export.json."""
    check_model(model, "write")
    if format not in WRITES:
        raise ValueError(f"write: format must be one of {WRITES} for the jax backend; got {format!r}")
    files = FORMATS[format].files()
    for part in PARTS:
        (Path(folder) / files[part]).write_bytes(_exported(model, part).serialize())  # one FlatBuffer: under 2 GiB
    return {"framework": f"jax {jax.__version__}, flax {flax.__version__}",
            "tool": "jax.export.export + Exported.serialize"}


def load(folder: str | Path, format: str) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, ...]]]:
    """Each half of a `jax_export` folder, deserialized with jax.export.deserialize and run with `Exported.call`
    on JAX's default device, as a function of a float32 array that returns its outputs as arrays, in
    `signatures(spec)`'s order (mean, then log_var)."""
    if format not in WRITES:
        raise ValueError(f"load: format must be 'jax_export' for the jax backend (the other formats run in their "
                         f"own runtimes: vae_core.deploy.runtimes); got {format!r}")
    files = FORMATS[format].files()
    runners = {}
    for part in PARTS:
        program = jax.export.deserialize(bytearray((Path(folder) / files[part]).read_bytes()))

        def run(rows: np.ndarray, program=program) -> tuple[np.ndarray, ...]:
            out = program.call(np.ascontiguousarray(rows, dtype=np.float32))
            return tuple(np.asarray(out[key]) for key in sorted(out, key=lambda n: (n != "mean", n)))
        runners[part] = run
    return runners


def versions() -> dict[str, str]:
    """The frameworks' versions, for export.json and the benchmark."""
    return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
