"""The in-memory dataset every loader returns: features, targets and what the task is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnexp.data.errors import DatasetError

TASKS = ("binary", "multiclass", "regression")


@dataclass
class Dataset:
    """Raw (unsplit, unscaled) data.

    ``X`` is ``(n, d)`` float64. For classification ``y`` is int64 labels ``0..C-1`` and
    ``classes[k]`` is the original name of label ``k``; for regression ``y`` is float64 ``(n,)``
    or ``(n, k)`` and ``classes`` is None.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: list[str]
    classes: list[str] | None

    def __post_init__(self) -> None:
        # Loaders are ours, but a runner may build a Dataset by hand: fail here, not mid-training.
        if self.task not in TASKS:
            raise DatasetError(f"dataset {self.name!r}: task {self.task!r} is not one of {TASKS}")
        if self.X.ndim != 2 or self.X.shape[0] != self.y.shape[0]:
            raise DatasetError(
                f"dataset {self.name!r}: X must be 2-D with one row per target; "
                f"got X {self.X.shape}, y {self.y.shape}"
            )
        if len(self.feature_names) != self.X.shape[1]:
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.feature_names)} feature names "
                f"for {self.X.shape[1]} features"
            )
        if self.is_classification and (self.classes is None or self.y.ndim != 1):
            raise DatasetError(f"dataset {self.name!r}: classification needs 1-D y and classes")

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None


def task_for(n_classes: int) -> str:
    """Two classes are a binary task (one sigmoid output); more are multiclass (softmax)."""
    return "binary" if n_classes == 2 else "multiclass"


def feature_names(n: int) -> list[str]:
    return [f"x{i}" for i in range(n)]


def label_name(value: object) -> str:
    """Original label as a string: 3.0 -> '3', np.str_('cat') -> 'cat'."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def label_value(name: str) -> int | str:
    """A class name as the label the user gave: the inverse of `label_name` for integer labels
    ('3' -> 3; numeric labels are integers, see `nnexp.data.files`), text stays text."""
    try:
        number = int(name)
    except ValueError:
        return name
    return number if str(number) == name else name


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map labels (ints, integer-valued floats, strings) to int64 codes 0..C-1, keeping their
    sorted original values as class names: {3, 7} becomes {0, 1} with classes ['3', '7']."""
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), [label_name(v) for v in uniques]


def classification(
    name: str, X: np.ndarray, y: np.ndarray, names: list[str], classes: list[str]
) -> Dataset:
    """A classification Dataset whose labels are already 0..len(classes)-1."""
    return Dataset(
        name, np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64),
        task_for(len(classes)), names, classes,
    )  # fmt: skip


def regression(name: str, X: np.ndarray, y: np.ndarray, names: list[str]) -> Dataset:
    return Dataset(
        name, np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64),
        "regression", names, None,
    )  # fmt: skip
