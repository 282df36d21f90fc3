"""Evaluation metrics, backend-neutral: the importance-weighted log-likelihood (IWAE) and active units.

Imports with NumPy alone. The dispatchers `iwae_nll`, `posterior_means` and `active_units` take a model of
either backend and call `backends.<name>.metrics`, which has the same functions with the same signatures;
the backends compute the per-chunk network math, this module owns the checks, the noise, the sample loop
and the reductions, so both backends run the same estimator on the same numbers.

IWAE (Burda et al. 2015). For one image x and k samples z_1..z_k ~ q(z|x):

    log p̂(x) = log (1/k) Σ_i w_i,   log w_i = log p(x|z_i) + log N(z_i; 0, I) - log q(z_i|x)

with every density normalised (the ½·log 2π constants included). E[log p̂(x)] is a lower bound on log p(x)
that rises with k (k = 1 is the single-sample ELBO) and reaches log p(x) as k → ∞. Reported, as in the
literature, as the negative log-likelihood NLL = −log p̂(x) in nats, averaged over the images:
lower is better; for binary data it is positive.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from vae_core.checks import check_bool, check_float, check_int
from vae_core.data.lazy import LazyRows
from vae_core.model.losses import HALF_LOG_2PI

DEFAULT_K = 1000  # importance samples per image (Burda et al. report k = 5000)
SCORE_K = 100  # `score`'s samples per example, `vae evaluate --k`'s default (k = 1000 takes 10x longer)
DEFAULT_CHUNK_SIZE = 100  # samples per image pushed through the decoder at once
DEFAULT_BATCH_SIZE = 100  # images per batch; one decoder pass holds batch_size * chunk_size rows
ACTIVE_THRESHOLD = 0.01  # Burda et al.: a unit is active when Cov_x(E_q[z_u | x]) > 0.01
_NOISE_STREAM = 4  # spawn key of the IWAE noise, apart from the streams of vae_core.train.schedule (0-3)
# A batch's noise is drawn at most this many floats at a time (16 MiB of float32; at least one chunk of samples per
# image), so its memory is bounded for any k; below it a batch's k samples come in one block, as they always did
NOISE_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class IWAEResult:
    """The IWAE estimate over a set of images. NLL = −log p(x): lower is better."""

    nll: float  # mean over images of −log p̂(x), nats
    log_likelihood: float  # mean over images of log p̂(x) = −nll
    stderr: float  # standard error of that mean over images: std(log p̂(x), ddof=1) / sqrt(n); nan for n = 1
    k: int  # importance samples per image
    n: int  # images
    log_px: np.ndarray = field(repr=False, compare=False)  # (n,) float64: log p̂(x) per image


@dataclass(frozen=True)
class ActiveUnits:
    """Latent units in use (Burda et al. 2015): those whose posterior mean varies over the data."""

    count: int  # units with variance > threshold
    variances: np.ndarray = field(compare=False)  # (L,) float64: Var_x(E_q[z_u | x]) per unit, over the images
    threshold: float = ACTIVE_THRESHOLD


# ---------------------------------------------------------------- checks


def check_iwae_args(k: Any, chunk_size: Any, batch_size: Any, seed: Any, progress: Any,
                    owner: str = "iwae_nll") -> None:
    """ValueError naming `owner`'s argument, unless k, chunk_size, batch_size >= 1, seed >= 0 and progress a bool."""
    example = SCORE_K if owner == "score" else DEFAULT_K  # the default of the function checked
    check_int(owner, "k", k, minimum=1, fix=f"Pass the number of importance samples per image, e.g. k={example}")
    check_int(owner, "chunk_size", chunk_size, minimum=1,
              fix="Pass the samples per decoder pass, e.g. chunk_size=100 (lower it if memory runs out)")
    check_int(owner, "batch_size", batch_size, minimum=1, fix="Pass the images per batch, e.g. batch_size=100")
    check_int(owner, "seed", seed, minimum=0, fix="Pass e.g. seed=0")
    check_bool(owner, "progress", progress)


def check_batch_size(owner: str, batch_size: Any) -> None:
    check_int(owner, "batch_size", batch_size, minimum=1, fix="Pass the images per batch, e.g. batch_size=1000")


def check_active_args(threshold: Any, batch_size: Any) -> None:
    check_float("active_units", "threshold", threshold, low=0.0)
    check_batch_size("active_units", batch_size)


# ---------------------------------------------------------------- reference densities (float64)


