"""Layers, losses, initializers, schedules and statistics of the NumPy core."""

import math

import numpy as np
import pytest

from nnexp.nn import (
    ACTIVATIONS,
    INITIALIZERS,
    MSE,
    SCHEDULES,
    BatchNorm1d,
    Dense,
    Dropout,
    SigmoidBCE,
    SoftmaxCrossEntropy,
    StepStats,
    grad_norms,
    initialize,
    make_activation,
    mlp,
    sigmoid,
)

# --- the tutorial's hand-worked numbers --------------------------------------------------------


def test_single_sigmoid_neuron():
    neuron = Dense(2, 1, init="zeros", dtype=np.float64)
    neuron.W.value[:, 0] = [0.5, -0.6]
    neuron.b.value[:] = 0.1
    out = make_activation("sigmoid")(neuron(np.array([[2.0, 3.0]])))
    assert out[0, 0] == pytest.approx(0.331812227831834, abs=1e-12)  # sigmoid(-0.7)


def test_binary_cross_entropy_and_mse_of_the_tutorial():
    y = np.array([1.0, 0.0, 1.0])
    p = np.array([0.9, 0.1, 0.8])
    logits = np.log(p / (1 - p))[:, None]
    # The article prints 0.2027 for this BCE, but -mean(log .9, log .9, log .8) is 0.1446:
    # its printed output is invented (the design notes warn of this). We test the true value.
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert expected == pytest.approx(0.144621, abs=1e-6)
    assert SigmoidBCE().value(logits, y) == pytest.approx(expected, rel=1e-12)
    assert MSE().value(p[:, None], y) == pytest.approx(0.02, rel=1e-12)


# --- numerical stability -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stay_finite_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]], dtype=dtype)
    labels = np.array([1, 1, 0])
    loss, grad = SoftmaxCrossEntropy().value_and_grad(logits, labels)
    assert math.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx((2e4 + math.log(2)) / 3, rel=1e-6)
    z = np.array([[1e4], [-1e4], [1e4]], dtype=dtype)
    loss, grad = SigmoidBCE().value_and_grad(z, np.array([0.0, 0.0, 1.0], dtype=dtype))
    assert math.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(1e4 / 3, rel=1e-6)
    assert grad.dtype == dtype


