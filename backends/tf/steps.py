"""The train and test steps of the TF/Keras VAE: what its Keras hooks `VAE.train_step` / `VAE.test_step` run.

Functions of the model, kept out of it as the torch backend keeps its step out of its model (`backends.torch.steps`).
`train_step(model, data)` makes one optimizer step on a batch (Keras' own `model.fit`), one per batch of a block
(`backends.tf.fit`'s pipeline), or one replica's part of a step under a tf.distribute strategy; `test_step(model,
data)` adds a batch's losses to the trackers. Both return the trackers' results, as Keras' hooks do.

`StepState` is what the steps keep between calls, one per VAE (`VAE.step_state`): the trainer's step log and the
compiled replica step. `block_train_function(model, fallback)` is the train function Keras' own `fit` runs for a
VAE compiled with XLA and several steps per call (`VAE.compile`'s defaults): each call's batches run as one block,
in one XLA program, as in `backends.tf.fit`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import keras
import tensorflow as tf

from backends.tf.losses import negative_elbo, per_example
from backends.tf.pipeline import BATCHES_PER_BLOCK, CONV_BATCHES_PER_BLOCK
from vae_core.model.spec import VAESpec


class StepState:
    """The train step's state outside Keras' own, one per VAE, made in `VAE.__init__` (`model.step_state`).

    log: None, or a (K, 3) float64 tf.Variable into which the train step writes each step's batch means (loss,
        recon, kl), row k for a block's step k, for the caller to read after the block. Set by `backends.tf.train`
        for the duration of a fit (`logging`); None for plain Keras use. The step reads it when Keras traces it
        (`model.compile` drops the trace).
    shard_gradients: `_shard_gradients` XLA-compiled for this model, made at the first step under a strategy
        (None until then, and after `retrace`).
    """

    def __init__(self) -> None:
        self.log: tf.Variable | None = None
        self.shard_gradients = None

    @contextlib.contextmanager
    def logging(self, log: tf.Variable) -> Iterator[None]:
        """The train step writes its batch means into `log` while the block runs."""
        self.log = log
        try:
            yield
        finally:
            self.log = None

    def retrace(self) -> None:
        """Drop the compiled replica step, so that its next use traces it again (the layers' precision changed)."""
        self.shard_gradients = None


def train_step(model, data):
    """One optimizer step on a batch x, (B, D) rows or (B, H, W[, C]) images; or, for a block (a dict with
    "rows"), one step per batch in order.

    Blocks are what `backends.tf.fit` feeds: {"x": (K, B, D), "eps": (K, B, L), "rows": (K,) int32}, with
    rows[k] the real examples of batch k (the rest is padding, masked out of the loss) and empty batches last.
    The K steps run in one compiled loop, so an epoch makes K times fewer calls into the XLA program.
    """
    x, eps, rows = _unpack(data)
    share = data.get("share") if isinstance(data, dict) else None
    if share is not None:  # a replica's shard of a global batch, under a tf.distribute strategy
        return _train_shard(model, x, eps, share)
    if rows is None:  # a batch (Keras' own fit): (B, D) rows or (B, H, W[, C]) images
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:  # this replica's part of Keras' split
            x = _as_rows(model, x)  # (b, D)
            count = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.shape(x)[0], model.compute_dtype))  # () the batch
            return _train_shard(model, x, eps, tf.fill(tf.shape(x)[:1], 1.0 / count))
        return _train_batch(model, x, eps)
    if x.shape[0] == 1:  # one batch per block (conv models): no loop, see backends.tf.pipeline.block_shape
        _train_batch(model, x[0], None if eps is None else eps[0], rows[0], 0)
        return {m.name: m.result() for m in model.metrics}
    n_batches = tf.math.count_nonzero(rows, dtype=tf.int32)  # ()

    def body(k):
        _train_batch(model, x[k], None if eps is None else eps[k], rows[k], k)
        return (k + 1,)

    tf.while_loop(lambda k: k < n_batches, body, (tf.constant(0),))
    return {m.name: m.result() for m in model.metrics}


def test_step(model, data):
    """The trackers take a batch's per-example losses (padding rows, mask 0 under a strategy, left out)."""
    x, eps, _ = _unpack(data)
    x = _as_rows(model, x)  # (B, D)
    out, mu, log_var = model(x, eps=eps, training=False)  # (B, D|2D), (B, L), (B, L)
    recon, kl = per_example(x, out, mu, log_var, likelihood=model.spec.likelihood)  # (B,) each
    mask = data.get("mask") if isinstance(data, dict) else None  # (B,) 0 for padding, under a strategy
    return _track_examples(model, recon + model.spec.beta * kl, recon, kl,
                           None if mask is None else tf.cast(mask, tf.float64))


