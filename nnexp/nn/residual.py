"""Skip (residual) connections: a block computes y = f(x) + x instead of y = f(x).

The gradient then reaches x through two paths, through f and straight through the sum, so a
deep stack no longer multiplies it by every block's derivative: the identity path carries it
down undamped. That is the cure for vanishing gradients in deep sigmoid or ReLU stacks (with
batch normalization, the other one). When f changes the width (the first hidden block maps the
inputs to the hidden width), x cannot be added as it is: a learned projection x·P (a weight
matrix without bias, initialized like the block's Dense layer) takes its place:
y = f(x) + x·P.

Two modules mark a block in the flat `Sequential`: `Skip` where it starts (it keeps the block's
input) and `Residual` where it ends (it adds the kept input, or its projection). The network
stays a flat list of modules — every layer keeps its name (``skip_0``, ``dense_0``, ``relu_0``,
``residual_0``), its statistics and its checkpoint keys — and the backward pass meets
`Residual` first: it sends dL/dy down the block unchanged and hands the shortcut's share to its
`Skip`, which adds it to what comes out of the block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike

from nnexp.nn.init import initialize
from nnexp.nn.module import FloatArray, Module, Parameter
from nnexp.nn.workspace import Workspace


class Skip(Module):
    """The start of a residual block: passes its input on and keeps it for the shortcut."""

    kind = "skip"

    def __init__(self) -> None:
        super().__init__()
        self.x: FloatArray | None = None  # the block's input (a reference, never written)
        self.shortcut_grad: FloatArray | None = None  # dL/dx through the shortcut

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        self.x = x
        return x

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray | None:
        """dL/dx: what came down the block plus what came along the shortcut."""
        if not need_dx:
            return None
        assert self.shortcut_grad is not None, f"{self.name}: its Residual's backward comes first"
        return dy + self.shortcut_grad


class Residual(Module):
    """The end of a residual block: adds the block's input (kept by `skip`) to its output,
    through a projection ``P`` of shape (in, out) when the widths differ."""

    kind = "residual"

    def __init__(
        self,
        skip: Skip,
        in_features: int,
        out_features: int,
        *,
        init: str = "he_normal",
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
        init_kwargs: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.skip = skip
        self.P: Parameter | None = None
        if in_features != out_features:
            rng = rng if rng is not None else np.random.default_rng(0)
            shape = (in_features, out_features)
            value = initialize(init, shape, rng, dtype, **(init_kwargs or {}))
            self.P = Parameter("W", value, decay=True)  # a weight matrix: L2 and statistics
        self._out: Workspace[np.floating] = Workspace()

    def _input(self) -> FloatArray:
        x = self.skip.x
        assert x is not None, f"{self.name}: the block's Skip has seen no input"
        return x

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        shortcut = self._input()
        if self.P is not None:
            shortcut = shortcut @ self.P.value
        if not training:
            fresh: FloatArray = x + shortcut
            return fresh
        # A buffer of its own: x is the block's last output, which that layer's backward needs.
        y = self._out.get(x.shape, x.dtype)
        np.add(x, shortcut, out=y)
        return y

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray:
        """Hands the shortcut's dL/dx to the Skip — dL/dy·Pᵀ, or a copy of dL/dy (the block's
        layers may overwrite the gradient they receive) — and returns dL/dy for the block."""
        if self.P is None:
            self.skip.shortcut_grad = dy.copy()
        else:
            np.matmul(self._input().T, dy, out=self.P.grad)
            self.skip.shortcut_grad = dy @ self.P.value.T
        return dy

    def parameters(self) -> Iterator[Parameter]:
        if self.P is not None:
            yield self.P
