"""The module contract: forward, backward, parameters — and Sequential to compose them.

A `Module` maps a batch `x` of shape (N, features) to `y`. `backward(dy)` receives dL/dy, *writes*
the gradients of its parameters (overwriting, never accumulating) and returns dL/dx.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

# What flows through the network: float32 or float64 arrays (`dtype` is a setting), and the
# targets a loss compares them with: integer class labels, or floats (one-hot, 0/1, values).
FloatArray: TypeAlias = NDArray[np.floating]
Targets: TypeAlias = NDArray[np.integer | np.floating]


class Parameter:
    """A trainable array with its gradient buffer; `name` is e.g. ``dense_0/W``."""

    __slots__ = ("decay", "grad", "name", "value")

    def __init__(
        self, name: str, value: FloatArray, decay: bool = False, grad: FloatArray | None = None
    ) -> None:
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value) if grad is None else grad
        # Weight decay (L2, AdamW) applies to weight matrices only, not to biases or BN shifts.
        self.decay = decay

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


class Module:
    """Base class. Subclasses set `kind` (used for readable names such as ``relu_0``)."""

    kind = "module"

    def __init__(self) -> None:
        self.name = self.kind

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        raise NotImplementedError

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray | None:
        """Write parameter grads and return dL/dx (``None`` allowed when ``need_dx`` is false)."""
        raise NotImplementedError

    def parameters(self) -> Iterator[Parameter]:
        return iter(())

    def buffers(self) -> dict[str, FloatArray]:
        """Non-trainable state saved in checkpoints (e.g. BatchNorm running statistics)."""
        return {}

    def _rename(self, name: str) -> None:
        """Give the module (and its parameters) its position-based name."""
        self.name = name
        for p in self.parameters():
            p.name = f"{name}/{p.name.rsplit('/', 1)[-1]}"

    def __call__(self, x: FloatArray, training: bool = False) -> FloatArray:
        return self.forward(x, training)


class Sequential(Module):
    """Modules applied in order, named ``<kind>_<index per kind>``: dense_0, relu_0, dense_1, ..."""

    kind = "sequential"

    def __init__(self, modules: Iterable[Module]) -> None:
        super().__init__()
        self.modules = list(modules)
        counts: dict[str, int] = {}
        for m in self.modules:
            index = counts.get(m.kind, 0)
            counts[m.kind] = index + 1
            m._rename(f"{m.kind}_{index}")

    def forward(self, x: FloatArray, training: bool = False) -> FloatArray:
        for m in self.modules:
            x = m.forward(x, training)
        return x

    def backward(self, dy: FloatArray, need_dx: bool = True) -> FloatArray | None:
        last = len(self.modules) - 1
        grad: FloatArray | None = dy
        for i in range(last, -1, -1):
            assert grad is not None  # only the first layer may return None (need_dx false)
            # The first layer's input gradient is wasted work in training: skip it on request.
            grad = self.modules[i].backward(grad, need_dx=need_dx or i > 0)
        return grad

    def parameters(self) -> Iterator[Parameter]:
        for m in self.modules:
            yield from m.parameters()

    def buffers(self) -> dict[str, FloatArray]:
        return {f"{m.name}/{k}": v for m in self.modules for k, v in m.buffers().items()}

    def __getitem__(self, index: int) -> Module:
        return self.modules[index]

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        inner = ", ".join(m.name for m in self.modules)
        return f"Sequential({inner})"
