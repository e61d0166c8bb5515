"""Train/validation/test splitting: shuffled, stratified by class for classification.

Stratification is exact up to rounding: every class's count in every split is within one
sample of its proportional share, and the three split sizes are exactly
``round(val_fraction·n)``, ``round(test_fraction·n)`` and the rest. A class too small to
reach the training split is an error, not a silent fallback to an unstratified split: a
model that never sees a class in training cannot learn it, and the user should decide
(drop or merge rare classes, or lower the fractions).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nnexp.data.dataset import Dataset
from nnexp.data.errors import DatasetError, bad

if TYPE_CHECKING:
    from nnexp.nn.module import FloatArray, Targets

TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class Splits:
    """Arrays ready for training, and what the trainer trains on (`nnexp.train.Trainer`).
    ``task`` is binary, multiclass or regression. ``mean``/``scale`` are the standardization
    fitted on the training split (None when not standardized); save them with the model to
    predict on raw inputs via ``apply_standardization``. ``y_scale``: regression targets are
    trained standardized (`nnexp.build` divides them by it), and RMSE is reported in the
    original units."""

    X_train: FloatArray
    y_train: Targets
    X_val: FloatArray
    y_val: Targets
    X_test: FloatArray
    y_test: Targets
    task: str
    n_classes: int | None = None
    feature_names: list[str] = field(default_factory=list)
    classes: list[str] | None = None
    mean: FloatArray | None = None
    scale: FloatArray | None = None
    y_scale: float | FloatArray = 1.0

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def classification(self) -> bool:
        return self.task != "regression"


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise bad("val_fraction", val_fraction, "must be > 0 and < 1 (we validate every epoch)")
    if not 0 <= test_fraction < 1:
        raise bad("test_fraction", test_fraction, "must be >= 0 and < 1")
    if val_fraction + test_fraction >= 1:
        raise bad(
            "val_fraction", val_fraction,
            f"val_fraction + test_fraction (dataset.test_fraction={test_fraction!r}) must be < 1 "
            "to leave rows for training",
        )  # fmt: skip


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """``[n_train, n_val, n_test]``, all non-empty except test when its fraction is 0."""
    check_fractions(val_fraction, test_fraction)
    n_val = int(np.floor(val_fraction * n + 0.5))
    n_test = int(np.floor(test_fraction * n + 0.5))
    n_train = n - n_val - n_test
    too_small = f"of {n} rows leaves an empty split; use a larger dataset or fraction"
    if n_val == 0:
        raise bad("val_fraction", val_fraction, too_small)
    if n_test == 0 and test_fraction > 0:
        raise bad("test_fraction", test_fraction, f"{too_small} (or test_fraction=0)")
    if n_train <= 0:
        raise bad("val_fraction", val_fraction, f"with test_fraction={test_fraction!r} {too_small}")
    return np.array([n_train, n_val, n_test], dtype=np.int64)


def allocate(counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``(C, 3)`` integer table: row c sums to ``counts[c]``, column s to ``sizes[s]``, and each
    entry is the floor or ceiling of its share ``counts[c]·sizes[s]/n`` (controlled rounding).

    Start from the floors. Each class then has 0-2 rows left over and each split a deficit; hand
    them out one at a time, only to entries with a fractional share (so they become ceilings),
    moving earlier choices along an augmenting path when needed. Such a rounding always exists
    (Bacharach 1966), so every search succeeds. Deterministic: nothing here is random.
    """
    n = int(counts.sum())
    table, remainder = np.divmod(np.outer(counts, sizes), n)
    allowed = remainder > 0
    ceiled = np.zeros(table.shape, dtype=bool)
    deficit = sizes - table.sum(axis=0)
    for c in range(len(counts)):
        for _ in range(int(counts[c] - table[c].sum())):
            _augment(c, allowed, ceiled, deficit)
    return table + ceiled


