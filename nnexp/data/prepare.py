"""spec → ready-to-train arrays: validate, load, split, standardize, cast."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnexp.data.errors import DatasetError
from nnexp.data.registry import load_dataset
from nnexp.data.scaling import apply_standardization, fit_standardization
from nnexp.data.specs import MIN_SAMPLES
from nnexp.data.split import Splits, make_splits, split_indices


def prepare(spec: Any, dtype: Any = np.float32) -> Splits:
    """Load ``spec`` and return its splits: X in ``dtype`` (standardized with training-split
    statistics when ``spec.standardize``), y int64 for classification or ``dtype`` for
    regression. Every array is C-contiguous; with float32 no float64 array is kept."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise DatasetError(f"dtype={dtype}: must be a floating type (float32 or float64)")
    ds = load_dataset(spec)
    if len(ds.y) < MIN_SAMPLES:  # (a generator's n_samples has the same bound: specs)
        where = f"dataset.path={spec.path!r}" if getattr(spec, "path", "") else "dataset"
        raise DatasetError(
            f"{where}: {len(ds.y)} rows, too few to split into training, validation and test "
            f"sets: at least {MIN_SAMPLES} are needed"
        )
    labels = ds.y if ds.is_classification else None
    parts = split_indices(
        labels, spec.val_fraction, spec.test_fraction, spec.seed, n=len(ds.y), classes=ds.classes
    )
    # cast once, then gather: indexing the float64 original would make float64 copies first
    with np.errstate(over="ignore"):  # overflow is reported below, as a DatasetError
        X = ds.X.astype(dtype, copy=False)
        y = ds.y if ds.is_classification else ds.y.astype(dtype, copy=False)
    _require_finite(X, y, dtype)
    splits = make_splits(ds, X, y, parts)
    if spec.standardize:
        splits.mean, splits.scale = fit_standardization(splits.X_train)
        for X_part in (splits.X_train, splits.X_val, splits.X_test):
            apply_standardization(X_part, splits.mean, splits.scale, out=X_part)
    return splits


def _require_finite(X: np.ndarray, y: np.ndarray, dtype: np.dtype) -> None:
    # loaders guarantee finite float64 data; only a narrower dtype can overflow here
    for what, array in (("features", X), ("targets", y)):
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DatasetError(
                f"dtype={dtype}: the {what} overflow it (largest magnitude "
                f"{np.nanmax(np.abs(array)):.3g}); use float64 or rescale the data"
            )
