"""The compiled steps of the JAX VAE: what `backends.jax.train.Trainer` calls, one block of steps per call.

`pure_model(model)` gives the model as a pure function of a parameter pytree (the neutral names' arrays), which
`jax.grad` and `jax.jit` take. `make_block` compiles a block of `steps` optimizer steps into one XLA program, a
`lax.scan` over the block's batches, as the TF backend runs a block of batches per Keras call: forward pass and
loss (in bfloat16 if asked), gradient, torch's gradient clipping, and Adam (`backends.jax.optim.torch_adam`). A
block of one step is the step alone, with no loop around it: the trainer runs what is left of an epoch after its
whole blocks (a step checkpoint, a stop, a callback's batch hook) a step at a time, so a fit compiles two programs.
The learning rate is not part of the program: each step's Adam scalars come in with its batch
(`optim.step_scalars`), so it can change between calls. `make_gather` gathers a block's batches from data held on the device, in the trainer's order.

Under a `jax.sharding.Mesh` (`backends.jax.distributed`), the block's batches are split along the batch axis
between the mesh's devices and the parameters replicated; XLA's SPMD partitioner adds the all-reduces of the
gradient and of the batch means, so the program is the one-device program, data-parallel.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from backends.jax.losses import negative_elbo, per_example
from backends.jax.model import VAE
from backends.jax.optim import make_optimizer
from backends.jax.weights import native_parameters
from vae_core.config import TrainConfig

# the attribute path of a layer in the model's state -> the neutral name prefix (`VAE.neutral_layers`)
_LISTS = {"encoder_conv": "encoder.conv", "encoder": "encoder", "decoder": "decoder", "decoder_conv": "decoder.conv"}
_HEADS = {"mu": "encoder.mu", "log_var": "encoder.log_var", "out": "decoder.out"}


def _neutral_name(path: tuple) -> str:
    """('encoder_conv', 0, 'kernel') -> 'encoder.conv.0.kernel'; ('mu', 'bias') -> 'encoder.mu.bias'."""
    if path[0] in _HEADS:
        return f"{_HEADS[path[0]]}.{path[1]}"
    return f"{_LISTS[path[0]]}.{path[1]}.{path[2]}"


def pure_model(model: VAE) -> tuple[Callable[..., tuple[jax.Array, jax.Array, jax.Array]], dict[str, jax.Array]]:
    """(apply, params): apply(params, x, eps) is `model(x, eps)` as a pure function of `params`, a dict of arrays
    by neutral weight name (the model's own weights, returned as `params`). Traceable by jit, grad and vmap."""
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(state)
    names = [_neutral_name(path) for path, _ in nnx.to_flat_state(state)]
    params = {name: p.get_value() for name, p in native_parameters(model).items()}
    if sorted(names) != sorted(params) or any(leaf.shape != params[n].shape for leaf, n in zip(leaves, names)):
        raise RuntimeError("pure_model: the model's state does not match its neutral weights")  # a Flax change

    def apply(params: dict[str, jax.Array], x: jax.Array, eps: jax.Array):
        module = nnx.merge(graphdef, jax.tree.unflatten(treedef, [params[n] for n in names]), rest)
        return module(x, eps)  # (B, output_dim), (B, L), (B, L)

    return apply, params


# Compiled programs by what they depend on (the spec, the shapes, the compiled-in settings, the mesh), most recent
# last: a jitted function is compiled once per input shape and dtype, and kept as long as it is kept here. The
# programs take the weights as arguments, so any model of the same spec runs on them (its noise stream, which
# they never use, is the first model's).
_PROGRAMS: "OrderedDict[tuple, Callable]" = OrderedDict()
_KEPT_PROGRAMS = 32


def _remembered(key: tuple, build: Callable[[], Callable]) -> Callable:
    """The program of `key`, built now if it is not kept; the least recently used one goes past _KEPT_PROGRAMS."""
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    program = _PROGRAMS[key] = build()
    if len(_PROGRAMS) > _KEPT_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return program


def _mesh_key(mesh: Any) -> tuple | None:
    """A mesh by its axis names and devices (a program traced under one mesh is kept apart from the others')."""
    return None if mesh is None else (tuple(mesh.axis_names), tuple(d.id for d in mesh.devices.flat))


def _values(x: jax.Array, dtype: Any) -> jax.Array:
    """A batch as `dtype` values. The trainer hands over float values (uint8 images are divided by 255 on the host,
    by NumPy: XLA's CPU code divides by multiplying with the reciprocal, which rounds 126 of the 256 values
    differently from `check_data`'s x / 255)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"a batch of {x.dtype} reached the compiled step; the trainer converts images first")
    return x.astype(dtype)


def clip_by_global_norm(grads: dict[str, jax.Array], max_norm: float) -> dict[str, jax.Array]:
    """torch.nn.utils.clip_grad_norm_'s clipping: every gradient times min(1, max_norm / (norm + 1e-6)), the norm
    over all of them (the norm of the per-tensor norms, as torch computes it)."""
    norms = jnp.stack([jnp.linalg.norm(g.ravel()) for g in jax.tree.leaves(grads)])
    total = jnp.linalg.norm(norms)  # ()
    scale = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def make_block(model: VAE, config: TrainConfig, *, batch: int, steps: int, bf16: bool, dtype: Any,
               mesh: Any = None) -> Callable:
    """The compiled block: block(params, opt_state, xs, es, rows, step_sizes, bias2_sqrts) ->
    (params, opt_state, losses (steps, 3), finite ()).

    xs (steps, batch, D) the block's batches (float values), es (steps, batch, L) their noise, rows (steps,) the
    examples that count in each batch (a last batch is padded to `batch`), step_sizes and bias2_sqrts (steps,) Adam's
    scalars in the weights' dtype. losses: each step's batch means (loss, recon, kl); finite: every weight is finite
    after the block. steps == 1 is the step alone, with no loop.

    Adam (`config`'s betas and eps) and `config.grad_clip_norm` are compiled in; the learning rate is not. The
    compiled block is kept for later fits of the same spec and settings (`_remembered`), so a second fit, a resume
    or a sweep over learning rates compiles nothing.
    """
    key = ("block", model.spec, batch, steps, config.adam_beta1, config.adam_beta2, config.adam_eps,
           config.grad_clip_norm, bf16, jnp.dtype(dtype).name, _mesh_key(mesh))
    return _remembered(key, lambda: _block(model, make_optimizer(model, config), batch=batch, steps=steps,
                                           grad_clip_norm=config.grad_clip_norm, bf16=bf16, dtype=dtype))


def _block(model: VAE, tx: Any, *, batch: int, steps: int, grad_clip_norm: float | None, bf16: bool,
           dtype: Any) -> Callable:
    """`make_block`'s program, built for `model`'s structure."""
    apply, _ = pure_model(model)
    spec = model.spec

    def loss(params, xb, eb, b):
        inputs = (params, xb, eb)
        if bf16:  # bfloat16 activations from float32 weights; the loss widens them back (`per_example`)
            inputs = jax.tree.map(lambda a: a.astype(jnp.bfloat16), inputs)
        out, mu, log_var = apply(*inputs)  # (B, output_dim), (B, L), (B, L)
        # the loss of the data as given (float32 x, as torch's autocast leaves it), not of its bfloat16 copy
        total, recon, kl = negative_elbo(xb, out, mu, log_var, likelihood=spec.likelihood, beta=spec.beta, rows=b)
        return total, jnp.stack([total, recon, kl])

    grad_fn = jax.grad(loss, has_aux=True)

    def one_step(carry, inputs):
        params, opt_state = carry
        xb, eb, b, step_size, bias2_sqrt = inputs
        grads, means = grad_fn(params, _values(xb, dtype), eb.astype(dtype), b)
        if grad_clip_norm is not None:
            grads = clip_by_global_norm(grads, grad_clip_norm)
        updates, opt_state = tx.update(grads, opt_state, params, step_size=step_size, bias2_sqrt=bias2_sqrt)
        params = jax.tree.map(lambda p, u: p + u, params, updates)  # optax.apply_updates, in the params' dtype
        return (params, opt_state), means.astype(dtype)

    @jax.jit
    def block(params, opt_state, xs, es, rows, step_sizes, bias2_sqrts):
        if steps == 1:  # no loop around the step (see `_block_steps` in backends.jax.train)
            (params, opt_state), losses = one_step((params, opt_state), (xs[0], es[0], rows[0], step_sizes[0],
                                                                          bias2_sqrts[0]))
            losses = losses[None]  # (1, 3)
        else:
            (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state),
                                                       (xs, es, rows, step_sizes, bias2_sqrts))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
        return params, opt_state, losses, finite

    return block


def make_gather(batch: int, steps: int, sharding: Any = None) -> Callable:
    """gather(data (N, D), order (M,), eps (M, L), first ()) -> (xs (steps, batch, D), es (steps, batch, L)): the
    block of batches that starts at step `first` of the epoch, from data held on the device. `order` and `eps`
    are the epoch's, padded to whole blocks (M >= N); `sharding`: where the block goes (a mesh's batch axis)."""
    return _remembered(("gather", batch, steps, sharding), lambda: _gather(batch, steps, sharding))


def _gather(batch: int, steps: int, sharding: Any) -> Callable:
    @jax.jit
    def gather(data, order, eps, first):
        start = first * batch
        idx = jax.lax.dynamic_slice_in_dim(order, start, steps * batch)  # (steps * batch,)
        es = jax.lax.dynamic_slice_in_dim(eps, start, steps * batch)  # (steps * batch, L)
        xs = jnp.take(data, idx, axis=0)  # (steps * batch, D)
        xs, es = xs.reshape(steps, batch, -1), es.reshape(steps, batch, -1)
        if sharding is not None:
            xs, es = jax.lax.with_sharding_constraint(xs, sharding), jax.lax.with_sharding_constraint(es, sharding)
        return xs, es

    return gather


def make_eval(model: VAE) -> Callable:
    """The compiled evaluation of one batch: (params, x (B, D), eps (B, L)) -> per-example (recon (B,), kl (B,)),
    in the model's dtype (uint8 x becomes x / 255). Kept for later calls on models of the same spec."""
    return _remembered(("eval", model.spec), lambda: _evaluation(model))


def _evaluation(model: VAE) -> Callable:
    apply, _ = pure_model(model)
    spec = model.spec

    @jax.jit
    def evaluate(params, x, eps):
        dtype = jax.tree.leaves(params)[0].dtype
        x = _values(x, dtype)
        out, mu, log_var = apply(params, x, eps.astype(dtype))
        return per_example(x, out, mu, log_var, likelihood=spec.likelihood)

    return evaluate