def _augment(row: int, allowed: np.ndarray, ceiled: np.ndarray, deficit: np.ndarray) -> None:
    """Give ``row`` one more ceiling: breadth-first search for a path row → split → row → ...
    → split with a deficit, alternating unused and used allowed entries, then flip it."""
    n_rows = len(allowed)
    parent: dict[int, int | None] = {row: None}  # nodes: rows 0..C-1, split s is C+s
    queue = deque([row])
    while queue:
        node = queue.popleft()
        if node < n_rows:  # a row: try splits where it can still take a ceiling
            steps = np.flatnonzero(allowed[node] & ~ceiled[node]) + n_rows
        else:  # a split: the rows that hold one of its ceilings could move it elsewhere
            steps = np.flatnonzero(ceiled[:, node - n_rows])
        for nxt in map(int, steps):
            if nxt in parent:
                continue
            parent[nxt] = node
            if nxt >= n_rows and deficit[nxt - n_rows] > 0:
                deficit[nxt - n_rows] -= 1
                split: int | None = nxt
                while split is not None:  # flip: split←row edges gain, row←split edges lose
                    r = parent[split]
                    assert r is not None  # a split is always reached from a row
                    ceiled[r, split - n_rows] = True
                    split = parent[r]
                    if split is not None:
                        ceiled[r, split - n_rows] = False
                return
            queue.append(nxt)
    raise AssertionError("stratified allocation found no augmenting path")  # see docstring


def split_indices(
    y: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    n: int | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled ``(train, val, test)`` row indices, stratified by the int labels ``y`` (pass
    ``y=None`` and ``n`` for regression: one stratum). ``classes`` names labels in errors."""
    if y is not None:
        groups = np.asarray(y)
    elif n is not None:
        groups = np.zeros(n, dtype=np.int64)
    else:
        raise ValueError("split_indices: pass the row count n when y is None")
    n = len(groups)
    sizes = split_sizes(n, val_fraction, test_fraction)
    present, groups = np.unique(groups, return_inverse=True)
    counts = np.bincount(groups)
    if y is not None:
        names = [classes[k] if classes else str(k) for k in present]
        _check_strata(names, counts, sizes, val_fraction, test_fraction)
    table = allocate(counts, sizes)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    # rows grouped by class, random order within each class: take each class's block in turn
    by_class = perm[np.argsort(groups[perm], kind="stable")]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(n, dtype=np.int64)
    position[by_class] = np.arange(n) - np.repeat(start, counts)
    bounds = np.cumsum(table, axis=1)[groups]  # per row: end of its class's train, val, test
    which = (position[:, None] >= bounds).sum(axis=1)  # 0 train, 1 val, 2 test
    # keep the random permutation's order so classes are interleaved inside each split
    ordered = which[perm]
    return perm[ordered == TRAIN], perm[ordered == VAL], perm[ordered == TEST]


def _check_strata(
    classes: list[str], counts: np.ndarray, sizes: np.ndarray, val: float, test: float
) -> None:
    n, n_train = int(sizes.sum()), int(sizes[TRAIN])
    need = -(-n // n_train)  # ceil(n / n_train): the smallest class that gets a training row
    small = np.flatnonzero(counts < need)
    if small.size:
        c = small[0]
        raise DatasetError(
            f"dataset: class {classes[c]!r} has {counts[c]} row(s), too few to stratify with "
            f"dataset.val_fraction={val!r} and dataset.test_fraction={test!r}: each class needs "
            f"at least {need} so it reaches the training split ({small.size} class(es) too "
            "small); drop or merge rare classes, or lower the fractions"
        )


def make_splits(ds: Dataset, X: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, ...]) -> Splits:
    """Gather rows of ``X``/``y`` (which may be cast copies of ``ds``'s) into a Splits."""
    xs = [np.take(X, idx, axis=0) for idx in parts]
    ys = [np.take(y, idx, axis=0) for idx in parts]
    return Splits(
        X_train=xs[0], y_train=ys[0], X_val=xs[1], y_val=ys[1],
        X_test=xs[2], y_test=ys[2], task=ds.task, n_classes=ds.n_classes,
        feature_names=list(ds.feature_names),
        classes=None if ds.classes is None else list(ds.classes),
    )  # fmt: skip
