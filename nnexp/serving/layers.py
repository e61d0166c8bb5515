"""The inference forward pass, layer by layer, as plain NumPy functions: one per layer kind of
the bundle's ``layers`` list (`nnexp.nn`'s module kinds), and one output head per loss.

Each function computes exactly what the training module computes at inference, in the same
order and dtype (tests/test_serving.py checks every kind against `nnexp.nn` bit for bit), but
keeps no state for a backward pass: that is why this is not `nnexp.nn` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

Array: TypeAlias = NDArray[Any]  # float32 or float64 (the bundle's dtype), or labels
Layer = Mapping[str, Any]  # {"kind": ..., "name": ..., and the kind's own settings}
Weights = Mapping[str, Array]  # "param/<layer>/<name>" and "buffer/<layer>/<name>"


def sigmoid(x: Array) -> Array:
    """(1 + tanh(x/2)) / 2: `nnexp.nn.activations.sigmoid`, no overflow for any x."""
    half = x.dtype.type(0.5)
    y: Array = (np.tanh(x * half) + 1) * half
    return y


def _gelu(x: Array) -> Array:
    c, k = x.dtype.type(math.sqrt(2.0 / math.pi)), x.dtype.type(0.044715)
    y: Array = 0.5 * x * (1 + np.tanh(c * (x + k * x**3)))
    return y


def _elu(x: Array, alpha: float) -> Array:
    y = x.copy()
    neg = y < 0
    y[neg] = np.expm1(y[neg]) * y.dtype.type(alpha)
    return y


def _leaky_relu(x: Array, alpha: float) -> Array:
    y: Array = np.multiply(x, x.dtype.type(alpha), out=x.copy(), where=x < 0)
    return y


# kind -> f(x, layer): the layer's settings (an alpha) travel in its record.
ACTIVATIONS: dict[str, Callable[[Array, Layer], Array]] = {
    "identity": lambda x, layer: x,
    "relu": lambda x, layer: np.maximum(x, 0),
    "leaky_relu": lambda x, layer: _leaky_relu(x, layer["alpha"]),
    "elu": lambda x, layer: _elu(x, layer["alpha"]),
    "tanh": lambda x, layer: np.tanh(x),
    "sigmoid": lambda x, layer: sigmoid(x),
    "gelu": lambda x, layer: _gelu(x),
}


class Forward:
    """Runs a bundle's layers on a batch. A residual block's input is kept at its ``skip``
    layer and added back (through its projection, if any) at the ``residual`` layer that names
    that skip."""

    def __init__(self, layers: list[Layer], weights: Weights) -> None:
        # kind -> f(x, layer, kept): the layers with weights, and the residual block's ends
        self.ops: dict[str, Callable[[Array, Layer, dict[str, Array]], Array]] = {
            "dense": self._dense,
            "batchnorm": self._batchnorm,
            "skip": self._skip,
            "residual": self._residual,
        }
        unknown = sorted({layer["kind"] for layer in layers} - set(self.ops) - set(ACTIVATIONS))
        if unknown:
            raise ValueError(f"model bundle: unknown layer kind(s) {unknown}")
        self.layers = layers
        self.weights = weights

    def __call__(self, x: Array) -> Array:
        kept: dict[str, Array] = {}  # a residual block's input, by the name of its skip
        for layer in self.layers:
            op = self.ops.get(layer["kind"])
            x = op(x, layer, kept) if op else ACTIVATIONS[layer["kind"]](x, layer)
        return x

    def _param(self, layer: Layer, name: str, group: str = "param") -> Array:
        return self.weights[f"{group}/{layer['name']}/{name}"]

    def _dense(self, x: Array, layer: Layer, kept: dict[str, Array]) -> Array:
        y: Array = x @ self._param(layer, "W") + self._param(layer, "b")
        return y

    def _batchnorm(self, x: Array, layer: Layer, kept: dict[str, Array]) -> Array:
        mean = self._param(layer, "running_mean", "buffer")
        var = self._param(layer, "running_var", "buffer")
        gamma, beta = self._param(layer, "gamma"), self._param(layer, "beta")
        scale = gamma / np.sqrt(var + gamma.dtype.type(layer["eps"]))
        y: Array = (x - mean) * scale + beta
        return y

    def _skip(self, x: Array, layer: Layer, kept: dict[str, Array]) -> Array:
        kept[layer["name"]] = x
        return x

    def _residual(self, x: Array, layer: Layer, kept: dict[str, Array]) -> Array:
        shortcut = kept.pop(layer["skip"])
        if layer["projected"]:
            shortcut = shortcut @ self._param(layer, "W")
        y: Array = x + shortcut
        return y


def _softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs: Array = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def _binary(logits: Array) -> Array:
    """One sigmoid output is P(class 1): the columns are P(class 0), P(class 1)."""
    p = sigmoid(logits[:, :1])
    return np.concatenate([1 - p, p], axis=1)


# loss -> (probabilities of each class from the logits, the class index of each row)
HEADS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "softmax_cross_entropy": (_softmax, lambda z: z.argmax(axis=1)),
    "sigmoid_bce": (_binary, lambda z: (z[:, 0] > 0).astype(np.int64)),
}
