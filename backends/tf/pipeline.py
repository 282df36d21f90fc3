"""The tf.data pipelines that feed Keras' `model.fit` and `model.evaluate` inside `backends.tf.fit`.

Training data arrives in blocks of consecutive batches, which the train step (`backends.tf.steps`) runs as one XLA
loop: one launch of the compiled program per block instead of one per batch cuts the per-batch launch overhead
(README, Benchmarks). The non-finite check names the exact step all the same (the train step records it).

A training set read by position (`vae_core.data.lazy.LazyRows`: a .npy map's `MappedRows`, a dataset's
`ItemRows`) is read by `tf.numpy_function` inside the pipeline, one block ahead, in `calls` parallel calls.
"""
from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from vae_core.data.lazy import LazyRows
from vae_core.train.arguments import EVAL_BATCH_SIZE

BATCHES_PER_BLOCK = 32  # batches per call into the compiled train step
# Conv models take one batch per call: inside XLA's while loop, TensorFlow's CPU convolutions run far slower than
# the same step called once per batch (README, "Conv models"), and a conv step is long enough that the per-call
# overhead the blocks save does not matter.
CONV_BATCHES_PER_BLOCK = 1
BLOCK_ROWS = 4096  # and at most this many rows per block (at least one batch): bounds a block's memory