def log_standard_normal(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I), summed over the last axis: (..., L) -> (...). Per dim: −z²/2 − ½·log 2π."""
    z = np.asarray(z, dtype=np.float64)
    return (-0.5 * z**2 - HALF_LOG_2PI).sum(axis=-1)


def log_diag_normal(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z; mu, diag(exp(log_var))), summed over the last axis: (..., L) -> (...).

    Per dim: −½·(log_var + (z − mu)² · exp(−log_var)) − ½·log 2π.
    """
    z, mu, log_var = (np.asarray(a, dtype=np.float64) for a in (z, mu, log_var))
    return (-0.5 * (log_var + (z - mu) ** 2 * np.exp(-log_var)) - HALF_LOG_2PI).sum(axis=-1)


# ---------------------------------------------------------------- IWAE


def iwae_noise(seed: int, start: int, stop: int, k: int, latent_dim: int,
               pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """The eps of images start..stop−1: (stop − start, k, latent_dim) float32 standard normals.

    Image i draws from its own generator `default_rng([seed, 4, i])`, so its noise does not depend on the
    batch or chunk sizes, and both backends see the same numbers. `pool` fills the images in parallel.
    """
    return _draw(_noise_generators(seed, start, stop), k, latent_dim, pool)


def noise_block(images: int, k: int, latent_dim: int, chunk_size: int) -> int:
    """Samples per image drawn at once for a batch of `images`: all k when their noise fits NOISE_BLOCK_VALUES, else
    the most whole chunks that fit (at least one), so that a block's chunks are the chunks of k."""
    fit = NOISE_BLOCK_VALUES // max(1, images * latent_dim)
    return k if fit >= k else min(k, max(chunk_size, fit - fit % chunk_size))


def iwae_noise_blocks(seed: int, n: int, k: int, latent_dim: int, batch_size: int, chunk_size: int,
                      pool: ThreadPoolExecutor | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, eps) for each batch of images start..stop−1 of n and each block of its samples (`noise_block`),
    in order: eps (stop − start, block, latent_dim) holds each image's next samples, so a batch's blocks joined along
    axis 1 are `iwae_noise(seed, start, stop, k, latent_dim)`, never held whole."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        generators = _noise_generators(seed, start, stop)
        block = noise_block(stop - start, k, latent_dim, chunk_size)
        for s in range(0, k, block):
            yield start, stop, _draw(generators, min(block, k - s), latent_dim, pool)


def _noise_generators(seed: int, start: int, stop: int) -> list[np.random.Generator]:
    """The noise generators of images start..stop−1 (see `iwae_noise`)."""
    return [np.random.default_rng([seed, _NOISE_STREAM, i]) for i in range(start, stop)]


def _draw(generators: list[np.random.Generator], count: int, latent_dim: int,
          pool: ThreadPoolExecutor | None) -> np.ndarray:
    """The next `count` samples of each image's generator: (images, count, latent_dim) float32. A generator fills
    its values in order, so drawing k samples in blocks gives the numbers one draw of k gives."""
    out = np.empty((len(generators), count, latent_dim), dtype=np.float32)  # (B, count, L)

    def fill(j: int) -> None:
        generators[j].standard_normal(out=out[j], dtype=np.float32)

    if pool is None:
        for j in range(len(generators)):
            fill(j)
    else:
        list(pool.map(fill, range(len(generators))))
    return out


def _prefetched(items: Iterator[Any], ahead: ThreadPoolExecutor) -> Iterator[Any]:
    """`items`, each one drawn in the `ahead` thread while the caller works on the one before."""
    pending = ahead.submit(next, items, None)
    while (item := pending.result()) is not None:
        pending = ahead.submit(next, items, None)
        yield item


def summarize_iwae(log_px: np.ndarray, k: int) -> IWAEResult:
    """IWAEResult from the per-image estimates log p̂(x) (n,): mean, its negation and standard error."""
    log_px = np.asarray(log_px, dtype=np.float64)
    n = len(log_px)
    mean = float(log_px.mean())
    stderr = float(log_px.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return IWAEResult(nll=-mean, log_likelihood=mean, stderr=stderr, k=int(k), n=n, log_px=log_px)


def read_batch(x: np.ndarray | LazyRows, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of checked examples `x` as float32 (B, D): a slice of an array, or a read of rows that stay
    where they are (a `.npy` map's `MappedRows`, a dataset's `ItemRows`, a stream's `BatchStream`, read in order),
    uint8 scaled by 1/255 exactly as `check_data` scales an array."""
    if not isinstance(x, LazyRows):
        return x[start:stop]
    rows = x.take(np.arange(start, stop))  # (B, D)
    if rows.dtype == np.uint8:
        return np.ascontiguousarray(rows, np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rows, np.float32)


def run_iwae(x: np.ndarray | LazyRows, latent_dim: int, *, k: int, chunk_size: int, batch_size: int, seed: int,
             progress: bool, encode: Callable[[np.ndarray], Any],
             chunk_logsumexp: Callable[[Any, np.ndarray], np.ndarray]) -> IWAEResult:
    """The IWAE loop that both backends run, over batches of images and chunks of samples.

    x: checked (N, D) rows (`vae_core.data.rows.check_data`): an array, or `LazyRows` read a batch at a time, in
    order, so a `.npy` map or a dataset is never held whole (`read_batch`).
    encode(x_batch (B, D)) -> backend state (the batch and q(z|x) on the device), once per batch;
    chunk_logsumexp(state, eps (B, c, L)) -> (B,) float64: log Σ_{i in chunk} w_i for each image.
    Chunks are combined with a running log-sum-exp in float64, and the noise is drawn a block of chunks at a time
    (`iwae_noise_blocks`), so memory is bounded by batch_size * chunk_size decoder rows plus two blocks of noise (at
    most NOISE_BLOCK_VALUES floats each, or one chunk's) for any k. The next block of noise is drawn in background
    threads while the backend computes.
    """
    n = len(x)
    log_px = np.empty(n, dtype=np.float64)  # (N,)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as e:
            raise ImportError("iwae_nll(progress=True) needs tqdm; install it with: pip install tqdm, "
                              "or pass progress=False") from e
        bar = tqdm(total=n, desc=f"IWAE k={k}", unit="image", dynamic_ncols=True)
    workers = max(1, min(8, (os.cpu_count() or 1)))

    def finish(start: int, stop: int, acc: np.ndarray) -> None:
        log_px[start:stop] = acc - math.log(k)  # log of the mean weight
        if bar is not None:
            bar.update(stop - start)

    try:  # the bar is closed on an error too (a bad item of a dataset, read mid-way)
        with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as ahead:
            blocks = iwae_noise_blocks(seed, n, k, latent_dim, batch_size, chunk_size, pool)
            batch = None  # (start, stop, backend state) of the batch being summed
            acc = np.empty(0)  # (B,) its running log Σ w over the chunks so far
            for start, stop, eps in _prefetched(blocks, ahead):  # eps (B, block, L)
                if batch is None or batch[0] != start:
                    if batch is not None:
                        finish(batch[0], batch[1], acc)
                    batch = (start, stop, encode(read_batch(x, start, stop)))
                    acc = np.full(stop - start, -np.inf)
                for s in range(0, eps.shape[1], chunk_size):
                    acc = np.logaddexp(acc, chunk_logsumexp(batch[2], eps[:, s:s + chunk_size]))  # (B,)
            if batch is not None:
                finish(batch[0], batch[1], acc)
    finally:
        if bar is not None:
            bar.close()
    bad = ~np.isfinite(log_px)
    if bad.any():
        raise FloatingPointError(f"iwae_nll: the estimate is not finite for {int(bad.sum())} image(s) (first: "
                                 f"index {int(np.argmax(bad))}); the model's outputs overflow float32")
    return summarize_iwae(log_px, k)


# ---------------------------------------------------------------- active units


def count_active_units(mu: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> ActiveUnits:
    """Active units of posterior means mu (N, L): units whose variance over the N images exceeds `threshold`.

    Variance: population variance (ddof = 0) over the images, in float64, per latent unit (Cov_x(E_q[z|x]),
    the diagonal). Burda et al. 2015 use threshold 0.01.
    """
    if not isinstance(mu, np.ndarray) or mu.ndim != 2 or mu.shape[0] == 0:
        raise ValueError(f"count_active_units: mu must be a non-empty NumPy array of shape (N, latent_dim); got "
                         f"{type(mu).__name__} of shape {getattr(mu, 'shape', None)}")
    check_float("count_active_units", "threshold", threshold, low=0.0)
    variances = np.asarray(mu, dtype=np.float64).var(axis=0)  # (L,)
    return ActiveUnits(count=int((variances > threshold).sum()), variances=variances, threshold=float(threshold))
