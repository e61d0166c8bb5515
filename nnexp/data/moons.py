"""Two interleaving half circles, in NumPy alone.

The same points as ``sklearn.datasets.make_moons(n, shuffle=True, noise=noise,
random_state=seed)``, draw for draw (tests compare them bit for bit). It exists because the
default run trains on two moons and importing ``sklearn.datasets`` alone takes over a second,
a fifth of that run's budget.
"""

from __future__ import annotations

import numpy as np


def make_moons(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.vstack(
        [
            np.append(np.cos(t_out), 1 - np.cos(t_in)),
            np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5),
        ]
    ).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    # scikit-learn's sequence: one legacy RandomState shuffles an index, then draws the noise.
    rng = np.random.RandomState(seed)
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    X += rng.normal(scale=noise, size=X.shape)
    return X, y
