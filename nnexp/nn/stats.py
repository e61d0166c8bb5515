"""Training statistics that make failures visible: gradient norms, update-to-weight ratios,
activation statistics, and an accumulator that summarizes them per epoch (mean and max).

Each is a handful of reductions over arrays the step already has; the trainer decides how
often to compute them, so they cost nothing when off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnexp.nn.activations import Activation
from nnexp.nn.gradients import global_norm, grad_norms, norm
from nnexp.nn.module import Parameter


def gradient_stats(params: Sequence[Parameter], norms: Sequence[float] | None = None) -> dict:
    """``grad_norm/<layer>/<param>`` for each parameter and ``grad_norm/global``."""
    norms = grad_norms(params) if norms is None else norms
    out = {f"grad_norm/{p.name}": n for p, n in zip(params, norms, strict=True)}
    out["grad_norm/global"] = global_norm(norms)
    return out


def update_ratios(params: Sequence[Parameter], norms: Sequence[float], lr: float) -> dict:
    """``update_ratio/<layer>`` = lr * ||grad W|| / ||W|| for each weight matrix: the relative
    size of an SGD step (around 1e-3 is healthy; 1e-6 is stuck; 1e-1 and up is exploding)."""
    out = {}
    for p, n in zip(params, norms, strict=True):
        if p.decay:  # weight matrices
            layer = p.name.rsplit("/", 1)[0]
            out[f"update_ratio/{layer}"] = lr * n / (norm(p.value) + 1e-12)
    return out


def activation_stats(layer: Activation) -> dict:
    """``act/<layer>/mean``, ``/std``, ``/dead_frac`` (units never positive in the batch, ReLU
    family), ``/sat_frac`` (outputs where the derivative is nearly zero, sigmoid/tanh)."""
    y = layer.output
    if y is None:
        return {}
    prefix = f"act/{layer.name}"
    out = {f"{prefix}/mean": float(y.mean()), f"{prefix}/std": float(y.std())}
    if layer.dies:
        out[f"{prefix}/dead_frac"] = float(np.mean(~(y > 0).any(axis=0)))
    if layer.saturation is not None:
        lo, hi = layer.saturation
        out[f"{prefix}/sat_frac"] = float(np.mean((y < lo) | (y > hi)))
    return out


class StatsAccumulator:
    """Collects per-step values and summarizes each key as ``<key>/mean`` and ``<key>/max``."""

    def __init__(self) -> None:
        self._sum: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            if k in self._sum:
                self._sum[k] += v
                self._count[k] += 1
                if v > self._max[k] or v != v:  # keep NaN visible
                    self._max[k] = v
            else:
                self._sum[k], self._max[k], self._count[k] = v, v, 1

    def summary(self) -> dict[str, float]:
        out = {}
        for k, total in self._sum.items():
            out[f"{k}/mean"] = total / self._count[k]
            out[f"{k}/max"] = self._max[k]
        return out

    def means(self) -> dict[str, float]:
        """Per-key means under the keys' own names (for ratios and activation statistics)."""
        return {k: total / self._count[k] for k, total in self._sum.items()}

    def reset(self) -> None:
        self._sum.clear()
        self._max.clear()
        self._count.clear()
