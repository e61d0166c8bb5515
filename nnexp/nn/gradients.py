"""Operations on the gradients of a parameter list, between backward and the optimizer step:
the explicit L2 penalty, clipping, norms."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnexp.nn.module import FloatArray, Parameter


def norm(a: FloatArray) -> float:
    """L2 norm of a contiguous array via one BLAS dot (no temporary)."""
    return math.sqrt(float(np.vdot(a, a)))


def grad_norms(params: Sequence[Parameter]) -> list[float]:
    return [norm(p.grad) for p in params]


def param_norms(params: Sequence[Parameter]) -> list[float]:
    """The norms of the parameters' values."""
    return [norm(p.value) for p in params]


def global_norm(norms: Sequence[float]) -> float:
    return math.sqrt(sum(n * n for n in norms))


def l2_penalty(params: Sequence[Parameter], lam: float) -> float:
    """0.5 * lam * sum ||W||^2 over decaying parameters (weights, not biases)."""
    return 0.5 * lam * sum(float(np.vdot(p.value, p.value)) for p in params if p.decay)


def add_l2_grad(params: Sequence[Parameter], lam: float) -> None:
    """Add d/dW of `l2_penalty`, lam * W, to the gradients (before clipping and the step)."""
    for p in params:
        if p.decay:
            p.grad += p.grad.dtype.type(lam) * p.value


def clip_by_global_norm(
    params: Sequence[Parameter], max_norm: float, norms: Sequence[float] | None = None
) -> float:
    """Scale all gradients together so their global norm is at most `max_norm`.
    Returns the norm before clipping. Pass `norms` if they were already computed."""
    total = global_norm(norms if norms is not None else grad_norms(params))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for p in params:
            p.grad *= p.grad.dtype.type(scale)
    return total


def clip_by_value(params: Sequence[Parameter], limit: float) -> None:
    for p in params:
        np.clip(p.grad, -limit, limit, out=p.grad)
