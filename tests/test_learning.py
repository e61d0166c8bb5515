"""The core learns: a 2-16-2 network on two moons with mini-batch SGD (a loop written out here,
independent of nnexp.train), and float32 and float64 training agree."""

import numpy as np
import pytest
from sklearn.datasets import make_moons

from nnexp.nn import SGD, SoftmaxCrossEntropy, mlp


def _moons(dtype):
    X, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    train, val = slice(0, 800), slice(800, None)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    X = ((X - mean) / std).astype(dtype)
    return X[train], y[train], X[val], y[val]


def _train(dtype, activation="relu", init="he", epochs=100, lr=0.1, batch=32):
    X, y, Xv, yv = _moons(dtype)
    model = mlp(2, [16], 2, activation=activation, init=init, dtype=dtype, seed=0)
    loss, opt = SoftmaxCrossEntropy(), SGD(list(model.parameters()), lr=lr)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start : start + batch]
            _, d = loss.value_and_grad(model.forward(X[idx], training=True), y[idx])
            model.backward(d, need_dx=False)
            opt.step()
    val_acc = float(np.mean(loss.predict(model.forward(Xv)) == yv))
    return model, val_acc


def test_two_moons_reaches_95_percent_with_relu_and_he():
    _, acc = _train(np.float32)
    assert acc >= 0.95


def test_float32_and_float64_training_agree():
    m32, acc32 = _train(np.float32, epochs=20)
    m64, acc64 = _train(np.float64, epochs=20)
    assert abs(acc32 - acc64) <= 0.005
    for p32, p64 in zip(m32.parameters(), m64.parameters(), strict=True):
        assert p32.value.dtype == np.float32
        np.testing.assert_allclose(p32.value, p64.value, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_classic_sigmoid_network_learns_too():
    """The tutorial's network (sigmoid hidden layer, small normal init) learns moons, slowly."""
    _, acc = _train(np.float64, activation="sigmoid", init="xavier", epochs=100, lr=0.5)
    assert acc >= 0.85
