"""The history `fit` returns, and the error that ends a run whose loss is not finite."""
from __future__ import annotations

# Per-epoch lists in the history dict that both backends' `fit` return, in this order.
HISTORY_KEYS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr", "seconds")

TRAIN_KEYS, VAL_KEYS = HISTORY_KEYS[:3], HISTORY_KEYS[3:6]  # the per-epoch means of each pass


def empty_history() -> dict[str, list[float]]:
    return {k: [] for k in HISTORY_KEYS}


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or inf loss; the last good checkpoint (if any) is left untouched."""

    def __init__(self, epoch: int, step: int, checkpoint: str | None = None, phase: str = "training"):
        self.epoch, self.step, self.checkpoint, self.phase = epoch, step, checkpoint, phase
        where = f"the last good checkpoint is {checkpoint!r}" if checkpoint else "no checkpoint was written"
        what = (f"non-finite loss at epoch {epoch}, step {step} (1-based)" if phase == "training" else
                f"non-finite {phase} loss after epoch {epoch} (its {step} steps had finite losses)")
        super().__init__(f"{what}; training stopped and {where}. "
                         f"Lower TrainConfig.learning_rate or set TrainConfig.grad_clip_norm")
