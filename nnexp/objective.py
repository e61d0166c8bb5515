"""Which way is better: the direction of each metric, stated once.

A metric's name ends in what it measures (``val/loss``, ``train/acc``, ``val/rmse``); this table
says whether that is minimized or maximized. Every consumer of an objective — early stopping,
``best.npz``, the plateau schedule, the sweep's best run, Optuna's direction, the reports —
asks `Objective`, never the metric's name. A leaf module: it imports nothing of nnexp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# What a metric measures (the last part of its key) → the direction that is better.
DIRECTIONS: dict[str, str] = {"loss": "min", "rmse": "min", "acc": "max"}
MODES = ("auto", "min", "max")
OPTUNA_DIRECTIONS = {"min": "minimize", "max": "maximize"}
# What a failed sweep job returns to the sweeper (NaN is rejected by sweepers): finite, and
# worse than any real value in the objective's direction, so it is never the best trial.
FAILED_VALUE = 1e9


def direction_of(key: str, mode: str = "auto") -> str:
    """``min`` or ``max`` for metric `key`: `mode` itself unless it is ``auto``, then the table.
    Raises ValueError for an unknown `mode`, or for ``auto`` on a metric the table lacks."""
    if mode not in MODES:
        raise ValueError(f"objective mode {mode!r}: allowed: {', '.join(MODES)}")
    if mode != "auto":
        return mode
    measure = key.rsplit("/", 1)[-1]
    if measure not in DIRECTIONS:
        known = ", ".join(f"{m} ({d})" for m, d in DIRECTIONS.items())
        raise ValueError(
            f"no known direction for {measure!r} (known: {known}); "
            "set trainer.objective_mode=min or max"
        )
    return DIRECTIONS[measure]


@dataclass(frozen=True)
class Objective:
    """A metric and the direction in which it improves."""

    key: str = "val/loss"
    direction: str = "min"

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ValueError(f"objective direction {self.direction!r}: allowed: min, max")

    @classmethod
    def of(cls, key: str, mode: str = "auto") -> Objective:
        return cls(key, direction_of(key, mode))

    @property
    def worst(self) -> float:
        """The start value of a running best: every finite value improves on it."""
        return math.inf if self.direction == "min" else -math.inf

    @property
    def failed_value(self) -> float:
        """What a failed job reports: finite, never the best."""
        return FAILED_VALUE if self.direction == "min" else -FAILED_VALUE

    @property
    def optuna_direction(self) -> str:
        return OPTUNA_DIRECTIONS[self.direction]

    def improves(self, value: float, best: float, min_delta: float = 0.0) -> bool:
        """True if `value` beats `best` by more than `min_delta` (NaN never does)."""
        if self.direction == "min":
            return value < best - min_delta
        return value > best + min_delta

    def best_of(self, values):
        """The best of `values` (an iterable of numbers); ValueError if empty."""
        return min(values) if self.direction == "min" else max(values)

    def sort_key(self, value: float) -> float:
        """Sorting by this puts the best first."""
        return value if self.direction == "min" else -value

    def describe(self) -> str:
        return f"{self.key} ({'lower' if self.direction == 'min' else 'higher'} is better)"


VAL_LOSS = Objective("val/loss", "min")  # the default objective
