"""The frameworks' own export tools on our models (issue 30): Keras' `model.export` and TF's LiteRT converter on a TF
model never called, the deterministic halves of both backends through Keras, LiteRT and torch.export, and the
forward pass that keeps sampling (the seed's definition); and the JAX halves through jax.export."""
from __future__ import annotations

import numpy as np
import pytest

import vae_core
from vae_core import VAESpec
from vae_core.model.forward import decoder_mean, reference_decode, reference_encode

SPEC = VAESpec(input_dim=64, hidden_dims=(16,), latent_dim=3)
CONV = VAESpec(architecture="conv", image_shape=(9, 7, 2), conv_channels=(4,), kernel_size=3, hidden_dims=(8,),
               latent_dim=3, likelihood="gaussian_learned")
ATOL = 1e-5  # float32 against the float64 reference (vae_core.deploy.verify.TOLERANCE)


def _x(spec: VAESpec, n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, spec.input_dim), dtype=np.float32)


@pytest.fixture(params=["build", "load_checkpoint"])
def fresh_tf_model(request, tmp_path):
    """A TF model never called: from build("tf"), or from load_checkpoint of a torch checkpoint."""
    if request.param == "build":
        return vae_core.build("tf", SPEC, seed=0)
    path = vae_core.save_checkpoint(tmp_path / "m.safetensors", vae_core.build("torch", SPEC, seed=0))
    return vae_core.load_checkpoint(path, "tf")


def test_keras_export_works_on_a_model_never_called(fresh_tf_model, tmp_path):
    import tensorflow as tf

    model = fresh_tf_model
    state = model.sampling.seed_generator.state.numpy().copy()
    weights = {v.path: v.numpy().copy() for v in model.weights}
    model.export(str(tmp_path / "saved"), verbose=False)  # Keras' own: "tf_saved_model"
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # held: it owns the variables `serve` reads
    served = loaded.serve(_x(SPEC))  # model(x): (decoder_out, mu, log_var)
    reference = reference_encode(SPEC, vae_core.init_weights(SPEC, 0), _x(SPEC))
    for got, want in zip(served[1:], reference):
        np.testing.assert_allclose(got.numpy(), want, atol=ATOL)
    assert served[0].shape == (5, 64)
    # the export changed nothing: the weights, and the noise stream (the symbolic call draws none)
    assert np.array_equal(model.sampling.seed_generator.state.numpy(), state)
    assert all(np.array_equal(v.numpy(), weights[v.path]) for v in model.weights)