def _unpack(data) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """x, eps (or None) and rows (or None) of a batch or block."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    if isinstance(x, dict):
        return x["x"], x.get("eps"), x.get("rows")
    return x, None, None


def _as_rows(model, x) -> tf.Tensor:
    """A batch inside a train or test step, rows or images, as (B, D) rows of the model's float dtype."""
    return tf.reshape(model._float(x), (-1, model.spec.input_dim))


def _elbo(model, x, eps, training: bool, rows=None):
    out, mu, log_var = model(x, eps=eps, training=training)  # (B, D|2D), (B, L), (B, L)
    return negative_elbo(x, out, mu, log_var, likelihood=model.spec.likelihood, beta=model.spec.beta, rows=rows)


def _update_trackers(model, x, total, recon, kl, rows=None) -> dict[str, tf.Tensor]:
    # weight each batch mean by its number of examples: exact epoch means
    batch = tf.cast(tf.shape(x)[0] if rows is None else rows, tf.float64)
    for tracker, value in ((model.loss_tracker, total), (model.recon_tracker, recon), (model.kl_tracker, kl)):
        tracker.update_state(tf.cast(value, tf.float64), sample_weight=batch)
    return {m.name: m.result() for m in model.metrics}


def _train_batch(model, x, eps, rows=None, k=0) -> dict[str, tf.Tensor]:
    x = _as_rows(model, x)  # (B, D)
    with tf.GradientTape() as tape:
        total, recon, kl = _elbo(model, x, eps, training=True, rows=rows)  # () each
    grads = tape.gradient(total, model.trainable_variables)
    step_log = model.step_state.log
    if step_log is not None:  # row k: this step's batch means (loss, recon, kl), read after the block
        step_log.scatter_nd_update([[k]], tf.cast(tf.stack([total, recon, kl]), tf.float64)[None])
    model.optimizer.apply(grads, model.trainable_variables)
    return _update_trackers(model, x, total, recon, kl, rows)


def _train_shard(model, x, eps, share) -> dict[str, tf.Tensor]:
    """One replica's part of an optimizer step under a tf.distribute strategy (`backends.tf.fit`).

    x: (b, D) this replica's rows of the global batch (b may be 0); share: (b,) 1 / the global batch's
    examples, 0 for padding (`backends.tf.pipeline.replica_batches`; Keras' own fit: its split of a batch,
    see `train_step`). The replica's loss is the weighted sum of its examples' losses, so the optimizer's sum of the
    replicas' gradients is the gradient of the global batch's mean loss, whatever the split; TorchAdam clips
    the norm of that sum. The step log gets the all-reduced batch means, the same on every replica.
    """
    x = _as_rows(model, x)  # (b, D)
    weight = tf.cast(share, model.compute_dtype)  # (b,)
    # XLA only with the noise given: no RNG inside XLA
    step = _shard_gradients_xla(model) if eps is not None else functools.partial(_shard_gradients, model)
    grads, sums, (total, recon, kl) = step(x, eps, weight)
    context = tf.distribute.get_replica_context()
    means = context.all_reduce(tf.distribute.ReduceOp.SUM, sums)  # (3,) the global batch's means
    step_log = model.step_state.log
    if step_log is not None:
        step_log.assign(means[None])  # (1, 3)
    model.optimizer.apply(grads, model.trainable_variables)
    return _track_examples(model, total, recon, kl, tf.cast(weight > 0, tf.float64))  # padding rows count 0


def _shard_gradients(model, x, eps, weight):
    """A replica's forward and backward pass: (x (b, D), eps (b, L) or None, weight (b,)) -> (the gradients
    of sum(weight * loss), (3,) float64 weighted sums of (loss, recon, kl), the per-example (b,) values)."""
    with tf.GradientTape() as tape:
        out, mu, log_var = model(x, eps=eps, training=True)  # (b, D|2D), (b, L), (b, L)
        recon, kl = per_example(x, out, mu, log_var, likelihood=model.spec.likelihood)  # (b,) each
        total = recon + model.spec.beta * kl  # (b,)
        loss = tf.reduce_sum(weight * total)  # ()
    sums = tf.cast(tf.stack([loss, tf.reduce_sum(weight * recon), tf.reduce_sum(weight * kl)]), tf.float64)
    return tape.gradient(loss, model.trainable_variables), sums, (total, recon, kl)


