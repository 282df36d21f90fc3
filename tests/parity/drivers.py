"""Thin drivers so that each parity check is written once for every backend.

The parity tests (tests/parity) and `scripts/parity_report.py` both measure through these functions, so the
report's numbers are the tests' numbers. Torch drivers take a `device` ("cpu" or "cuda"); on CUDA they run with
TF32 off (fp32 stays fp32). The TF side always runs on the CPU; the JAX side on JAX's default device, with full
float32 matmuls.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from vae_core.model.forward import reference_forward  # noqa: F401  (the checks' float64 reference, re-exported)
from vae_core.registry import BACKENDS as _REGISTRY

BACKENDS = tuple(_REGISTRY)  # every registered backend, in the registry's order (torch first: the reference)
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # committed inputs and references, beside this module
TF_REFERENCE = FIXTURES / "tf_cpu_reference.safetensors"  # written by scripts/make_tf_reference.py

# Check 3's likelihood/beta pairs, and the inputs of checks 2-3: `batch(spec, seed)` rows of uniform pixels.
GRADIENT_CASES = (("bernoulli", 1.0), ("gaussian", 0.5), ("gaussian_learned", 4.0))
FORWARD_SEED, GRADIENT_SEED, BATCH = 0, 1, 64
# The conv parity cases: the Fashion-MNIST model; odd RGB sizes with asymmetric padding and a learned
# variance; three k=3 convs of a non-square two-channel image with no dense hidden layer.
CONV_SPECS = {
    "28x28": dict(architecture="conv", image_shape=(28, 28), conv_channels=(32, 64), hidden_dims=(256,)),
    "27x29x3": dict(architecture="conv", image_shape=(27, 29, 3), conv_channels=(8, 16), hidden_dims=(32,),
                    likelihood="gaussian_learned", beta=2.0),
    "9x16x2-k3": dict(architecture="conv", image_shape=(9, 16, 2), conv_channels=(4, 8, 4), kernel_size=3,
                      hidden_dims=(), likelihood="gaussian", beta=0.5),
}

# Check 4: one full batch of mnist-5k per epoch, so each epoch's train_loss is one optimizer step's loss.
LOCKSTEP_EXAMPLES = 128
LOCKSTEP_STEPS_TOTAL = 200
# Resynchronised lockstep: TF resumes from torch's checkpoint after each of these steps and runs this many more.
RESYNC_STARTS = (50, 100, 150, 190)
RESYNC_STEPS = 10


def backend(name: str):
    """The backend package; an ImportError naming the pip extra when its framework is not installed."""
    from vae_core.registry import backend_module

    return backend_module(name)


def to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


@contextlib.contextmanager
def exact_fp32(device: str = "cpu"):
    """TF32 off for torch on CUDA while the block runs (restored after): the torch backend's own switch."""
    if not str(device).startswith("cuda"):
        yield
        return
    import torch

    from backends.torch.device import exact_fp32 as torch_exact_fp32
    with torch_exact_fp32(torch.device(device)):
        yield


def tf_cpu():
    """The TF side of every check runs on the CPU (a GPU build of TF would otherwise place ops on the GPU)."""
    import tensorflow as tf

    return tf.device("/CPU:0")


def _placed(name: str, device: str = "cpu"):
    """Where backend `name`'s side of a check runs: torch on `device` with TF32 off; TF on the CPU; JAX on its
    default device (the CPU jaxlib: the CPU) with full float32 matmuls."""
    if name == "torch":
        return exact_fp32(device)
    if name == "jax":
        import jax
        return jax.default_matmul_precision("highest")
    return tf_cpu()


def _tensors(name: str, arrays: dict[str, np.ndarray], device: str) -> dict:
    if name == "torch":
        import torch
        return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    if name == "jax":
        import jax.numpy as jnp
        return {k: jnp.asarray(v) for k, v in arrays.items()}
    import tensorflow as tf
    return {k: tf.constant(v) for k, v in arrays.items()}


def negative_elbo(name: str, arrays: dict[str, np.ndarray], likelihood: str, beta: float, device: str = "cpu"):
    """The backend's loss on float32 framework tensors: (total, recon, kl) as Python floats."""
    mod = backend(name)
    t = _tensors(name, arrays, device)
    with _placed(name, device):
        out = mod.losses.negative_elbo(t["x"], t["decoder_out"], t["mu"], t["log_var"], likelihood=likelihood,
                                       beta=beta)
    return tuple(float(to_numpy(v)) for v in out)


