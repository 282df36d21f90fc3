"""Evaluation: the importance-weighted log-likelihood (IWAE), per-example scores and active units, for a model of any
backend."""
from vae_core.metrics.api import active_units, iwae_nll, posterior_means, score
from vae_core.metrics.estimators import (ACTIVE_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_K,
                                         SCORE_K, ActiveUnits, IWAEResult, count_active_units, iwae_noise,
                                         log_diag_normal, log_standard_normal, run_iwae, summarize_iwae)

__all__ = ["ACTIVE_THRESHOLD", "DEFAULT_BATCH_SIZE", "DEFAULT_CHUNK_SIZE", "DEFAULT_K", "SCORE_K", "ActiveUnits",
           "IWAEResult", "active_units", "count_active_units", "iwae_nll", "iwae_noise", "log_diag_normal",
           "log_standard_normal", "posterior_means", "run_iwae", "score", "summarize_iwae"]
