"""Losses fused with the output nonlinearity: each takes raw logits.

Fusing is both stabler (log-sum-exp, logaddexp: finite for any logit) and simpler: the gradient
w.r.t. the logits is just (prediction - target) / count. Every loss is a *mean* over the batch
(and over outputs), and its gradient is exactly the gradient of that mean.
"""

from __future__ import annotations

import numpy as np

from nnexp.nn.activations import sigmoid
from nnexp.nn.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss")


class Loss:
    name = "loss"
    task = ""

    def value(self, logits: np.ndarray, y: np.ndarray) -> float:
        return self.value_and_grad(logits, y)[0]

    def value_and_grad(self, logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_targets(self, y: np.ndarray, n_outputs: int) -> None:
        """Raise ValueError if `y` cannot be a target for `n_outputs` logits (done once, before
        training, so the hot loop need not check)."""


def _column(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Targets of shape (N,) for a single output become (N, 1)."""
    return y.reshape(logits.shape) if y.ndim == 1 else y


@LOSSES.register("softmax_cross_entropy")
class SoftmaxCrossEntropy(Loss):
    """Multiclass cross-entropy from logits; targets are integer labels (N,) or one-hot (N, C)."""

    name = "softmax_cross_entropy"
    task = "multiclass"
    _offsets_key: tuple[int, int] | None = None

    def value_and_grad(self, logits, y):
        n = logits.shape[0]
        # One temporary: shift by the row max (log-sum-exp), read the target terms, then
        # exponentiate the same array in place into the softmax. (Ufunc methods rather than
        # ndarray methods: on small batches the wrappers' overhead is most of the cost.)
        probs = np.subtract(logits, np.maximum.reduce(logits, axis=1, keepdims=True))
        if y.ndim == 1:
            flat = probs.reshape(-1)
            picks = y + self._row_offsets(n, probs.shape[1])  # flat index of each target
            target_term = flat.take(picks)
        else:
            target_term = np.einsum("ij,ij->i", y, probs)
        np.exp(probs, out=probs)
        total = np.add.reduce(probs, axis=1, keepdims=True)
        loss = float(np.add.reduce(np.log(total), axis=None) - np.add.reduce(target_term)) / n
        probs /= total
        if y.ndim == 1:
            flat[picks] -= 1
        else:
            probs -= y
        probs /= probs.dtype.type(n)
        return loss, probs

    def _row_offsets(self, n: int, classes: int) -> np.ndarray:
        """0, C, 2C, ...: cached, since every batch but the last has the same size."""
        if self._offsets_key != (n, classes):
            self._offsets, self._offsets_key = np.arange(n) * classes, (n, classes)
        return self._offsets

    def predict_proba(self, logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def predict(self, logits):
        return logits.argmax(axis=1)

    def check_targets(self, y, n_outputs):
        if y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"class labels must be integers, got dtype {y.dtype}")
            if y.size and (y.min() < 0 or y.max() >= n_outputs):
                raise ValueError(
                    f"class labels must lie in [0, {n_outputs - 1}], got [{y.min()}, {y.max()}]"
                )
        elif y.shape[1:] != (n_outputs,):
            raise ValueError(f"one-hot targets must have {n_outputs} columns, got {y.shape}")


@LOSSES.register("sigmoid_bce")
class SigmoidBCE(Loss):
    """Binary cross-entropy from logits (one or several independent outputs, targets in [0, 1]).
    Per element: log(1 + e^z) - y z, computed with logaddexp so it is finite for any z."""

    name = "sigmoid_bce"
    task = "binary"

    def value_and_grad(self, logits, y):
        y = _column(y, logits)
        loss = np.mean(np.logaddexp(0, logits) - y * logits)
        grad = sigmoid(logits)
        grad -= y
        grad /= grad.dtype.type(grad.size)
        return float(loss), grad

    def predict_proba(self, logits):
        return sigmoid(logits)

    def predict(self, logits):
        labels = (logits > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def check_targets(self, y, n_outputs):
        if y.size and (np.min(y) < 0 or np.max(y) > 1):
            raise ValueError("binary targets must lie in [0, 1]")
        if y.ndim == 2 and y.shape[1] != n_outputs:
            raise ValueError(f"targets have {y.shape[1]} columns, the network {n_outputs} outputs")


@LOSSES.register("mse")
class MSE(Loss):
    """Mean squared error over batch *and* outputs; gradient 2 (z - y) / (N * outputs)."""

    name = "mse"
    task = "regression"

    def value_and_grad(self, logits, y):
        grad = logits - _column(y, logits)
        loss = np.mean(grad * grad)
        grad *= grad.dtype.type(2.0 / grad.size)
        return float(loss), grad

    def predict_proba(self, logits):
        raise TypeError("predict_proba is not defined for regression")

    def predict(self, logits):
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def check_targets(self, y, n_outputs):
        width = 1 if y.ndim == 1 else y.shape[1]
        if width != n_outputs:
            raise ValueError(f"targets have {width} columns, the network {n_outputs} outputs")


LOSS_FOR_TASK: dict[str, type[Loss]] = {
    "multiclass": SoftmaxCrossEntropy,
    "binary": SigmoidBCE,
    "regression": MSE,
}
