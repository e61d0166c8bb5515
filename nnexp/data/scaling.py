"""Standardization: fitted on the training split only, applied to every split (and, by the
runner, to raw inputs at prediction time) so validation and test stay honest. And its opposite,
`scale_column`: one feature blown up on purpose, to show what skipping standardization does."""

from __future__ import annotations

import numpy as np

from nnexp.data.errors import bad


def fit_standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(mean, scale)`` in ``X``'s dtype; accumulated in float64 for accuracy.

    A constant feature gets scale 1 (it is centred to 0, never divided by zero).
    """
    mean = X.mean(axis=0, dtype=np.float64)
    centred = X - mean.astype(X.dtype)  # a temporary in X's dtype, not a float64 copy
    scale = np.sqrt(np.mean(np.square(centred, out=centred), axis=0, dtype=np.float64))
    eps = np.finfo(X.dtype).eps
    constant = (np.ptp(X, axis=0) == 0) | (scale <= 10 * eps * np.abs(mean))
    scale[constant] = 1.0
    return mean.astype(X.dtype), scale.astype(X.dtype)


def apply_standardization(
    X: np.ndarray, mean: np.ndarray, scale: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``(X - mean) / scale`` without upcasting (``out=X`` works in place)."""
    out = np.subtract(X, mean.astype(X.dtype, copy=False), out=out)
    out /= scale.astype(X.dtype, copy=False)
    return out


def scale_column(X: np.ndarray, index: int, factor: float) -> np.ndarray:
    """A copy of ``X`` with column ``index`` multiplied by ``factor`` (``dataset.scale_feature``
    and ``dataset.feature_scale``); the caller's array is left alone."""
    if not 0 <= index < X.shape[1]:
        raise bad("scale_feature", index, f"must be a feature index in [0, {X.shape[1] - 1}]")
    X = X.copy()
    X[:, index] *= factor
    return X