def _shard_gradients_xla(model):
    """`_shard_gradients` XLA-compiled on its own, once per model: Keras runs a strategy's step without XLA (it
    cannot compile the cross-replica all-reduce), and this part is most of the step. Dropped when the layers'
    precision changes (`StepState.retrace`, called by `backends.tf.train`)."""
    state = model.step_state
    if state.shard_gradients is None:
        def shard_gradients(x, eps, weight):
            return _shard_gradients(model, x, eps, weight)

        state.shard_gradients = tf.function(shard_gradients, jit_compile=True, reduce_retracing=True)
    return state.shard_gradients


def _track_examples(model, total, recon, kl, mask=None) -> dict[str, tf.Tensor]:
    """The trackers take the per-example (B,) values, padding rows (mask 0) left out: exact means over the
    examples, also when a tf.distribute strategy splits the batches (the replicas' sums add up)."""
    for tracker, values in ((model.loss_tracker, total), (model.recon_tracker, recon), (model.kl_tracker, kl)):
        tracker.update_state(tf.cast(values, tf.float64), sample_weight=mask)
    return {m.name: m.result() for m in model.metrics}


# ----------------------------------------------------------------------------------------------- Keras' own fit
def block_train_function(model, fallback):
    """The train function of Keras' own `fit` for a VAE compiled with jit_compile=True and steps_per_execution
    K > 1, set by `VAE.compile` (Keras' hook `make_train_function` keeps a train function that is set).

    Keras' own loop makes one XLA call per batch (K of them inside a tf.while_loop). This one reads the call's
    batches from Keras' iterator and runs those of the block's size, up to K, in order in one XLA program
    (`train_step`'s block path, as `backends.tf.fit` runs its blocks): one call into XLA for K steps. The same
    steps (bit for bit on the CPU, `tests/backends/tf/test_keras_fit.py`): a block holds whole batches only (past
    the data's end, empty ones that do not run), and a batch of another size (the short last batch of an epoch)
    ends the block: it and the call's batches after it, up to K in all, run one per XLA call, as in Keras' loop, so
    that each draws its noise in its own shape (XLA's normals for 29 rows are not the first 29 rows of its normals
    for 32). The block's size is the largest batch seen (its program compiles once); a later fit with smaller
    batches runs them one by one. Returns the trackers' results after the call's last step, as Keras' function
    does, and raises StopIteration once the data are spent. Data that are not a tf.data iterator, or whose elements
    are not dense tensors of known shape past the batch dimension, go to `fallback` (Keras' own function)."""
    k = int(model.steps_per_execution)
    width = tf.Variable(0, dtype=tf.int32, trainable=False, name="block_rows")  # rows of a block's batches
    run_block = tf.function(functools.partial(train_step, model), jit_compile=True, reduce_retracing=True)
    run_batch = tf.function(functools.partial(train_step, model), jit_compile=True, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def read_and_run(iterator):
        spec = iterator.element_spec
        specs = _block_parts(_without_optionals(spec))
        shapes = [tf.TensorShape([None, *s.shape[1:]]) for s in specs]

        def reading(i, whole, rows_of_block, size, read):
            return (i < k) & whole

        def read_one(i, whole, rows_of_block, size, read):
            optional = iterator.get_next_as_optional()
            part = tf.cond(optional.has_value(), lambda: _block_parts(_without_optionals(optional.get_value())),
                           lambda: tuple(tf.zeros([0, *s.shape[1:]], s.dtype) for s in specs))
            size = tf.shape(part[0])[0]  # (x (b, ...), eps (b, L) if given): b rows, 0 past the data's end
            rows_of_block = tf.where(i == 0, tf.maximum(width, size), rows_of_block)
            whole = tf.equal(size, rows_of_block) & (size > 0)
            return i + 1, whole, rows_of_block, size, tuple(a.write(i, p) for a, p in zip(read, part))

        # Read until K batches, the data's end, or a batch of another size than the first (or than earlier calls').
        read = tuple(tf.TensorArray(s.dtype, size=0, dynamic_size=True, element_shape=shape, infer_shape=False)
                     for s, shape in zip(specs, shapes))
        n_read, whole, rows_of_block, last_size, read = tf.while_loop(
            reading, read_one, (tf.constant(0), tf.constant(True), width.read_value(), tf.constant(0), read))
        width.assign(rows_of_block)
        n_block = tf.where(whole, n_read, n_read - 1)  # the block: the whole batches read, in order

        def stacked(a, s):
            return tf.cond(n_block > 0, lambda: a.gather(tf.range(n_block)),
                           lambda: tf.zeros([0, rows_of_block, *s.shape[1:]], s.dtype))

        padding = [[0, k - n_block], [0, 0]]  # up to K batches, the empty ones last
        block = [tf.pad(stacked(a, s), padding + [[0, 0]] * (s.shape.rank - 1)) for a, s in zip(read, specs)]
        rows = tf.concat([tf.fill([n_block], rows_of_block), tf.zeros([k - n_block], tf.int32)], 0)  # (K,)
        block = {"x": block[0], "rows": rows} if len(block) == 1 else {"x": block[0], "eps": block[1], "rows": rows}
        lone = tuple(tf.cond(~whole & (last_size > 0), lambda a=a: a.read(n_read - 1),
                             lambda s=s: tf.zeros([0, *s.shape[1:]], s.dtype)) for a, s in zip(read, specs))

        def current():
            return {m.name: m.result() for m in model.metrics}

        results = tf.cond(n_block > 0, lambda: run_block(block), current)
        # A batch of another size ends the block; it and the call's batches after it run one per XLA call.
        lone_rows = tf.shape(lone[0])[0]
        with tf.control_dependencies(tf.nest.flatten(results)):
            results = tf.cond(lone_rows > 0, lambda: run_batch(_batch_of(lone)), lambda: results)

        def more(steps, spent, results):
            return (steps < k) & ~spent

        def one_more(steps, spent, results):
            optional = iterator.get_next_as_optional()
            results = tf.cond(optional.has_value(),
                              lambda: run_batch(_batch_of(_block_parts(_without_optionals(optional.get_value())))),
                              lambda: results)
            return steps + tf.cast(optional.has_value(), tf.int32), ~optional.has_value(), results

        steps = n_block + tf.cast(lone_rows > 0, tf.int32)
        steps, _, results = tf.while_loop(more, one_more, (steps, lone_rows == 0, results))
        return steps, results

    def function(iterator):
        if not isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)) or \
                not _blockable(iterator.element_spec):
            return fallback(iterator)
        steps, results = read_and_run(iterator)
        if int(steps) == 0:
            raise StopIteration
        return results

    return function


