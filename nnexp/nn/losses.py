"""Losses fused with the output nonlinearity: each takes raw logits.

Fusing is both stabler (log-sum-exp, logaddexp: finite for any logit) and simpler: the gradient
w.r.t. the logits is just (prediction - target) / count. Every loss is a *mean* over the batch
(and over outputs), and its gradient is exactly the gradient of that mean.

Each class states its formula (z: logits, y: targets, N: batch size, K: outputs) above the fast
code; the tests that check the code against the formula written plainly are named there too.
Which loss a task gets is decided in one place, `nnexp.build` (`AUTO_LOSS`, `LOSS_TASKS`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from nnexp.nn.activations import sigmoid
from nnexp.nn.module import FloatArray, Targets
from nnexp.nn.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss")


class Loss:
    name = "loss"

    def value(self, logits: FloatArray, y: Targets) -> float:
        return self.value_and_grad(logits, y)[0]

    def value_and_grad(self, logits: FloatArray, y: Targets) -> tuple[float, FloatArray]:
        raise NotImplementedError

    def predict_proba(self, logits: FloatArray) -> FloatArray:
        raise NotImplementedError

    def predict(self, logits: FloatArray) -> Targets:
        """Class labels (integers) or, for regression, the predicted values."""
        raise NotImplementedError

    def check_targets(self, y: Targets, n_outputs: int) -> None:
        """Raise ValueError if `y` cannot be a target for `n_outputs` logits (done once, before
        training, so the hot loop need not check)."""


def _column(y: Targets, logits: FloatArray) -> Targets:
    """Targets of shape (N,) for a single output become (N, 1)."""
    return y.reshape(logits.shape) if y.ndim == 1 else y


@LOSSES.register("softmax_cross_entropy")
class SoftmaxCrossEntropy(Loss):
    """Multiclass cross-entropy from logits; targets are integer labels (N,) or one-hot (N, C).

        p_ij = softmax(z_i)_j = e^(z_ij - max_k z_ik) / Σ_k e^(z_ik - max_k z_ik)
        L    = (1/N) Σ_i [ log Σ_j e^z_ij  -  z_i,y_i ]        (= -(1/N) Σ_i log p_i,y_i)
        ∂L/∂z = (p - onehot(y)) / N

    Reference (plain NumPy): tests/test_exact_nn.py::
    test_softmax_cross_entropy_value_and_gradient_are_the_plain_formula (and `_softmax` there);
    against finite differences: tests/test_gradcheck.py::test_gradients_match_finite_differences.
    """

    name = "softmax_cross_entropy"
    _offsets_key: tuple[int, int] | None = None

    def value_and_grad(self, logits: FloatArray, y: Targets) -> tuple[float, FloatArray]:
        n = logits.shape[0]
        # One temporary: shift by the row max (log-sum-exp), read the target terms, then
        # exponentiate the same array in place into the softmax. (Ufunc methods rather than
        # ndarray methods: on small batches the wrappers' overhead is most of the cost.)
        # s = z - max_j z: the same L and p as z, and e^s never overflows.
        probs = np.subtract(logits, np.maximum.reduce(logits, axis=1, keepdims=True))
        if y.ndim == 1:
            flat = probs.reshape(-1)
            picks = y + self._row_offsets(n, probs.shape[1])  # flat index of each target
            # 1-D targets are integer labels (check_targets), which their type cannot say.
            target_term = flat.take(picks)  # type: ignore[arg-type]  # s_i,y_i
        else:
            target_term = np.einsum("ij,ij->i", y, probs)  # Σ_j y_ij s_ij
        np.exp(probs, out=probs)  # e^s
        total = np.add.reduce(probs, axis=1, keepdims=True)  # Σ_j e^s_ij
        # L = (1/N) Σ_i [log Σ_j e^s_ij - s_i,y_i]
        loss = float(np.add.reduce(np.log(total), axis=None) - np.add.reduce(target_term)) / n
        probs /= total  # p
        if y.ndim == 1:
            flat[picks] -= 1  # p - onehot(y)
        else:
            probs -= y
        probs /= probs.dtype.type(n)  # ∂L/∂z = (p - onehot(y)) / N
        return loss, probs

    def _row_offsets(self, n: int, classes: int) -> NDArray[np.intp]:
        """0, C, 2C, ...: cached, since every batch but the last has the same size."""
        if self._offsets_key != (n, classes):
            self._offsets, self._offsets_key = np.arange(n) * classes, (n, classes)
        return self._offsets

    def predict_proba(self, logits: FloatArray) -> FloatArray:
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs: FloatArray = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def predict(self, logits: FloatArray) -> Targets:
        labels: NDArray[np.intp] = logits.argmax(axis=1)
        return labels

    def check_targets(self, y: Targets, n_outputs: int) -> None:
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

        σ(z)  = 1 / (1 + e^-z)
        L     = mean[ -y log σ(z) - (1-y) log(1-σ(z)) ] = mean[ log(1 + e^z) - y·z ]
        ∂L/∂z = (σ(z) - y) / (N·K)

    log(1 + e^z) is computed as logaddexp(0, z): finite for any z.
    Reference (plain NumPy): tests/test_exact_nn.py::
    test_sigmoid_bce_and_mse_values_gradients_and_predictions;
    against finite differences: tests/test_gradcheck.py::test_gradients_match_finite_differences.
    """

    name = "sigmoid_bce"

    def value_and_grad(self, logits: FloatArray, y: Targets) -> tuple[float, FloatArray]:
        y = _column(y, logits)
        loss = np.mean(np.logaddexp(0, logits) - y * logits)  # mean[log(1 + e^z) - y·z]
        grad = sigmoid(logits)
        grad -= y
        grad /= grad.dtype.type(grad.size)  # (σ(z) - y) / (N·K)
        return float(loss), grad

    def predict_proba(self, logits: FloatArray) -> FloatArray:
        return sigmoid(logits)

    def predict(self, logits: FloatArray) -> Targets:
        labels = (logits > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def check_targets(self, y: Targets, n_outputs: int) -> None:
        if y.size and (np.min(y) < 0 or np.max(y) > 1):
            raise ValueError("binary targets must lie in [0, 1]")
        if y.ndim == 2 and y.shape[1] != n_outputs:
            raise ValueError(f"targets have {y.shape[1]} columns, the network {n_outputs} outputs")


@LOSSES.register("mse")
class MSE(Loss):
    """Mean squared error over batch *and* outputs.

        L     = mean[ (z - y)² ]
        ∂L/∂z = 2·(z - y) / (N·K)

    Reference (plain NumPy): tests/test_exact_nn.py::
    test_sigmoid_bce_and_mse_values_gradients_and_predictions;
    against finite differences: tests/test_gradcheck.py::test_gradients_match_finite_differences.
    """

    name = "mse"

    def value_and_grad(self, logits: FloatArray, y: Targets) -> tuple[float, FloatArray]:
        grad = logits - _column(y, logits)  # z - y
        loss = np.mean(grad * grad)  # mean[(z - y)²]
        grad *= grad.dtype.type(2.0 / grad.size)  # 2·(z - y) / (N·K)
        return float(loss), grad

    def predict_proba(self, logits: FloatArray) -> FloatArray:
        raise TypeError("predict_proba is not defined for regression")

    def predict(self, logits: FloatArray) -> Targets:
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def check_targets(self, y: Targets, n_outputs: int) -> None:
        width = 1 if y.ndim == 1 else y.shape[1]
        if width != n_outputs:
            raise ValueError(f"targets have {width} columns, the network {n_outputs} outputs")