def block_shape(n: int, batch_size: int, batches_per_block: int = BATCHES_PER_BLOCK) -> tuple[int, int]:
    """(K, B) of the blocks of an epoch of `n` examples: B = min(batch_size, n) rows per batch (a batch size above
    N trains on one batch of N rows) and K = min(batches_per_block, batches in the epoch, BLOCK_ROWS // B) >= 1."""
    b = min(batch_size, n)
    return max(1, min(batches_per_block, -(-n // b), BLOCK_ROWS // b)), b


_READ_ERRORS: "weakref.WeakKeyDictionary[LazyRows, Exception]" = weakref.WeakKeyDictionary()


def gather_rows(x: tf.Variable | tf.Tensor | LazyRows, index: tf.Tensor) -> tf.Tensor:
    """x[index]: (len(index), D) rows of a tensor or variable, or, for a training set read by position
    (`LazyRows`), read by `x.take` in a `tf.numpy_function` inside the tf.data pipeline. An index of -1 is a slot
    that holds no example (padding, or a batch past the run): a zero row, which reads nothing from a file, a
    dataset or a stream. A read that raises keeps its error for `read_error`: TF hands `model.fit` only a wrapper
    of its text."""
    if isinstance(x, LazyRows):
        def take(positions: np.ndarray) -> np.ndarray:
            real = positions >= 0
            try:
                if real.all():
                    return x.take(positions)
                rows = np.zeros((len(positions), x.shape[1]), x.dtype)  # (len(index), D)
                if real.any():
                    rows[real] = x.take(positions[real])
                return rows
            except Exception as error:
                _READ_ERRORS.setdefault(x, error)
                raise

        rows = tf.numpy_function(take, [index], tf.as_dtype(x.dtype), stateful=False)
        return tf.ensure_shape(rows, [None, x.shape[1]])
    return tf.gather(x, tf.maximum(index, 0))  # a slot of no example reads row 0, which no step counts


def read_error(x: tf.Variable | tf.Tensor | LazyRows) -> Exception | None:
    """The first error a read of `x` raised since the last call (and forgets it), or None."""
    return _READ_ERRORS.pop(x, None) if isinstance(x, LazyRows) else None


class EpochBlocks:
    """The training pipeline of one fit: built (and traced) once, fed each epoch's order and noise through
    variables, so an epoch costs no new dataset (tracing the map and building a dataset every epoch would be most
    of a short epoch's overhead).

    `steps(first, stop)` gives the epoch's steps first, ..., stop - 1, grouped into blocks
    {"x": (K, B, D), "eps": (K, B, L), "rows": (K,)} that the train step runs as K consecutive steps; a block
    past `stop` holds empty batches (rows 0), and the last batch of the epoch is padded to B rows; rows[k] counts
    the real examples of batch k. x: (N, D) float32, or uint8 images (x / 255 per block), in memory or read by
    position (`LazyRows`, in `calls` parallel reads). (K, B) is `shape`, the epoch's `block_shape`, so every run
    of steps uses the same compiled step.
    """

    def __init__(self, x: tf.Variable | tf.Tensor | LazyRows, n: int, latent_dim: int, shape: tuple[int, int],
                 eps_dtype: tf.DType = tf.float32, calls: int = 1):
        k, b = shape
        d, n_steps = int(x.shape[1]), -(-n // b)
        slots = (n_steps + k) * b  # a block that starts at the last step still reads inside
        # the example of each slot (-1: padding, no example) and its noise; assigned per epoch
        self.index = tf.Variable(tf.fill([slots], tf.constant(-1, tf.int64)), trainable=False,
                                 name="epoch_order")  # (slots,)
        self.noise = tf.Variable(tf.zeros((slots, latent_dim), eps_dtype), trainable=False, name="epoch_eps")
        # (first step, stop step, last block) of the run of steps, one variable read at once: an iterator that
        # Keras drops may still be reading ahead while the next run is assigned
        self.run = tf.Variable(tf.zeros(3, tf.int64), trainable=False, name="run_of_steps")
        rows_t = tf.constant(np.clip(n - b * np.arange(n_steps + k), 0, b).astype(np.int32))  # (n_steps + K,)
        self.shape = shape

        def block(j):
            first, stop, last = tf.unstack(self.run.read_value())
            # a block read ahead past the run (prefetch) is never used: its slots are the last block's, its batches
            # empty
            live_block, j = j <= last, tf.minimum(j, last)
            steps = first + j * k + tf.range(k, dtype=tf.int64)  # (K,)
            slots_j = tf.reshape(steps[:, None] * b + tf.range(b, dtype=tf.int64)[None], [-1])  # (K * B,)
            # the batches of steps past the run are empty: they read no example from the file, dataset or stream
            live = tf.logical_and(steps < stop, live_block)  # (K,)
            examples = tf.where(tf.repeat(live, b), tf.gather(self.index, slots_j), -1)  # (K * B,)
            batch = gather_rows(x, examples)  # (K * B, D)
            if batch.dtype == tf.uint8:  # images kept uint8 become x / 255 per block, in float32
                batch = tf.cast(batch, tf.float32) / 255.0
            return {"x": tf.reshape(batch, (k, b, d)),  # (K, B, D)
                    "eps": tf.reshape(tf.gather(self.noise, slots_j), (k, b, latent_dim)),  # (K, B, L)
                    "rows": tf.where(live, tf.gather(rows_t, steps), 0)}  # (K,)

        # One endless dataset for the whole fit, run for a number of blocks by model.fit(steps_per_epoch=...):
        # given a finite one, Keras makes the next epoch's iterator as each call ends, a cost on every call, and
        # that iterator reads one block ahead.
        self.dataset = tf.data.Dataset.counter().map(block, num_parallel_calls=calls, deterministic=True) \
            .prefetch(1).with_options(_options())

    def set_epoch(self, order: np.ndarray, eps: tf.Tensor | np.ndarray) -> None:
        """The epoch's order (N,) and noise (N, L), row i for order[i]."""
        pad = int(self.index.shape[0]) - len(order)
        self.index.assign(np.concatenate([order.astype(np.int64), np.full(pad, -1, np.int64)]))
        self.noise.assign(tf.pad(tf.cast(eps, self.noise.dtype), [[0, pad], [0, 0]]))

    def steps(self, first: int, stop: int) -> tuple[tf.data.Dataset, int]:
        """The blocks of the epoch's steps first, ..., stop - 1 (0-based), and how many blocks that is: iterate
        that many (`model.fit(dataset, steps_per_epoch=count)`) from a new iterator before the next call."""
        if not 0 <= first < stop:  # Keras reads steps_per_epoch=0 as "until the data ends": never, here
            raise ValueError(f"EpochBlocks.steps: need 0 <= first < stop; got first={first}, stop={stop}")
        count = -(-(stop - first) // self.shape[0])
        self.run.assign([first, stop, count - 1])
        return self.dataset, count


def train_dataset(x: tf.Variable | tf.Tensor, perm: np.ndarray, eps: tf.Tensor | np.ndarray, batch_size: int,
                  batches_per_block: int = BATCHES_PER_BLOCK) -> tf.data.Dataset:
    """The blocks (`EpochBlocks`) of one epoch whose order is `perm`, with eps (len(perm), L), row i for perm[i],
    in blocks of `block_shape(len(perm), batch_size, batches_per_block)`."""
    shape = block_shape(len(perm), batch_size, batches_per_block)
    blocks = EpochBlocks(x, len(perm), int(np.shape(eps)[1]), shape)
    blocks.set_epoch(perm, eps)
    dataset, count = blocks.steps(0, -(-len(perm) // shape[1]))
    return dataset.take(count)


def replica_batches(x: tf.Variable | tf.Tensor | LazyRows, perm: np.ndarray, eps: tf.Tensor, batch_size: int,
                    replicas: int, calls: int = 1) -> tf.data.Dataset:
    """The global batches of `perm` in order, {"x": (B, D), "eps": (B, L), "share": (B,)}, for a model under a
    tf.distribute strategy of `replicas` replicas: Keras' fit splits each batch between them
    (`experimental_distribute_dataset`). share = 1 / the batch's examples goes with every example, so a replica's
    part of the loss needs no knowledge of the split (`backends.tf.steps`). A last batch that does not split evenly
    is padded with share-0 rows up to a multiple of `replicas`: Keras' fit reduces its first batch elementwise
    across the replicas, and any batch may come first (a run of steps can start anywhere in an epoch).
    x: (N, D) float32, or uint8 images (x / 255 per batch), in memory or read by position (`LazyRows`, in `calls`
    parallel reads); eps: (len(perm), L), row i for perm[i]."""
    n = len(perm)
    sizes = np.minimum(batch_size, n - batch_size * np.arange(-(-n // batch_size)))  # (steps,) examples per batch
    pad = -sizes[-1] % replicas  # rows that make the last batch split evenly
    index = np.concatenate([perm, np.zeros(pad, perm.dtype)]).astype(np.int64)  # (n + pad,)
    share = np.concatenate([np.repeat(1.0 / sizes, sizes), np.zeros(pad)]).astype(np.float32)  # (n + pad,)
    noise = tf.pad(tf.convert_to_tensor(eps), [[0, pad], [0, 0]])  # (n + pad, L)

    def batch(index_b, eps_b, share_b):
        xb = gather_rows(x, index_b)  # (B, D)
        if xb.dtype == tf.uint8:
            xb = tf.cast(xb, tf.float32) / 255.0
        return {"x": xb, "eps": eps_b, "share": share_b}

    batches = tf.data.Dataset.from_tensor_slices((index, noise, share)).batch(batch_size)
    return batches.map(batch, num_parallel_calls=calls, deterministic=True).prefetch(1).with_options(_options())


def val_dataset(val: np.ndarray, eps: np.ndarray, replicas: int = 1) -> tf.data.Dataset:
    """Batches {"x": (B, D) float32, "eps": (B, L)} of the validation set; uint8 images become x / 255 here.

    Under a strategy of several `replicas`, the batches hold a multiple of `replicas` rows, the set is padded to
    one with rows of "mask" 0 (real rows 1), and the batches carry the mask: Keras splits each batch between the
    replicas and needs equal shapes on all of them."""
    size = EVAL_BATCH_SIZE
    if replicas > 1:
        pad = -len(val) % replicas
        mask = np.concatenate([np.ones(len(val), np.float32), np.zeros(pad, np.float32)])
        val = np.concatenate([val, np.zeros((pad, *val.shape[1:]), val.dtype)])
        eps = np.concatenate([eps, np.zeros((pad, eps.shape[1]), eps.dtype)])
        size = max(replicas, EVAL_BATCH_SIZE // replicas * replicas)
        batches = tf.data.Dataset.from_tensor_slices({"x": val, "eps": eps, "mask": mask}).batch(size)
    else:
        batches = tf.data.Dataset.from_tensor_slices({"x": val, "eps": eps}).batch(size)
    if val.dtype == np.uint8:
        batches = batches.map(lambda b: {**b, "x": tf.cast(b["x"], tf.float32) / 255.0})
    return batches.prefetch(1).with_options(_options())


def _options() -> tf.data.Options:
    """tf.data autotuning off: the pipelines have fixed, small buffers, and with it on, releasing an epoch's
    iterator can stall `model.fit` on a small CPU."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
