"""Layers with parameters or randomness: Dense, Dropout, BatchNorm1d."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike

from nnexp.nn.init import initialize
from nnexp.nn.module import FloatArray, Module, Parameter
from nnexp.nn.workspace import Workspace


class Dense(Module):
    """y = x W + b, with W of shape (in, out)."""

    kind = "dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he_normal",
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
        init_kwargs: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        shape = (in_features, out_features)
        self.W = Parameter("W", initialize(init, shape, rng, dtype, **(init_kwargs or {})), True)
        self.b = Parameter("b", np.zeros(out_features, dtype=dtype))
        self._x: FloatArray | None = None
        self._out: Workspace[np.floating] = Workspace()
        self._dx: Workspace[np.floating] = Workspace()

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        W = self.W.value
        if not training:
            return x @ W + self.b.value
        self._x = x
        y = np.matmul(x, W, out=self._out.get((x.shape[0], W.shape[1]), W.dtype))
        y += self.b.value
        return y

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray | None:
        x = self._x
        assert x is not None, f"{self.name}: backward before a training forward"
        np.matmul(x.T, dy, out=self.W.grad)
        np.add.reduce(dy, axis=0, out=self.b.grad)
        if not need_dx:
            return None
        return np.matmul(dy, self.W.value.T, out=self._dx.get(x.shape, dy.dtype))

    def parameters(self) -> Iterator[Parameter]:
        yield self.W
        yield self.b


class Dropout(Module):
    """Inverted dropout: keeps each unit with probability 1-p and scales it by 1/(1-p) in
    training, so inference is the identity and needs no rescaling."""

    kind = "dropout"

    def __init__(self, p: float, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.frozen = False  # reuse the last mask (for gradient checks)
        self._mask: FloatArray | None = None

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if not (self.frozen and self._mask is not None and self._mask.shape == x.shape):
            keep = self.rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(self.p)
            self._mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray:
        return dy if self._mask is None else dy * self._mask


class BatchNorm1d(Module):
    """Normalizes each feature with the batch's mean/variance in training and with running
    averages at inference, then scales by gamma and shifts by beta (both learned)."""

    kind = "batchnorm"

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.1,
        eps: float = 1e-5,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.gamma = Parameter("gamma", np.ones(num_features, dtype=dtype))
        self.beta = Parameter("beta", np.zeros(num_features, dtype=dtype))
        self.running_mean: FloatArray = np.zeros(num_features, dtype=dtype)
        self.running_var: FloatArray = np.ones(num_features, dtype=dtype)
        scalar = self.gamma.value.dtype.type  # hyperparameters in the parameters' dtype
        self.momentum = scalar(momentum)
        self.eps = scalar(eps)

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        if not training:
            scale = self.gamma.value / np.sqrt(self.running_var + self.eps)
            return (x - self.running_mean) * scale + self.beta.value
        n = x.shape[0]
        if n < 2:
            raise ValueError("BatchNorm1d needs at least 2 samples per training batch")
        mean: FloatArray = x.mean(axis=0)
        xhat = x - mean
        var: FloatArray = np.mean(xhat * xhat, axis=0)
        self._inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= self._inv_std
        self._xhat = xhat
        m = self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += (m * n / (n - 1)) * var  # unbiased, as PyTorch keeps it
        return xhat * self.gamma.value + self.beta.value

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray | None:
        xhat = self._xhat
        np.sum(dy * xhat, axis=0, out=self.gamma.grad)
        np.sum(dy, axis=0, out=self.beta.grad)
        if not need_dx:
            return None
        n = dy.shape[0]
        # dx = (gamma / sigma) * (dy - mean(dy) - xhat * mean(dy * xhat))
        dx: FloatArray = dy - self.beta.grad / n
        dx -= xhat * (self.gamma.grad / n)
        dx *= self.gamma.value * self._inv_std
        return dx

    def parameters(self) -> Iterator[Parameter]:
        yield self.gamma
        yield self.beta

    def buffers(self) -> dict[str, FloatArray]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}