def per_example(name: str, arrays: dict[str, np.ndarray], likelihood: str,
                device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The backend's per-example (recon, kl), (B,) each."""
    mod = backend(name)
    t = _tensors(name, arrays, device)
    with _placed(name, device):
        recon = mod.losses.reconstruction_nll(t["x"], t["decoder_out"], likelihood)
        kl = mod.losses.kl_to_standard_normal(t["mu"], t["log_var"])
    return to_numpy(recon), to_numpy(kl)


def build_shared(name: str, spec, seed: int = 0, device: str = "cpu"):
    """The backend's model holding `vae_core.init_weights(spec, seed)`: the same numbers in both backends."""
    backend(name)
    from vae_core import build

    model = build(name, spec, seed=seed)
    return model.to(device) if name == "torch" else model


def batch(spec, n: int = BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of checks 2-3: x (n, D) uniform in [0, 1), eps (n, latent_dim) standard normal, float32."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, spec.input_dim)).astype(np.float32)  # (B, D)
    eps = rng.standard_normal((n, spec.latent_dim)).astype(np.float32)  # (B, latent_dim)
    return x, eps


def _device_of(model) -> str:
    return str(next(model.parameters()).device)


def forward(name: str, model, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """forward(x, eps) as NumPy: {"decoder_out", "mu", "log_var"} (torch on the model's device)."""
    if name == "torch":
        import torch
        device = _device_of(model)
        with torch.no_grad(), exact_fp32(device):
            out = model(torch.from_numpy(x).to(device), torch.from_numpy(eps).to(device))
    elif name == "jax":
        with _placed(name):
            out = model(x, eps)
    else:
        with tf_cpu():
            out = model(x, eps=eps)
    return dict(zip(("decoder_out", "mu", "log_var"), (to_numpy(t) for t in out)))


def gradients(name: str, model, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """d(negative ELBO)/d(weight) for every weight, in the neutral names and layouts (`vae_core.model.architecture`)."""
    mod, spec = backend(name), model.spec
    if name == "torch":
        import torch
        device = _device_of(model)
        xt, et = torch.from_numpy(x).to(device), torch.from_numpy(eps).to(device)
        model.zero_grad()
        with exact_fp32(device):
            out, mu, log_var = model(xt, et)
            total, _, _ = mod.losses.negative_elbo(xt, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta)
            total.backward()
        params = mod.weights.native_parameters(model)
        return mod.weights.native_to_neutral(model, {n: to_numpy(p.grad) for n, p in params.items()})
    if name == "jax":
        import jax
        apply, params = mod.steps.pure_model(model)

        def loss(p):
            out, mu, log_var = apply(p, x, eps)
            return mod.losses.negative_elbo(x, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta)[0]
        with _placed(name):
            grads = jax.grad(loss)(params)  # a dict pytree: sorted by name
        return mod.weights.native_to_neutral(model, {n: grads[n] for n in spec.weight_shapes()})
    import tensorflow as tf
    variables = mod.weights.native_parameters(model)
    with tf_cpu(), tf.GradientTape() as tape:
        out, mu, log_var = model(x, eps=eps)
        total, _, _ = mod.losses.negative_elbo(tf.constant(x), out, mu, log_var,
                                               likelihood=spec.likelihood, beta=spec.beta)
    return {n: g.numpy() for n, g in zip(variables, tape.gradient(total, list(variables.values())))}


def gradient_rel_diffs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """||a - b|| / ||a|| per weight (check 3's measure)."""
    return {n: float(np.linalg.norm(a[n].astype(np.float64) - b[n]) / np.linalg.norm(a[n].astype(np.float64)))
            for n in a}


def adam_steps(name: str, spec, weights: dict[str, np.ndarray], grads_seq, config=None
               ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """The backend's training optimizer (torch: `fit`'s fused Adam; TF: `TorchAdam` in an XLA-compiled apply, as in
    `fit`) from `weights` and a fresh state, fed the given gradients (neutral names and layouts), one step each.
    Returns (weights, m, v) after every step."""
    from vae_core import TrainConfig
    from vae_core.registry import backend_module

    config = TrainConfig() if config is None else config
    mod = backend(name)
    model = build_shared(name, spec, seed=0)
    mod.weights.import_weights(model, weights)
    out = []
    if name == "torch":
        import torch
        optimizer = mod.optim.make_optimizer(model, config)
        params = mod.weights.native_parameters(model)
        for grads in grads_seq:
            for n, g in mod.weights.neutral_to_native(model, grads).items():
                params[n].grad = torch.from_numpy(g)
            optimizer.step()
            state = mod.weights.export_adam(model, optimizer)
            out.append((mod.weights.export_weights(model), state.m, state.v))
        return out
    if name == "jax":
        import jax
        import jax.numpy as jnp
        tx = mod.optim.make_optimizer(model, config)
        params = mod.weights.params_of(model)
        opt_state = tx.init(params)

        @jax.jit  # compiled, as in `fit`'s block: XLA contracts Adam's multiply-adds into fmas
        def apply(params, opt_state, grads, step_size, bias2_sqrt):
            updates, opt_state = tx.update(grads, opt_state, params, step_size=step_size, bias2_sqrt=bias2_sqrt)
            return jax.tree.map(lambda p, u: p + u, params, updates), opt_state
        for t, grads in enumerate(grads_seq, start=1):
            step_size, bias2_sqrt = mod.optim.step_scalars(config.learning_rate, config, t)
            params, opt_state = apply(params, opt_state, {n: jnp.asarray(g) for n, g in grads.items()},
                                      step_size, bias2_sqrt)
            mod.weights.set_params(model, params)
            state = mod.weights.export_adam(model, opt_state)
            out.append((mod.weights.export_weights(model), state.m, state.v))
        return out
    import tensorflow as tf

    tf_backend = backend_module("tf")
    optimizer = tf_backend.TorchAdam(learning_rate=config.learning_rate, beta_1=config.adam_beta1,
                                     beta_2=config.adam_beta2, epsilon=config.adam_eps)
    variables = mod.weights.native_parameters(model)
    optimizer.build(list(variables.values()))
    apply = tf.function(lambda gs: optimizer.apply(gs, list(variables.values())), jit_compile=True)
    for grads in grads_seq:
        with tf_cpu():
            apply([tf.constant(grads[n]) for n in variables])
        state = mod.weights.export_adam(model, optimizer)
        out.append((mod.weights.export_weights(model), state.m, state.v))
    return out


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise distance in float32 units in the last place (0 for equal values, 1 for neighbours)."""
    def ordered(t):
        i = np.ascontiguousarray(t, np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    return np.abs(ordered(a) - ordered(b))


# ----------------------------------------------------------------------------------------------- check 4
def lockstep_data() -> np.ndarray:
    """(LOCKSTEP_EXAMPLES, 784) mnist-5k training images: one full batch per epoch."""
    from vae_core.data import load_dataset

    return load_dataset("mnist-5k").x_train[:LOCKSTEP_EXAMPLES]


def lockstep_config(steps: int = LOCKSTEP_STEPS_TOTAL):
    from vae_core import TrainConfig

    return TrainConfig(epochs=steps, batch_size=LOCKSTEP_EXAMPLES, seed=0)


def lockstep_losses(name: str, spec, x: np.ndarray, config, *, device: str = "cpu", out_dir=None,
                    resume_from=None, model=None, precision: str = "fp32") -> np.ndarray:
    """Per-step losses of `fit(shared_noise=True)` from `vae_core.init_weights(spec, 0)` (or `model`): one batch
    per epoch, so each epoch's train_loss is one step's loss. With resume_from, the whole history (the
    checkpoint's epochs first). precision="fp64" trains in float64 (no out_dir or resume_from then)."""
    from vae_core import fit

    model = build_shared(name, spec, seed=0, device=device) if model is None else model
    history = fit(model, x, None, config, shared_noise=True, progress=False, device=device, out_dir=out_dir,
                  resume_from=resume_from, precision=precision)
    return np.array(history["train_loss"])


def torch_lockstep_in_segments(spec, x: np.ndarray, config, stops, root: Path, device: str = "cpu"
                               ) -> tuple[np.ndarray, dict[int, Path]]:
    """Torch's lockstep run as a chain of `fit` calls, each resuming from the last one's checkpoint and stopping
    after the epochs in `stops`. A resumed run repeats an uninterrupted one bit for bit (data order, noise and
    Adam state are restored), so the curve is the uninterrupted run's. Returns (per-step losses (config.epochs,),
    {stop: checkpoint after that many steps})."""
    ckpts: dict[int, Path] = {}
    previous, curve = None, None
    for stop in sorted({*stops, config.epochs}):
        out = Path(root) / f"torch_step{stop}"
        curve = lockstep_losses("torch", spec, x, config.replace(epochs=stop), device=device, out_dir=out,
                                resume_from=previous)
        previous = ckpts[stop] = out / "last.safetensors"
    return curve, ckpts


def relative_gaps(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """|other - reference| / |reference|, elementwise (float64)."""
    reference = np.asarray(reference, np.float64)
    return np.abs(np.asarray(other, np.float64) - reference) / np.abs(reference)


def weight_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """||a - b|| / ||a|| over all weights together."""
    num = sum(float(((a[n].astype(np.float64) - b[n]) ** 2).sum()) for n in a)
    den = sum(float((a[n].astype(np.float64) ** 2).sum()) for n in a)
    return float(np.sqrt(num / den))


def resynced_lockstep(spec, x: np.ndarray, config, torch_curve: np.ndarray, ckpts: dict[int, Path],
                      starts=RESYNC_STARTS, n_steps: int = RESYNC_STEPS, name: str = "tf"
                      ) -> dict[int, dict[str, float]]:
    """Backend `name` (TF by default) resumed from torch's checkpoint after k steps (weights, Adam moments and step:
    the same state), for `n_steps` more steps, against torch's own next steps. `ckpts` must hold k and k + n_steps
    for every start.

    Returns {k: {"max_rel_gap": max relative loss gap over the n_steps, "weight_distance": ||w_name - w_torch|| /
    ||w_torch|| after them, "curve_change": max relative change of torch's loss over the window}}."""
    from vae_core import read_checkpoint
    from vae_core.registry import backend_module

    out = {}
    for k in starts:
        model = build_shared(name, spec, seed=0)
        curve = lockstep_losses(name, spec, x, config.replace(epochs=k + n_steps), resume_from=ckpts[k],
                                model=model)
        window = torch_curve[k:k + n_steps]
        theirs = read_checkpoint(ckpts[k + n_steps]).weights
        ours = backend_module(name).weights.export_weights(model)
        out[k] = {"max_rel_gap": float(relative_gaps(window, curve[k:k + n_steps]).max()),
                  "weight_distance": weight_distance(theirs, ours),
                  "curve_change": float(relative_gaps(window[:1], window).max())}
    return out


def torch_lockstep_variant(spec, x: np.ndarray, config, variant: str, device: str = "cpu") -> np.ndarray:
    """Torch's lockstep run with a perturbation that changes only rounding, to measure how far the trajectory
    amplifies it (the baseline for check 4's 200-step gap):
        "bias_after_gemm": every Linear computes x @ W^T and then adds b (torch's Linear fuses b into addmm), the
            same math rounded differently, as another framework's kernels would;
        "init_plus_one_ulp": every initial weight moved one float32 ulp up."""
    import torch

    from backends.torch.weights import import_weights
    from vae_core.model.init import init_weights

    model = build_shared("torch", spec, seed=0, device=device)
    if variant == "bias_after_gemm":
        def linear_then_bias(layer, h):
            return torch.nn.functional.linear(h, layer.weight) + layer.bias
        for layer in model.neutral_layers().values():
            layer.forward = linear_then_bias.__get__(layer)
    elif variant == "init_plus_one_ulp":
        weights = init_weights(spec, 0)
        import_weights(model, {n: np.nextafter(w, np.float32(np.inf)) for n, w in weights.items()})
    else:
        raise ValueError(f"variant must be 'bias_after_gemm' or 'init_plus_one_ulp'; got {variant!r}")
    return lockstep_losses("torch", spec, x, config, device=device, model=model)


# ----------------------------------------------------------------------------------------------- check 5
def checkpoint_round_trip(source: str, target: str, x: np.ndarray, val: np.ndarray, out_dir: Path, spec,
                          n: int = 32) -> tuple:
    """Train `source` for two epochs (writing checkpoints to out_dir), load its last checkpoint into `target`, and
    run both on the first n rows of x with the same eps. Returns (source model, target model, checkpoint path,
    source outputs, target outputs) (outputs as `forward`)."""
    from vae_core import TrainConfig, fit, load_checkpoint

    model = build_shared(source, spec, seed=3)
    fit(model, x, val, TrainConfig(epochs=2, batch_size=64), out_dir=out_dir, progress=False, device="cpu")
    ckpt = Path(out_dir) / "last.safetensors"
    moved = load_checkpoint(ckpt, backend=target)
    eps = np.random.default_rng(0).standard_normal((n, spec.latent_dim)).astype(np.float32)
    return model, moved, ckpt, forward(source, model, x[:n], eps), forward(target, moved, x[:n], eps)


# ----------------------------------------------------------------------------------------------- check 7
def tf_reference() -> tuple[dict, dict[str, np.ndarray]]:
    """The committed TF CPU outputs (scripts/make_tf_reference.py): (metadata, tensors). Keys:
    "{likelihood}.forward.{decoder_out|mu|log_var}" (checks 2's inputs), "bernoulli.grad.{weight}" (check 3's
    inputs, beta 1), "bernoulli.lockstep" (check 4's per-step losses)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(TF_REFERENCE), "np") as f:
        meta = json.loads(f.metadata()["reference"])
    return meta, load_file(str(TF_REFERENCE))


def loss_fixture() -> tuple[dict, dict[str, np.ndarray]]:
    """Check 1's committed inputs and float64 references (scripts/make_parity_fixture.py): (metadata, tensors)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = FIXTURES / "losses.safetensors"
    with safe_open(str(path), "np") as f:
        meta = json.loads(f.metadata()["fixture"])
    return meta, load_file(str(path))


def loss_inputs(tensors: dict[str, np.ndarray], case: str) -> dict[str, np.ndarray]:
    """One case's x, decoder_out, mu and log_var from `loss_fixture()`'s tensors."""
    return {k: tensors[f"{case}.{k}"] for k in ("x", "decoder_out", "mu", "log_var")}