def test_sigmoid_is_finite_and_exact_at_extremes():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(all="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-15)


# --- symmetry, dropout, batch norm -------------------------------------------------------------


def test_zeros_init_leaves_hidden_units_identical():
    """The symmetry problem: with all-zero weights every hidden unit computes and learns the
    same thing, so after training the hidden layer's columns are still equal."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)), rng.integers(0, 2, 64)
    model = mlp(2, [8], 2, activation="sigmoid", init="zeros", dtype=np.float64)
    loss = SoftmaxCrossEntropy()
    for _ in range(50):
        _, d = loss.value_and_grad(model.forward(x, training=True), y)
        model.backward(d)
        for p in model.parameters():
            p.value -= 0.5 * p.grad
    W, W_out = model.modules[0].W.value, model.modules[-1].W.value
    assert np.abs(W).max() > 1e-3  # it did learn...
    np.testing.assert_allclose(W, W[:, :1].repeat(8, axis=1), atol=1e-12)  # ...one unit, 8 times
    np.testing.assert_allclose(W_out, W_out[:1].repeat(8, axis=0), atol=1e-12)


def test_dropout_is_inverted_and_identity_at_inference():
    x = np.ones((2000, 50))
    drop = Dropout(0.3, rng=np.random.default_rng(0))
    y = drop(x, training=True)
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7])
    assert y.mean() == pytest.approx(1.0, abs=0.01)  # expectation preserved
    dy = drop.backward(np.ones_like(x))
    assert np.array_equal(dy != 0, y != 0)  # the same mask routes the gradient
    assert (drop(x, training=False) == x).all()
    with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\), got 1"):
        Dropout(1.0)


def test_batchnorm_normalizes_in_training_and_uses_running_stats_at_inference():
    rng = np.random.default_rng(0)
    bn = BatchNorm1d(3, momentum=0.5, dtype=np.float64)
    x = rng.normal(5.0, 3.0, (256, 3))
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-3)
    for _ in range(30):
        bn(x, training=True)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, x.var(axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(bn(x[:5], training=False), y[:5], atol=1e-2)
    assert set(bn.buffers()) == {"running_mean", "running_var"}


# --- initializers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializers_are_deterministic_and_keep_dtype(name):
    a = initialize(name, (200, 100), np.random.default_rng(7), np.float32)
    b = initialize(name, (200, 100), np.random.default_rng(7), np.float32)
    c = initialize(name, (200, 100), np.random.default_rng(7), np.float64)
    assert a.dtype == np.float32 and c.dtype == np.float64
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)  # same draws in either dtype


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("normal", 0.01),
        ("he", math.sqrt(2 / 400)),
        ("he_uniform", math.sqrt(2 / 400)),
        ("xavier", math.sqrt(2 / 600)),
        ("xavier_normal", math.sqrt(2 / 600)),
        ("lecun_normal", math.sqrt(1 / 400)),
    ],
)
def test_initializer_scales(name, std):
    w = initialize(name, (400, 200), np.random.default_rng(0), np.float64)
    assert w.std() == pytest.approx(std, rel=0.02)
    assert abs(w.mean()) < std / 20


def test_normal_std_is_settable_and_biases_start_at_zero():
    layer = Dense(100, 100, init="normal", init_kwargs={"std": 1.0})
    assert layer.W.value.std() == pytest.approx(1.0, rel=0.05)
    assert not layer.b.value.any()
    with pytest.raises(ValueError, match="unknown init 'kaiming_magic'; allowed:"):
        Dense(2, 2, init="kaiming_magic")


# --- registries, names -------------------------------------------------------------------------


def test_layers_get_stable_readable_names():
    model = mlp(4, [8, 8], 3, activation="relu", batch_norm=True, dropout=0.1)
    names = [m.name for m in model.modules]
    assert names == [
        "dense_0", "batchnorm_0", "relu_0", "dropout_0",
        "dense_1", "batchnorm_1", "relu_1", "dropout_1", "dense_2",
    ]  # fmt: skip
    assert [p.name for p in model.parameters()][:4] == [
        "dense_0/W", "dense_0/b", "batchnorm_0/gamma", "batchnorm_0/beta",
    ]  # fmt: skip
    assert set(model.buffers()) >= {"batchnorm_0/running_mean", "batchnorm_1/running_var"}


def test_unknown_activation_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'; allowed: elu, gelu"):
        make_activation("swish")
    assert {"relu", "leaky_relu", "elu", "tanh", "sigmoid", "gelu", "identity"} <= set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted({c.kind for c in ACTIVATIONS.values()}))
def test_activations_in_place_equal_out_of_place(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5))
    dy = rng.standard_normal((8, 5))
    a, b = make_activation(name), make_activation(name, inplace=True)
    ya = a.forward(x.copy(), training=True)
    yb = b.forward(x.copy(), training=True)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a.backward(dy.copy()), b.backward(dy.copy()))
    x_before = x.copy()
    a.forward(x, training=True)
    np.testing.assert_array_equal(x, x_before)  # out of place never touches its input


# --- dtype ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", sorted({c.kind for c in ACTIVATIONS.values()}))
def test_float32_end_to_end_without_upcasting(activation):
    rng = np.random.default_rng(0)
    model = mlp(3, [6, 6], 4, activation=activation, batch_norm=True, dropout=0.2)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    logits = model.forward(x, training=True)
    _, d = SoftmaxCrossEntropy().value_and_grad(logits, rng.integers(0, 4, 10))
    dx = model.backward(d)
    assert logits.dtype == d.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
    assert model.forward(x).dtype == np.float32


# --- schedules ---------------------------------------------------------------------------------


def test_schedules():
    S = SCHEDULES
    assert S["constant"](0.1)(99) == 0.1
    step = S["step"](1.0, gamma=0.95, step_size=10)
    assert [step(e) for e in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.95, 0.95**2])
    assert S["exponential"](1.0, gamma=0.9)(3) == pytest.approx(0.729)
    cos = S["cosine"](1.0, total=10, min_lr=0.1)
    assert [cos(0), cos(5), cos(10), cos(20)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    warm = S["warmup_cosine"](1.0, total=12, warmup=2)
    assert [warm(0), warm(1), warm(2), warm(7), warm(12)] == pytest.approx([0.5, 1, 1, 0.5, 0])
    plateau = S["plateau"](1.0, factor=0.5, patience=2, min_delta=0.0)
    for metric in (1.0, 0.9, 0.9, 0.9, 0.9):
        plateau.observe(metric)
    assert plateau(5) == 0.5  # three epochs without improvement > patience 2
    state = plateau.state_dict()
    again = S["plateau"](1.0, factor=0.5, patience=2, min_delta=0.0)
    again.load_state_dict(state)
    assert again(0) == 0.5 and again.best == 0.9


# --- statistics --------------------------------------------------------------------------------


def _one_step(params, activations, want, norms=(), lr=0.0):
    """What the trainer logs for one sampled step: StepStats' summary of that single sample."""
    stats = StepStats(params, activations, want)
    stats.sample(list(norms), lr)
    return stats.summary()


def _activation_stats(layer):
    return _one_step([], [layer], ("activations",))


def test_statistics():
    model = mlp(2, [4], 2, activation="relu", init="he", dtype=np.float64)
    relu = model.modules[1]
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    model.modules[0].W.value[...] = [[1, -1, 0, 2], [1, -1, 0, -2]]
    model.forward(x, training=True)
    stats = _activation_stats(relu)
    assert stats["act/relu_0/dead_frac"] == 0.5  # units 1 and 2 never fire
    assert "act/relu_0/sat_frac" not in stats
    sig = make_activation("sigmoid")
    sig.name = "sigmoid_0"
    sig.forward(np.array([[-10.0, 0.0, 10.0, 1.0]]), training=True)
    assert _activation_stats(sig)["act/sigmoid_0/sat_frac"] == 0.5

    params = list(model.parameters())
    for p in params:
        p.grad[...] = 1.0
    norms = grad_norms(params)  # what the trainer passes to StepStats.sample
    g = _one_step(params, [], ("grad_norm",), norms)
    assert g["grad_norm/dense_0/W/mean"] == pytest.approx(math.sqrt(8))
    assert g["grad_norm/global/mean"] == pytest.approx(math.sqrt(8 + 4 + 8 + 2))
    r = _one_step(params, [], ("update_ratio",), norms, lr=0.1)
    assert set(r) == {"update_ratio/dense_0", "update_ratio/dense_1"}
    w_norm = np.linalg.norm(model.modules[0].W.value)
    assert r["update_ratio/dense_0"] == pytest.approx(0.1 * math.sqrt(8) / w_norm)

    # Per-step samples summarized per epoch: gradient norms as mean and max, the rest as means.
    step_stats = StepStats(params, [relu], ("grad_norm", "update_ratio", "activations"))
    model.forward(x, training=True)
    step_stats.sample(norms, lr=0.1)
    for p in params:
        p.grad[...] = 3.0
    step_stats.sample([3 * n for n in norms], lr=0.1)
    summary = step_stats.summary()
    assert summary["grad_norm/dense_0/W/mean"] == pytest.approx(2 * math.sqrt(8))
    assert summary["grad_norm/dense_0/W/max"] == pytest.approx(3 * math.sqrt(8))
    assert summary["grad_norm/global/max"] == pytest.approx(3 * math.sqrt(22))
    assert summary["update_ratio/dense_0"] == pytest.approx(2 * r["update_ratio/dense_0"])
    assert summary["act/relu_0/dead_frac"] == 0.5
    y = relu.output
    assert summary["act/relu_0/mean"] == pytest.approx(y.mean())
    assert summary["act/relu_0/std"] == pytest.approx(y.std())
    assert "act/relu_0/sat_frac" not in summary
    assert not StepStats(params, [relu], ())  # nothing wanted: the trainer skips sampling


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
def test_dead_fraction_counts_units_never_positive_in_the_batch(name):
    # ReLU reads it off the column sums (its outputs are never negative); the others, whose
    # outputs can be negative, off the column maxima. Both must give the same definition.
    layer = make_activation(name)
    layer.name = f"{name}_0"
    x = np.array([[-1.0, 2.0, -3.0, 0.0], [-2.0, -1.0, -1.0, 0.5], [-0.5, -4.0, -2.0, 0.0]])
    layer.forward(x, training=True)
    stats = _activation_stats(layer)
    assert stats[f"act/{name}_0/dead_frac"] == 0.5  # units 0 and 2
    y = layer.output
    assert stats[f"act/{name}_0/mean"] == pytest.approx(y.mean())
    assert stats[f"act/{name}_0/std"] == pytest.approx(y.std())


def test_step_stats_take_the_weight_norms_the_trainer_already_has():
    model = mlp(3, [4], 2, activation="relu", dtype=np.float64)
    params = list(model.parameters())
    relu = [m for m in model.modules if m.kind == "relu"]
    model.forward(np.random.default_rng(0).standard_normal((5, 3)), training=True)
    norms = [1.0 + i for i in range(len(params))]
    given = StepStats(params, relu, ("grad_norm", "update_ratio", "activations"))
    given.sample(norms, 0.1, [float(np.linalg.norm(p.value)) for p in params])
    computed = StepStats(params, relu, ("grad_norm", "update_ratio", "activations"))
    computed.sample(norms, 0.1)
    assert given.summary() == pytest.approx(computed.summary())


def test_step_stats_read_the_activations_when_told_or_at_the_latest_in_sample():
    """`sample_activations` right after the forward pass (as the trainer calls it) records the
    same as `sample` alone; a step that skips it still gets its own outputs, not stale ones."""
    model = mlp(3, [4], 2, activation="relu", dtype=np.float64)
    params = list(model.parameters())
    relu = [m for m in model.modules if m.kind == "relu"]
    want = ("grad_norm", "update_ratio", "activations")
    early, late = StepStats(params, relu, want), StepStats(params, relu, want)
    rng = np.random.default_rng(0)
    norms = [1.0 + i for i in range(len(params))]
    means = []
    for step in range(3):
        model.forward(rng.standard_normal((6, 3)) + step, training=True)
        means.append(relu[0].output.mean())
        if step != 1:
            early.sample_activations()
        early.sample(norms, 0.1)
        late.sample(norms, 0.1)
    assert early.summary() == pytest.approx(late.summary())
    assert early.summary()["act/relu_0/mean"] == pytest.approx(np.mean(means))
    assert len(set(means)) == 3  # each step's own outputs