def test_the_litert_converter_takes_the_model_and_its_deterministic_halves(tmp_path):
    """TF's converter reads the model's input shape now (it refused: "the input shapes have not been set"). The
    model's own forward samples with Keras' seeded normal, a TF op LiteRT has no builtin for, so converting it needs
    SELECT_TF_OPS (what Keras' `format="litert"` sets); its encoder and decoder convert to builtins and run in the
    LiteRT interpreter."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from backends.tf.export import decoder, encoder

    converter = tf.lite.TFLiteConverter.from_keras_model(vae_core.build("tf", CONV, seed=0))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    assert len(converter.convert()) > 0
    model = vae_core.build("tf", CONV, seed=0)  # Keras' litert format, on another model never called
    model.export(str(tmp_path / "vae.tflite"), format="litert", verbose=False)
    assert (tmp_path / "vae.tflite").stat().st_size > 0

    weights = vae_core.init_weights(CONV, 0)
    z = np.random.default_rng(1).standard_normal((4, CONV.latent_dim)).astype(np.float32)
    for half, rows, want in ((encoder, _x(CONV), reference_encode(CONV, weights, _x(CONV))),
                             (decoder, z, decoder_mean(CONV, reference_decode(CONV, weights, z)))):
        flat = tf.lite.TFLiteConverter.from_keras_model(half(model)).convert()  # default settings: builtins
        run = Interpreter(model_content=flat).get_signature_runner()
        out = run(**{"x" if half is encoder else "z": rows})
        for name, expected in zip(("mean", "log_var"), want):
            np.testing.assert_allclose(out[name], expected, atol=ATOL)


def test_keras_exports_the_deterministic_halves(tmp_path):
    import tensorflow as tf

    from backends.tf.export import encoder

    model = vae_core.build("tf", SPEC, seed=0)
    encoder(model).export(str(tmp_path / "encoder"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "encoder"))
    out = loaded.serve(_x(SPEC))
    for name, want in zip(("mean", "log_var"), reference_encode(SPEC, vae_core.init_weights(SPEC, 0), _x(SPEC))):
        np.testing.assert_allclose(out[name].numpy(), want, atol=ATOL)


def test_torch_export_takes_the_halves_and_forward_keeps_sampling():
    import torch

    from backends.torch.export import decoder, encoder

    model = vae_core.build("torch", CONV, seed=0).eval()
    x = torch.from_numpy(_x(CONV))
    batch = torch.export.Dim("batch")
    program = torch.export.export(encoder(model), (x,), dynamic_shapes={"x": {0: batch}})
    weights = vae_core.init_weights(CONV, 0)
    for got, want in zip(program.module()(x[:2]), reference_encode(CONV, weights, _x(CONV)[:2])):
        np.testing.assert_allclose(got.detach().numpy(), want, atol=ATOL)
    z = torch.zeros(3, CONV.latent_dim)
    mean, log_var = torch.export.export(decoder(model), (z,), dynamic_shapes={"z": {0: batch}}).module()(z)
    assert mean.shape == log_var.shape == (3, CONV.input_dim)
    with torch.no_grad():  # model(x) in eval mode still samples z (the seed's forward), the halves never do
        assert not torch.equal(model(x)[0], model(x)[0])
        assert all(torch.equal(a, b) for a, b in zip(encoder(model)(x), encoder(model)(x)))


def test_jax_export_holds_each_half_alone_and_takes_any_batch(tmp_path):
    """`write` of the jax backend: each file is one half's StableHLO, its weights as constants (the other half's
    are not in it), lowered for the CPU and CUDA, and its batch dimension is symbolic: 1 row and 7 rows run from
    the same file, with the other backends' order of outputs (mean, then log_var)."""
    import jax

    from backends.jax.export import PLATFORMS, load, write
    from vae_core.deploy.formats import part_bytes

    spec = VAESpec(input_dim=512, hidden_dims=(256,), latent_dim=3, likelihood="gaussian_learned")  # 0.5 MB a half
    model = vae_core.build("jax", spec, seed=0)
    writer = write(model, tmp_path, "jax_export")
    assert writer == {"framework": f"jax {jax.__version__}, flax {__import__('flax').__version__}",
                      "tool": "jax.export.export + Exported.serialize"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.jax_export", "encoder.jax_export"]
    for part, size in part_bytes(spec).items():  # its own half's weights, once, and a few kB of graph
        assert size < (tmp_path / f"{part}.jax_export").stat().st_size < size + 16384, part
        program = jax.export.deserialize(bytearray((tmp_path / f"{part}.jax_export").read_bytes()))
        assert program.platforms == PLATFORMS and str(program.in_avals[0].shape[0]) == "batch"

    weights = vae_core.init_weights(spec, 0)
    z = np.random.default_rng(1).standard_normal((7, spec.latent_dim)).astype(np.float32)
    runners = load(tmp_path, "jax_export")
    for rows in (1, 7):
        for got, want in zip(runners["encoder"](_x(spec, rows)), reference_encode(spec, weights, _x(spec, rows))):
            np.testing.assert_allclose(got, want, atol=ATOL)
        decoded = decoder_mean(spec, reference_decode(spec, weights, z[:rows]))
        got = runners["decoder"](z[:rows])
        assert len(got) == len(decoded) == 2
        for out, want in zip(got, decoded):
            np.testing.assert_allclose(out, want, atol=ATOL)
    with pytest.raises(ValueError, match=r"write: format must be one of \('jax_export',\) for the jax backend; "
                                         r"got 'onnx'"):
        write(model, tmp_path, "onnx")
    with pytest.raises(ValueError, match=r"load: format must be 'jax_export' for the jax backend"):
        load(tmp_path, "saved_model")


def test_jax_export_takes_the_conv_halves_from_jax_itself():
    """The halves are jitted functions: jax.export.export takes them directly (what `write` serializes), conv
    layers included, and the deserialized module computes the reference."""
    import jax
    import jax.numpy as jnp

    from backends.jax.export import decoder, encoder

    model = vae_core.build("jax", CONV, seed=0)
    batch, = jax.export.symbolic_shape("batch")
    weights = vae_core.init_weights(CONV, 0)
    z = np.random.default_rng(1).standard_normal((4, CONV.latent_dim)).astype(np.float32)
    for half, rows, want in ((encoder, _x(CONV), reference_encode(CONV, weights, _x(CONV))),
                             (decoder, z, decoder_mean(CONV, reference_decode(CONV, weights, z)))):
        exported = jax.export.export(half(model))(jax.ShapeDtypeStruct((batch, rows.shape[1]), jnp.float32))
        out = jax.export.deserialize(exported.serialize()).call(rows)
        for name, expected in zip(("mean", "log_var"), want):
            np.testing.assert_allclose(np.asarray(out[name]), expected, atol=ATOL)
