"""Finite-difference gradient checking: the test that backprop is the derivative of forward.

Fourth-order central differences in float64,
    n = (f(w - 2h) - 8 f(w - h) + 8 f(w + h) - f(w + 2h)) / (12 h),
for every element of every parameter (and of the input), compared with the analytic gradient a
by the relative error |a - n| / max(|a|, |n|, floor). The plain two-point difference has a
truncation error ~h^2 f''' that reached 2e-9 on deep BatchNorm nets (their curvature is large),
too much for a 1e-6 bound on small gradients; this stencil's ~h^4 error vanishes, leaving the
rounding noise (~1e-16 |f| / h, about 4e-12 at h = 3e-5). The floor keeps elements whose true
gradient is 0 (e.g. a bias feeding BatchNorm, which subtracts it right away) from reporting that
noise as error: below the floor it is the absolute error that is judged (1e-6 * 1e-4 = 1e-10).
"""

from __future__ import annotations

import numpy as np

from nnexp.nn.gradients import add_l2_grad, l2_penalty
from nnexp.nn.losses import Loss
from nnexp.nn.module import FloatArray, Module, Targets


def _objective(model: Module, loss: Loss, x: FloatArray, y: Targets, l2: float) -> float:
    value = loss.value(model.forward(x, training=True), y)
    return value + l2_penalty(list(model.parameters()), l2) if l2 else value


def _relative_error(a: FloatArray, n: FloatArray, floor: float) -> float:
    scale = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    return float(np.max(np.abs(a - n) / scale)) if a.size else 0.0


def gradcheck(
    model: Module,
    loss: Loss,
    x: FloatArray,
    y: Targets,
    *,
    l2: float = 0.0,
    h: float = 3e-5,
    floor: float = 1e-4,
) -> dict[str, float]:
    """Max relative error per parameter name, plus ``"input"`` for dL/dx.

    The model must be float64 and deterministic across calls in training mode (freeze dropout
    masks first). BatchNorm runs on batch statistics, as in training.
    """
    params = list(model.parameters())
    if x.dtype != np.float64 or any(p.value.dtype != np.float64 for p in params):
        raise TypeError("gradcheck needs float64 inputs and parameters")
    x = x.copy()

    _, dlogits = loss.value_and_grad(model.forward(x, training=True), y)
    dx = model.backward(dlogits)
    assert dx is not None  # need_dx is on: backward returns dL/dx
    dx = dx.copy()
    if l2:
        add_l2_grad(params, l2)
    analytic = {p.name: p.grad.copy() for p in params}

    def numeric(array: FloatArray) -> FloatArray:
        out = np.empty_like(array)
        flat, grad = array.reshape(-1), out.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            f = []
            for step in (-2 * h, -h, h, 2 * h):
                flat[i] = orig + step
                f.append(_objective(model, loss, x, y, l2))
            flat[i] = orig
            grad[i] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
        return out

    errors = {p.name: _relative_error(analytic[p.name], numeric(p.value), floor) for p in params}
    errors["input"] = _relative_error(dx, numeric(x), floor)
    return errors
