"""Backprop equals the derivative of forward: central differences in float64 over every
activation x loss x output width x L2 x dropout x batch norm x depth."""

import itertools

import numpy as np
import pytest

from nnexp.nn import ACTIVATIONS, Dropout, SigmoidBCE, SoftmaxCrossEntropy, gradcheck, mlp
from nnexp.nn.losses import MSE

TOL = 1e-6
LOSSES = {"softmax": SoftmaxCrossEntropy, "bce": SigmoidBCE, "mse": MSE}
ACTIVATION_NAMES = sorted({cls.kind for cls in ACTIVATIONS.values()})


def _targets(loss: str, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "softmax":
        return rng.integers(0, width, n)
    if loss == "bce":
        return rng.integers(0, 2, (n, width)).astype(np.float64)
    return rng.standard_normal((n, width))


def _check(activation, loss, width, l2, dropout, batch_norm, depth, seed=0):
    rng = np.random.default_rng(seed)
    model = mlp(
        3,
        [5] * depth,
        width,
        activation=activation,
        init="xavier_normal",
        dropout=dropout,
        batch_norm=batch_norm,
        dtype=np.float64,
        seed=seed,
    )
    for m in model.modules:
        if isinstance(m, Dropout):
            m.frozen = True  # the same mask in every finite-difference evaluation
    for p in model.parameters():
        if not p.decay:
            # Nonzero biases keep pre-activations off ReLU's kink at exactly 0 (a dead previous
            # layer would otherwise feed 0 + b = 0), where no derivative exists to check.
            p.value += rng.normal(0.0, 0.1, p.value.shape)
    x = rng.standard_normal((6, 3))
    errors = gradcheck(model, LOSSES[loss](), x, _targets(loss, 6, width, rng), l2=l2)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: relative error {errors[worst]:.2e}"


GRID = [
    (act, loss, width, l2, dropout, bn, depth)
    for act, loss, width, l2, dropout, bn, depth in itertools.product(
        ACTIVATION_NAMES, LOSSES, (1, 3), (0.0, 0.1), (0.0, 0.3), (False, True), (1, 2, 3, 4)
    )
    # One softmax output is a constant-probability model (loss 0, gradient 0): nothing to check.
    if not (loss == "softmax" and width == 1)
]


# Depth 2 is the fast suite; the other depths (three quarters of the grid) are marked slow.
@pytest.mark.parametrize(
    ("activation", "loss", "depth"),
    [
        pytest.param(a, loss, d, marks=() if d == 2 else pytest.mark.slow)
        for a, loss, d in itertools.product(ACTIVATION_NAMES, LOSSES, (1, 2, 3, 4))
    ],
)
def test_gradients_match_finite_differences(activation, loss, depth):
    for case in GRID:
        if (case[0], case[1], case[-1]) == (activation, loss, depth):
            _check(*case)


# Residual networks: inputs 3 → hidden widths that change (a projection) and stay (identity).
RESIDUAL_GRID = [
    pytest.param(
        act,
        loss,
        hidden,
        dropout,
        bn,
        id=f"{act}-{loss}-{hidden}-d{dropout}-bn{bn}",
        marks=() if hidden == (5, 5, 4) else pytest.mark.slow,  # a projection, then identities
    )
    for act, loss, hidden, dropout, bn in itertools.product(
        ACTIVATION_NAMES, LOSSES, ((5,), (3, 3), (5, 5, 4)), (0.0, 0.3), (False, True)
    )
    if (dropout, bn) != (0.3, True) or hidden == (5, 5, 4)
]


@pytest.mark.parametrize(("activation", "loss", "hidden", "dropout", "batch_norm"), RESIDUAL_GRID)
def test_residual_gradients_match_finite_differences(activation, loss, hidden, dropout, batch_norm):
    """Skip … Residual blocks: the projection's gradient, the gradient through both paths to
    every layer below and to the input (float64, fourth-order central differences)."""
    rng = np.random.default_rng(3)
    width = 3
    model = mlp(
        3,
        list(hidden),
        width,
        activation=activation,
        init="xavier_normal",
        dropout=dropout,
        batch_norm=batch_norm,
        residual=True,
        dtype=np.float64,
        seed=3,
    )
    names = [m.name for m in model.modules]
    assert names.count("skip_0") == 1 and names[-2].startswith("residual_")
    projections = [p.name for p in model.parameters() if p.name.startswith("residual_")]
    assert projections == [f"residual_{i}/W" for i, w in enumerate(hidden) if w != (3, *hidden)[i]]
    for m in model.modules:
        if isinstance(m, Dropout):
            m.frozen = True
    for p in model.parameters():
        if not p.decay:
            p.value += rng.normal(0.0, 0.1, p.value.shape)
    x = rng.standard_normal((6, 3))
    errors = gradcheck(model, LOSSES[loss](), x, _targets(loss, 6, width, rng), l2=0.1)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: relative error {errors[worst]:.2e}"


def test_a_residual_block_adds_its_input_or_its_projection():
    """y = f(x) + x, or f(x) + x·P where the width changes."""
    model = mlp(2, [4, 4], 1, activation="tanh", residual=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2))
    d0, r0, d1 = model[1], model[3], model[5]  # skip_0 dense_0 tanh_0 residual_0 skip_1 ...
    h0 = np.tanh(x @ d0.W.value + d0.b.value) + x @ r0.P.value
    h1 = np.tanh(h0 @ d1.W.value + d1.b.value) + h0
    expected = h1 @ model[-1].W.value + model[-1].b.value
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12)
    np.testing.assert_allclose(model.forward(x, training=True), expected, rtol=1e-12)
    assert model[7].P is None  # 4 → 4: the identity, no parameters


def test_one_hot_targets_match_integer_labels():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    loss = SoftmaxCrossEntropy()
    a, ga = loss.value_and_grad(logits, labels)
    b, gb = loss.value_and_grad(logits, np.eye(4)[labels])
    assert a == pytest.approx(b, rel=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=1e-12)


def test_gradcheck_catches_a_wrong_gradient():
    """The checker itself can fail: break a layer's backward and it must notice."""
    model = mlp(3, [4], 2, activation="tanh", dtype=np.float64)
    dense = model.modules[0]
    original = dense.backward

    def broken(dy, need_dx=True):
        out = original(dy, need_dx)
        dense.W.grad *= 1.01
        return out

    dense.backward = broken
    rng = np.random.default_rng(0)
    errors = gradcheck(model, MSE(), rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    assert errors["dense_0/W"] > 1e-3
    assert errors["dense_1/W"] < TOL
