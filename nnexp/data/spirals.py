"""Interleaved spirals (the cs231n toy set): one arm per class, not linearly separable.

Points of class k sit at radius r in [0, 1] and angle 2π·(turns·r + k/C) plus Gaussian angle
noise, so arms are evenly spaced and every class winds the same way.
"""

from __future__ import annotations

import numpy as np

from nnexp.data.dataset import Dataset, classification, feature_names
from nnexp.data.specs import SpiralsSpec


def make_spirals(
    n_samples: int, n_classes: int, noise: float, turns: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, 2) float64, y (n,) int64)``; classes differ in size by at most one point."""
    rng = np.random.default_rng(seed)
    sizes = np.full(n_classes, n_samples // n_classes)
    sizes[: n_samples % n_classes] += 1
    y = np.repeat(np.arange(n_classes, dtype=np.int64), sizes)
    # radius runs 0..1 within each class; np.linspace per class keeps both ends in every arm
    r = np.concatenate([np.linspace(0.0, 1.0, s) for s in sizes])
    angle = 2 * np.pi * (turns * r + y / n_classes) + noise * rng.standard_normal(n_samples)
    X = np.column_stack([r * np.sin(angle), r * np.cos(angle)])
    return X, y


def load_spirals(spec: SpiralsSpec) -> Dataset:
    X, y = make_spirals(spec.n_samples, spec.n_classes, spec.noise, spec.turns, spec.seed)
    return classification(
        spec.name, X, y, feature_names(2), [str(k) for k in range(spec.n_classes)]
    )
