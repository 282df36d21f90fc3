"""The tf.data pipelines that feed Keras' `model.fit` and `model.evaluate` inside `backends.tf.fit`.

Training data arrives in blocks of consecutive batches, which `VAE.train_step` runs as one XLA loop: one launch
of the compiled program per block instead of one per batch cuts the per-batch launch overhead (README,
Benchmarks). The non-finite check names the exact step all the same (the train step records it).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_core.trainer import EVAL_BATCH_SIZE

BATCHES_PER_BLOCK = 32  # batches per call into the compiled train step
# Conv models take one batch per call: inside XLA's while loop, TF 2.21's CPU convolutions run an order of magnitude
# slower than the same step called once per batch (README, "Conv models"), and a conv step is long enough that
# the per-call overhead the blocks save does not matter.
CONV_BATCHES_PER_BLOCK = 1
BLOCK_ROWS = 4096  # and at most this many rows per block (at least one batch): bounds a block's memory


def block_shape(n: int, batch_size: int, batches_per_block: int = BATCHES_PER_BLOCK) -> tuple[int, int]:
    """(K, B) of the blocks of an epoch of `n` examples: B = min(batch_size, n) rows per batch (a batch size above
    N trains on one batch of N rows) and K = min(batches_per_block, batches in the epoch, BLOCK_ROWS // B) >= 1."""
    b = min(batch_size, n)
    return max(1, min(batches_per_block, -(-n // b), BLOCK_ROWS // b)), b


def train_dataset(x: tf.Variable | tf.Tensor, perm: np.ndarray, eps: tf.Tensor, batch_size: int,
                  batches_per_block: int = BATCHES_PER_BLOCK, shape: tuple[int, int] | None = None) -> tf.data.Dataset:
    """The batches of `perm` in order, grouped into blocks {"x": (K, B, D), "eps": (K, B, L), "rows": (K,)} that
    `VAE.train_step` runs as K consecutive steps; the last block is padded to K batches, and the last batch to B
    rows; rows[k] counts the real examples of batch k.
    x: (N, D) float32, or uint8 images (x / 255 per block); perm: the examples to take, in order (an epoch, or the steps of one part of it); eps: (len(perm), L),
    row i for perm[i]. (K, B) is `shape`, the whole epoch's `block_shape`, so every part of an epoch runs the same
    compiled step; without it, `block_shape(len(perm), batch_size, batches_per_block)`.
    """
    n, d, latent = len(perm), int(x.shape[1]), int(eps.shape[1])
    k, b = shape or block_shape(n, batch_size, batches_per_block)
    n_batches = -(-n // b)
    n_blocks = -(-n_batches // k)
    index = np.zeros(n_blocks * k * b, np.int64)  # (slots,): example of each slot; padding reads row 0
    index[:n] = perm
    rows = np.clip(n - b * np.arange(n_blocks * k), 0, b).astype(np.int32)  # (n_blocks * K,)
    index_t, rows_t = tf.constant(index), tf.constant(rows)
    noise = tf.pad(tf.convert_to_tensor(eps), [[0, len(index) - n], [0, 0]])  # (slots, L)

    def block(j):
        slots = tf.range(j * k * b, (j + 1) * k * b)  # (K * B,)
        batch = tf.gather(x, tf.gather(index_t, slots))  # (K * B, D)
        if batch.dtype == tf.uint8:  # images kept uint8 become x / 255 per block, in float32
            batch = tf.cast(batch, tf.float32) / 255.0
        return {"x": tf.reshape(batch, (k, b, d)),  # (K, B, D)
                "eps": tf.reshape(tf.gather(noise, slots), (k, b, latent)),  # (K, B, L)
                "rows": rows_t[j * k:(j + 1) * k]}  # (K,)

    blocks = tf.data.Dataset.range(n_blocks).map(block, num_parallel_calls=1, deterministic=True).prefetch(1)
    return blocks.with_options(_options())


def replica_batches(x: tf.Variable | tf.Tensor, perm: np.ndarray, eps: tf.Tensor, batch_size: int,
                    replicas: int) -> tf.data.Dataset:
    """The global batches of `perm` in order, {"x": (B, D), "eps": (B, L), "share": (B,)}, for a model under a
    tf.distribute strategy of `replicas` replicas: Keras' fit splits each batch between them
    (`experimental_distribute_dataset`). share = 1 / the batch's examples goes with every example, so a replica's
    part of the loss needs no knowledge of the split (`VAE._train_shard`). A last batch that does not split evenly
    is padded with share-0 rows up to a multiple of `replicas`: Keras' fit needs equal shapes on all replicas.
    x: (N, D) float32, or uint8 images (x / 255 per batch); eps: (len(perm), L), row i for perm[i]."""
    n = len(perm)
    sizes = np.minimum(batch_size, n - batch_size * np.arange(-(-n // batch_size)))  # (steps,) examples per batch
    pad = -sizes[-1] % replicas  # rows that make the last batch split evenly
    index = np.concatenate([perm, np.zeros(pad, perm.dtype)]).astype(np.int64)  # (n + pad,)
    share = np.concatenate([np.repeat(1.0 / sizes, sizes), np.zeros(pad)]).astype(np.float32)  # (n + pad,)
    noise = tf.pad(tf.convert_to_tensor(eps), [[0, pad], [0, 0]])  # (n + pad, L)

    def batch(index_b, eps_b, share_b):
        xb = tf.gather(x, index_b)  # (B, D)
        if xb.dtype == tf.uint8:
            xb = tf.cast(xb, tf.float32) / 255.0
        return {"x": xb, "eps": eps_b, "share": share_b}

    batches = tf.data.Dataset.from_tensor_slices((index, noise, share)).batch(batch_size)
    return batches.map(batch, num_parallel_calls=1, deterministic=True).prefetch(1).with_options(_options())


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