def _batch_of(parts: tuple) -> dict:
    """A batch {"x", "eps"} for the one-batch step from (x,) or (x, eps)."""
    return {"x": parts[0]} if len(parts) == 1 else {"x": parts[0], "eps": parts[1]}


def _without_optionals(data):
    """Keras' data adapters hold absent parts (no y, no sample weights) as empty tf Optionals: those become None."""
    return tf.nest.map_structure(
        lambda v: None if isinstance(v, (tf.experimental.Optional, tf.OptionalSpec)) else v, data)


def _block_parts(data) -> tuple:
    """(x,) or (x, eps) of a batch, or of its specs: what a block holds (targets and sample weights are ignored)."""
    x, eps, _ = _unpack(data)
    return (x,) if eps is None else (x, eps)


def _blockable(element_spec) -> bool:
    """Whether batches of this spec can be padded and stacked: x (and eps) dense, with known shapes past the batch
    dimension."""
    try:
        specs = _block_parts(_without_optionals(element_spec))
    except (KeyError, TypeError, ValueError):
        return False
    return all(isinstance(spec, tf.TensorSpec) and spec.shape.rank is not None and spec.shape.rank >= 1
               and None not in spec.shape[1:] for spec in specs)


def default_steps_per_execution(spec: VAESpec, under_strategy: bool = False) -> int:
    """The batches per compiled call that `VAE.compile` picks for Keras' own `fit`: those `vae_core.fit` runs per
    call (`backends.tf.pipeline`): BATCHES_PER_BLOCK for an MLP, CONV_BATCHES_PER_BLOCK for a conv model, and 1
    under a tf.distribute strategy (one global batch per call, as `vae_core.fit` runs it)."""
    if under_strategy:
        return 1
    return CONV_BATCHES_PER_BLOCK if spec.architecture == "conv" else BATCHES_PER_BLOCK
