"""The two problems the benchmark times: a large MNIST-sized set and two moons."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Problem:
    name: str
    X: np.ndarray
    y: np.ndarray
    hidden: list[int]
    n_classes: int
    batch: int
    epochs: int


def large_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_classification

    n, d = (2000, 64) if quick else (60000, 784)
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=min(d, 50), n_classes=10, random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    hidden = [32, 16] if quick else [256, 128]
    return Problem("large", X, y, hidden, 10, 128, 2 if quick else 3)


def small_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    return Problem("small", X, y, [16], 2, 32, 5 if quick else 100)


def median_epoch(run_epoch: Callable[[], None], epochs: int) -> float:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
