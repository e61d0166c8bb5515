"""What to say when training produces NaN or Inf: where it appeared and what usually fixes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnexp.nn import Parameter


class NonFiniteError(FloatingPointError):
    """Training produced NaN/Inf. A FloatingPointError, so trackers can tag the run diverged."""


def first_nonfinite(params: Sequence[Parameter]) -> str | None:
    """Name the first parameter (in forward order) whose gradient or value is not finite."""
    for p in params:
        for what, array in (("gradient", p.grad), ("weights", p.value)):
            if not np.isfinite(array).all():
                return f"{what} of {p.name}"
    return None


def diagnose(what: str, params: Sequence[Parameter], *, epoch: int, step: int, lr: float) -> str:
    where = first_nonfinite(params)
    location = f"; first non-finite: {where}" if where else ""
    return (
        f"training diverged at epoch {epoch}, step {step}: {what}{location} (lr={lr:g}). "
        "Try a lower learning rate (optimizer.lr), gradient clipping "
        "(trainer.grad_clip.norm=1.0), or standardized inputs (dataset.standardize=true)."
    )
