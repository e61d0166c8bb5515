"""Exact arithmetic of the NumPy core (nnexp.nn), checked against the formulas written plainly:
every activation and its derivative at the kinks, the losses and their gradients, the
initializers' distributions draw for draw, the layers' backward passes, the optimizers'
defaults, the schedules, the statistics, the packed vector — and the messages of the errors.

These are the tests that the mutation run (`make mutate`, tests/mutants.md) asked for: each
pins down what a piece of the core is for, exactly, where the broader tests only check it
approximately or not at all."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnexp.build import AUTO_LOSS
from nnexp.nn import (
    ELU,
    GELU,
    LOSSES,
    MSE,
    SCHEDULES,
    SGD,
    Adam,
    AdamW,
    BatchNorm1d,
    Dense,
    Dropout,
    Identity,
    LeakyReLU,
    Module,
    Parameter,
    ReLU,
    RMSprop,
    Sequential,
    Sigmoid,
    SigmoidBCE,
    SoftmaxCrossEntropy,
    StepStats,
    Tanh,
    clip_by_global_norm,
    clip_by_value,
    flat_view,
    global_norm,
    grad_norms,
    gradcheck,
    initialize,
    l2_penalty,
    make_activation,
    mlp,
    pack,
    param_norms,
)
from nnexp.nn.flat import _chunks
from nnexp.nn.gradients import add_l2_grad, norm
from nnexp.nn.losses import Loss
from nnexp.nn.optim import Optimizer
from nnexp.nn.registry import Registry
from nnexp.nn.schedules import Schedule
from nnexp.nn.stats import activation_keys, activation_values, update_ratio
from nnexp.nn.workspace import Workspace

X = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])  # both sides of every kink, and the kink itself
DY = np.array([[1.5, -2.0, 3.0, 0.25, -1.0]])


def _fwd_bwd(layer, x=X, dy=DY):
    y = layer.forward(x.copy(), training=True).copy()
    return y, layer.backward(dy.copy())


# --- activations -------------------------------------------------------------------------------


def test_relu_is_max_0_x_and_passes_gradient_only_where_positive():
    y, dx = _fwd_bwd(ReLU())
    np.testing.assert_array_equal(y, [[0, 0, 0, 0.5, 3]])
    np.testing.assert_array_equal(dx, [[0, 0, 0, 0.25, -1]])  # 0 at the kink itself


@pytest.mark.parametrize("alpha", [None, 0.2])
def test_leaky_relu_slope_alpha_below_zero_including_the_kink(alpha):
    layer = LeakyReLU() if alpha is None else LeakyReLU(alpha=alpha)
    a = 0.01 if alpha is None else alpha  # the documented default
    y, dx = _fwd_bwd(layer)
    np.testing.assert_array_equal(y, [[-2 * a, -0.5 * a, 0, 0.5, 3]])
    np.testing.assert_array_equal(dx, [[1.5 * a, -2 * a, 3 * a, 0.25, -1]])


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_elu_is_alpha_expm1_below_zero_and_its_derivative_alpha_exp(alpha):
    layer = ELU() if alpha is None else ELU(alpha=alpha)
    a = 1.0 if alpha is None else alpha
    y, dx = _fwd_bwd(layer)
    x = X[0]
    np.testing.assert_allclose(y[0], np.where(x < 0, a * np.expm1(x), x), rtol=1e-15)
    # at 0 the right derivative (1): the unit is linear from there on
    np.testing.assert_allclose(dx[0], DY[0] * np.where(x < 0, a * np.exp(x), 1.0), rtol=1e-15)


def test_tanh_and_sigmoid_and_their_derivatives():
    y, dx = _fwd_bwd(Tanh())
    np.testing.assert_allclose(y, np.tanh(X), rtol=1e-15)
    np.testing.assert_allclose(dx, DY * (1 - np.tanh(X) ** 2), rtol=1e-14)
    y, dx = _fwd_bwd(Sigmoid())
    s = 1 / (1 + np.exp(-X))
    np.testing.assert_allclose(y, s, rtol=1e-15)
    np.testing.assert_allclose(dx, DY * s * (1 - s), rtol=1e-14)


def test_gelu_is_the_tanh_approximation_and_its_exact_derivative():
    c, k = math.sqrt(2 / math.pi), 0.044715

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(c * (x + k * x**3)))

    y, dx = _fwd_bwd(GELU())
    np.testing.assert_allclose(y, gelu(X), rtol=1e-15, atol=1e-300)
    h = 1e-6
    numeric = (gelu(X + h) - gelu(X - h)) / (2 * h)
    np.testing.assert_allclose(dx, DY * numeric, rtol=1e-8, atol=1e-9)


def test_identity_passes_everything_through():
    layer = Identity()
    x = X.copy()
    assert layer.forward(x, training=True) is x
    assert layer.backward(DY) is DY
    assert layer.output is None and not layer.records_output


@pytest.mark.parametrize("cls", [ReLU, LeakyReLU, ELU, Tanh, Sigmoid])
def test_in_place_activations_reuse_their_arrays_and_the_others_do_not(cls):
    x, dy = X.copy(), DY.copy()
    inplace = cls(inplace=True)
    assert inplace.forward(x, training=True) is x
    assert inplace.backward(dy) is dy
    x, dy = X.copy(), DY.copy()
    fresh = cls()
    y = fresh.forward(x, training=True)
    assert y is not x and not np.shares_memory(y, x)
    dx = fresh.backward(dy)
    assert dx is not dy and not np.shares_memory(dx, dy)
    np.testing.assert_array_equal(dy, DY)  # the incoming gradient is left alone


@pytest.mark.parametrize("cls", [ReLU, LeakyReLU, ELU, Tanh, Sigmoid, GELU])
def test_only_training_passes_record_the_output(cls):
    layer = cls()
    assert layer.output is None
    layer.forward(X.copy())
    assert layer.output is None
    y = layer.forward(X.copy(), training=True)
    assert layer.output is y


def test_activation_traits_read_by_the_statistics():
    traits = {
        cls: (cls.kind, cls.counts_dead, cls.nonnegative, cls.saturation, cls.records_output)
        for cls in (Identity, ReLU, LeakyReLU, ELU, Tanh, Sigmoid, GELU)
    }
    assert traits == {
        Identity: ("identity", False, False, None, False),
        ReLU: ("relu", True, True, None, True),
        LeakyReLU: ("leaky_relu", True, False, None, True),
        ELU: ("elu", True, False, None, True),
        Tanh: ("tanh", False, False, (-0.96, 0.96), True),
        Sigmoid: ("sigmoid", False, False, (0.02, 0.98), True),
        GELU: ("gelu", False, False, None, True),
    }
    assert make_activation("linear").kind == "identity"
    assert make_activation("leaky_relu", alpha=0.3).alpha == 0.3


def test_make_activation_names_the_keyword_it_refuses():
    with pytest.raises(ValueError, match=r"^activation 'relu' does not accept \['alpha'\]: "):
        make_activation("relu", alpha=0.1)


# --- losses ------------------------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_cross_entropy_value_and_gradient_are_the_plain_formula():
    rng = np.random.default_rng(0)
    loss = SoftmaxCrossEntropy()
    for n in (5, 3, 5):  # a change of batch size must not reuse the cached row offsets
        z = rng.standard_normal((n, 4)) * 3
        y = rng.integers(0, 4, n)
        p = _softmax(z)
        value, grad = loss.value_and_grad(z.copy(), y)
        assert value == pytest.approx(-np.mean(np.log(p[np.arange(n), y])), rel=1e-13)
        np.testing.assert_allclose(grad, (p - np.eye(4)[y]) / n, rtol=1e-12, atol=1e-17)
        one_hot_value, one_hot_grad = loss.value_and_grad(z.copy(), np.eye(4)[y])
        assert one_hot_value == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(one_hot_grad, grad, rtol=1e-12, atol=1e-17)
        np.testing.assert_allclose(loss.predict_proba(z), p, rtol=1e-13)
        np.testing.assert_array_equal(loss.predict(z), z.argmax(axis=1))
    assert loss.value(z, y) == value


def test_sigmoid_bce_and_mse_values_gradients_and_predictions():
    z = np.array([[-3.0, 0.5], [2.0, 0.0], [0.0, -1.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    s = 1 / (1 + np.exp(-z))
    value, grad = SigmoidBCE().value_and_grad(z, y)
    assert value == pytest.approx(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)), rel=1e-13)
    np.testing.assert_allclose(grad, (s - y) / 6, rtol=1e-13)
    np.testing.assert_allclose(SigmoidBCE().predict_proba(z), s, rtol=1e-15)
    np.testing.assert_array_equal(SigmoidBCE().predict(z), [[0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(SigmoidBCE().predict(z[:, :1]), [0, 1, 0])  # 0 is class 0
    value, grad = MSE().value_and_grad(z, y)
    assert value == pytest.approx(np.mean((z - y) ** 2), rel=1e-15)
    np.testing.assert_allclose(grad, 2 * (z - y) / 6, rtol=1e-15)
    value, grad = MSE().value_and_grad(z[:, :1], y[:, 0])  # (N,) targets for one output
    np.testing.assert_allclose(grad, 2 * (z[:, :1] - y[:, :1]) / 3, rtol=1e-15)
    np.testing.assert_array_equal(MSE().predict(z[:, :1]), z[:, 0])
    assert MSE().predict(z) is z
    with pytest.raises(TypeError, match=r"^predict_proba is not defined for regression$"):
        MSE().predict_proba(z)


def test_loss_names_tasks_and_the_task_table():
    # The task → loss table is nnexp.build's AUTO_LOSS (the one place that states it).
    task_of = {LOSSES[name]: task for task, name in AUTO_LOSS.items()}
    assert [(c.name, task_of[c]) for c in (SoftmaxCrossEntropy, SigmoidBCE, MSE)] == [
        ("softmax_cross_entropy", "multiclass"),
        ("sigmoid_bce", "binary"),
        ("mse", "regression"),
    ]
    assert {
        "multiclass": SoftmaxCrossEntropy,
        "binary": SigmoidBCE,
        "regression": MSE,
    } == {task: LOSSES[name] for task, name in AUTO_LOSS.items()}
    base = Loss()
    assert base.check_targets(np.zeros(3), 1) is None
    for call in (lambda: base.value(X, X), lambda: base.predict(X), lambda: base.predict_proba(X)):
        with pytest.raises(NotImplementedError):
            call()


def test_check_targets_accepts_the_edges_and_names_what_is_wrong():
    sce, bce, mse = SoftmaxCrossEntropy(), SigmoidBCE(), MSE()
    sce.check_targets(np.array([0, 2]), 3)  # both ends of [0, C-1]
    sce.check_targets(np.array([], dtype=np.int64), 3)
    sce.check_targets(np.eye(3), 3)
    with pytest.raises(ValueError, match=r"^class labels must be integers, got dtype float64$"):
        sce.check_targets(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match=r"^class labels must lie in \[0, 2\], got \[0, 3\]$"):
        sce.check_targets(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"^class labels must lie in \[0, 2\], got \[-1, 1\]$"):
        sce.check_targets(np.array([-1, 1]), 3)
    with pytest.raises(ValueError, match=r"^one-hot targets must have 3 columns, got \(2, 4\)$"):
        sce.check_targets(np.zeros((2, 4)), 3)
    bce.check_targets(np.array([0.0, 1.0]), 1)  # both ends of [0, 1]
    bce.check_targets(np.zeros((2, 3)), 3)
    bce.check_targets(np.array([]), 1)
    for bad in ([-0.5, 1.0], [0.0, 1.5]):
        with pytest.raises(ValueError, match=r"^binary targets must lie in \[0, 1\]$"):
            bce.check_targets(np.array(bad), 1)
    with pytest.raises(ValueError, match=r"^targets have 2 columns, the network 3 outputs$"):
        bce.check_targets(np.zeros((4, 2)), 3)
    mse.check_targets(np.zeros(4), 1)
    mse.check_targets(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match=r"^targets have 1 columns, the network 2 outputs$"):
        mse.check_targets(np.zeros(4), 2)
    with pytest.raises(ValueError, match=r"^targets have 3 columns, the network 2 outputs$"):
        mse.check_targets(np.zeros((4, 3)), 2)


# --- initializers ------------------------------------------------------------------------------


INIT_FORMULAS = {
    # name: (normal std or None, uniform limit or None), for fan_in 6, fan_out 4
    "normal": (0.01, None),
    "uniform": (None, 0.05),
    "xavier_uniform": (None, math.sqrt(6 / 10)),
    "xavier_normal": (math.sqrt(2 / 10), None),
    "he_normal": (math.sqrt(2 / 6), None),
    "he_uniform": (None, math.sqrt(6 / 6)),
    "lecun_normal": (math.sqrt(1 / 6), None),
}


@pytest.mark.parametrize("name", sorted(INIT_FORMULAS))
def test_initializers_draw_exactly_their_formula(name):
    std, limit = INIT_FORMULAS[name]
    reference = np.random.default_rng(3)
    if std is not None:
        expected = reference.standard_normal((6, 4)) * std
    else:
        expected = reference.uniform(-limit, limit, (6, 4))
    got = initialize(name, (6, 4), np.random.default_rng(3), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-15)


def test_zeros_aliases_and_keyword_errors_of_the_initializers():
    assert not initialize("zeros", (3, 2), np.random.default_rng(0)).any()
    assert initialize("zeros", (3, 2), np.random.default_rng(0)).dtype == np.float32
    for alias, name in (("xavier", "xavier_uniform"), ("glorot", "xavier_uniform")):
        a = initialize(alias, (5, 3), np.random.default_rng(1))
        assert np.array_equal(a, initialize(name, (5, 3), np.random.default_rng(1)))
    for alias in ("he", "kaiming"):
        a = initialize(alias, (5, 3), np.random.default_rng(1))
        assert np.array_equal(a, initialize("he_normal", (5, 3), np.random.default_rng(1)))
    got = initialize("uniform", (5, 3), np.random.default_rng(1), np.float64, limit=2.0)
    np.testing.assert_array_equal(got, np.random.default_rng(1).uniform(-2.0, 2.0, (5, 3)))
    with pytest.raises(ValueError, match=r"^init 'he' does not accept \['std'\]: "):
        initialize("he", (2, 2), np.random.default_rng(0), std=1.0)


# --- layers ------------------------------------------------------------------------------------


def test_dense_forward_backward_and_its_defaults():
    rng = np.random.default_rng(0)
    layer = Dense(3, 2, dtype=np.float64)
    expected_w = initialize("he_normal", (3, 2), np.random.default_rng(0), np.float64)
    np.testing.assert_array_equal(layer.W.value, expected_w)  # he_normal from default_rng(0)
    assert layer.W.decay and not layer.b.decay
    assert (layer.W.name, layer.b.name) == ("W", "b")
    assert list(layer.parameters()) == [layer.W, layer.b]
    layer.b.value[:] = [0.5, -1.0]
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    expected = x @ layer.W.value + layer.b.value
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-15)
    np.testing.assert_allclose(layer.forward(x, training=True), expected, rtol=1e-15)
    dx = layer.backward(dy)
    np.testing.assert_allclose(layer.W.grad, x.T @ dy, rtol=1e-14)
    np.testing.assert_allclose(layer.b.grad, dy.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(dx, dy @ layer.W.value.T, rtol=1e-14)
    assert layer.backward(dy, need_dx=False) is None
    assert Dense(2, 2).W.value.dtype == np.float32
    custom = Dense(2, 3, init="normal", init_kwargs={"std": 2.0}, rng=np.random.default_rng(5))
    expected_w = (np.random.default_rng(5).standard_normal((2, 3)) * 2.0).astype(np.float32)
    np.testing.assert_array_equal(custom.W.value, expected_w)


def test_dropout_keeps_with_probability_1_minus_p_and_scales_by_its_inverse():
    x = np.full((4, 5), 2.0)
    drop = Dropout(0.25, rng=np.random.default_rng(7))
    keep = np.random.default_rng(7).random((4, 5)) >= 0.25
    y = drop.forward(x, training=True)
    np.testing.assert_allclose(y, np.where(keep, 2.0 / 0.75, 0.0), rtol=1e-15)
    np.testing.assert_allclose(drop.backward(np.ones((4, 5))), np.where(keep, 1 / 0.75, 0))
    again = drop.forward(x, training=True)
    assert not np.array_equal(again, y)  # a fresh mask per step...
    drop.frozen = True
    frozen = drop.forward(x, training=True)
    np.testing.assert_array_equal(drop.forward(x, training=True), frozen)  # ...unless frozen
    assert drop.forward(x) is x and drop.backward(x) is x  # inference: identity, no mask
    default = Dropout(0.5)
    np.testing.assert_array_equal(
        default.forward(np.ones((3, 3)), training=True),
        (np.random.default_rng(0).random((3, 3)) >= 0.5) * 2.0,
    )
    zero = Dropout(0.0)
    assert zero.forward(x, training=True) is x and zero.backward(x) is x
    assert Dropout.kind == "dropout"
    with pytest.raises(ValueError, match=r"^dropout p must be in \[0, 1\), got -0.1$"):
        Dropout(-0.1)


def test_dropout_with_a_frozen_mask_of_another_shape_draws_a_new_one():
    drop = Dropout(0.5, rng=np.random.default_rng(0))
    drop.frozen = True
    drop.forward(np.ones((2, 3)), training=True)
    y = drop.forward(np.ones((4, 3)), training=True)
    assert y.shape == (4, 3)


def test_batchnorm_training_step_backward_and_defaults_exactly():
    rng = np.random.default_rng(0)
    n = 6
    x = rng.standard_normal((n, 3)) * 2 + 1
    dy = rng.standard_normal((n, 3))
    bn = BatchNorm1d(3, dtype=np.float64)  # momentum 0.1, eps 1e-5
    assert (bn.gamma.name, bn.beta.name) == ("gamma", "beta")
    assert not bn.gamma.decay and not bn.beta.decay
    bn.gamma.value[:] = [1.0, 2.0, -0.5]
    bn.beta.value[:] = [0.0, 1.0, 3.0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mean) / np.sqrt(var + 1e-5)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, xhat * bn.gamma.value + bn.beta.value, rtol=1e-13)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean, rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-14)
    dx = bn.backward(dy)
    np.testing.assert_allclose(bn.gamma.grad, (dy * xhat).sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(bn.beta.grad, dy.sum(axis=0), rtol=1e-13)
    expected = (
        bn.gamma.value
        / np.sqrt(var + 1e-5)
        * (dy - dy.mean(axis=0) - xhat * (dy * xhat).mean(axis=0))
    )
    np.testing.assert_allclose(dx, expected, rtol=1e-11, atol=1e-14)
    assert bn.backward(dy, need_dx=False) is None
    inference = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5) * bn.gamma.value
    np.testing.assert_allclose(bn.forward(x), inference + bn.beta.value, rtol=1e-13)
    assert list(bn.parameters()) == [bn.gamma, bn.beta]
    assert bn.buffers() == {"running_mean": bn.running_mean, "running_var": bn.running_var}
    assert BatchNorm1d(2).running_var.dtype == np.float32
    assert BatchNorm1d.kind == "batchnorm"


def test_batchnorm_eps_and_momentum_are_settable_and_one_sample_is_refused():
    bn = BatchNorm1d(1, momentum=0.5, eps=0.25, dtype=np.float64)
    x = np.array([[1.0], [3.0]])
    np.testing.assert_allclose(
        bn.forward(x, training=True), [[-1 / math.sqrt(1.25)], [1 / math.sqrt(1.25)]]
    )
    np.testing.assert_allclose(bn.running_mean, [1.0])
    np.testing.assert_allclose(bn.running_var, [0.5 + 0.5 * 2])
    bn.forward(np.array([[1.0], [2.0]]), training=True)  # two samples are enough
    with pytest.raises(ValueError, match=r"^BatchNorm1d needs at least 2 samples per training"):
        bn.forward(np.array([[1.0]]), training=True)


# --- module, sequential, mlp -------------------------------------------------------------------


def test_parameter_and_module_basics():
    p = Parameter("dense_0/W", np.zeros((2, 3), dtype=np.float32))
    assert repr(p) == "Parameter('dense_0/W', shape=(2, 3), dtype=float32)"
    assert not p.decay and p.grad.shape == (2, 3) and not p.grad.any()
    grad = np.ones((2, 3), dtype=np.float32)
    assert Parameter("w", np.zeros((2, 3)), grad=grad).grad is grad
    m = Module()
    assert m.name == "module" and list(m.parameters()) == [] and m.buffers() == {}
    with pytest.raises(NotImplementedError):
        m.forward(X)
    with pytest.raises(NotImplementedError):
        m.backward(X)
    layer = Dense(2, 2)
    layer._rename("dense_7")
    assert [q.name for q in layer.parameters()] == ["dense_7/W", "dense_7/b"]
    layer._rename("dense_8")
    assert [q.name for q in layer.parameters()] == ["dense_8/W", "dense_8/b"]


def test_sequential_names_calls_and_skips_the_first_input_gradient():
    model = mlp(2, [3, 3], 1, activation="tanh", dtype=np.float64)
    assert repr(model) == "Sequential(dense_0, tanh_0, dense_1, tanh_1, dense_2)"
    assert len(model) == 5 and model[1] is model.modules[1] and model.kind == "sequential"
    x = np.array([[0.5, -1.0], [2.0, 0.0]])
    y = model(x)
    np.testing.assert_array_equal(y, model.forward(x))
    model.forward(x, training=True)
    dx = model.backward(np.ones((2, 1)))
    assert dx.shape == (2, 2)
    w_grad = model[0].W.grad.copy()
    assert model.backward(np.ones((2, 1)), need_dx=False) is None
    np.testing.assert_array_equal(model[0].W.grad, w_grad)  # still every parameter's gradient
    assert model.buffers() == {}


def test_mlp_builds_the_documented_stack_from_its_seed():
    model = mlp(3, [4], 2, seed=5, dtype=np.float64)
    assert [m.kind for m in model.modules] == ["dense", "relu", "dense"]
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(model[0].W.value, initialize("he_normal", (3, 4), rng, "f8"))
    np.testing.assert_array_equal(model[2].W.value, initialize("he_normal", (4, 2), rng, "f8"))
    assert all(m.inplace for m in model.modules if m.kind == "relu")
    leaky = mlp(2, [2], 1, activation="leaky_relu", activation_kwargs={"alpha": 0.3})
    assert leaky[1].alpha == 0.3
    assert mlp(2, [2], 1).modules[0].W.value.dtype == np.float32
    dropped = mlp(2, [3], 1, dropout=0.5, seed=2)
    drop = dropped[2]
    assert isinstance(drop, Dropout) and drop.p == 0.5
    np.testing.assert_array_equal(
        drop.rng.random(4), np.random.default_rng([2, 1]).random(4)
    )  # its own stream: dropout does not shift the initial weights
    np.testing.assert_array_equal(dropped[0].W.value, mlp(2, [3], 1, seed=2)[0].W.value)
    params = list(model.parameters())
    assert flat_view([p.value for p in params]) is not None  # packed
    assert flat_view([p.grad for p in params]) is not None
    mlp(1, [1], 1)  # widths of 1 are fine
    with pytest.raises(ValueError, match=r"^layer widths must be >= 1, got \[2, 0, 1\]$"):
        mlp(2, [0], 1)
    with pytest.raises(ValueError, match=r"^layer widths must be >= 1, got \[2, 3, 0\]$"):
        mlp(2, [3], 0)


def test_mlp_init_kwargs_reach_every_dense_layer():
    model = mlp(2, [3], 2, init="normal", init_kwargs={"std": 3.0}, seed=1, dtype=np.float64)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(model[0].W.value, rng.standard_normal((2, 3)) * 3.0)
    np.testing.assert_array_equal(model[2].W.value, rng.standard_normal((3, 2)) * 3.0)


# --- flat vector -------------------------------------------------------------------------------


def test_pack_lays_parameters_out_in_order_and_flat_view_finds_only_exact_tilings():
    a = Parameter("a", np.arange(6.0).reshape(2, 3))
    b = Parameter("b", np.array([10.0, 11.0]))
    a.grad[...] = 1.0
    pack([a, b])
    base = flat_view([a.value, b.value])
    np.testing.assert_array_equal(base, [0, 1, 2, 3, 4, 5, 10, 11])
    grads = flat_view([a.grad, b.grad])
    assert grads is not None and not grads.any()  # packed gradients start at zero
    assert a.value.shape == (2, 3) and b.value.shape == (2,)
    assert flat_view([b.value, a.value]) is None  # wrong order
    assert flat_view([a.value]) is None  # does not cover the buffer
    assert flat_view([]) is None
    assert flat_view([np.zeros(3)]) is None  # not a view
    assert flat_view([a.value[:, ::2], b.value]) is None  # not contiguous
    two_d = np.zeros((2, 4))
    assert flat_view([two_d[0], two_d[1]]) is None  # base not 1-D
    vec = np.zeros(8)
    assert flat_view([vec[:3], vec[4:]]) is None  # a gap
    assert flat_view([vec[:4], vec[4:]]) is vec
    assert flat_view([vec[::2][:2], vec[4:]]) is None  # strided
    pack([])  # nothing to do
    with pytest.raises(ValueError, match=r"^cannot pack parameters of several dtypes: "):
        pack([Parameter("x", np.zeros(2)), Parameter("y", np.zeros(2, dtype=np.float32))])


# --- gradients ---------------------------------------------------------------------------------


def test_norms_penalty_and_clipping_exactly():
    w = Parameter("w", np.array([[3.0, 4.0]]), decay=True)
    b = Parameter("b", np.array([12.0]))
    w.grad[...] = [[6.0, 8.0]]
    b.grad[...] = [0.0]
    assert norm(np.array([3.0, 4.0])) == 5.0
    assert grad_norms([w, b]) == [10.0, 0.0]
    assert param_norms([w, b]) == [5.0, 12.0]
    assert global_norm([3.0, 4.0]) == 5.0
    assert l2_penalty([w, b], 0.5) == 0.5 * 0.5 * 25
    add_l2_grad([w, b], 0.5)
    np.testing.assert_array_equal(w.grad, [[7.5, 10.0]])
    np.testing.assert_array_equal(b.grad, [0.0])
    w.grad[...] = [[6.0, 8.0]]
    assert clip_by_global_norm([w, b], 10.0) == 10.0  # at the limit: untouched
    np.testing.assert_array_equal(w.grad, [[6.0, 8.0]])
    assert clip_by_global_norm([w, b], 5.0, norms=[10.0, 0.0]) == 10.0
    np.testing.assert_allclose(w.grad, [[3.0, 4.0]], rtol=1e-12)
    w.grad[...] = [[-3.0, 0.5]]
    clip_by_value([w], 1.0)
    np.testing.assert_array_equal(w.grad, [[-1.0, 0.5]])
    w.grad[...] = [[3.0, -0.5]]
    clip_by_value([w], 1.0)
    np.testing.assert_array_equal(w.grad, [[1.0, -0.5]])


def test_clipping_scale_keeps_float32():
    w = Parameter("w", np.zeros(2, dtype=np.float32))
    w.grad[...] = [30.0, 40.0]
    clip_by_global_norm([w], 5.0)
    assert w.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad, [3.0, 4.0], rtol=1e-6)


# --- optimizers --------------------------------------------------------------------------------


def _one_param(value, grad):
    p = Parameter("w", np.array(value, dtype=np.float64), decay=True)
    p.grad[...] = grad
    return p


def test_optimizer_defaults_are_the_documented_ones():
    g = np.array([1e-8, -2e-8, 0.5])  # eps matters at these sizes
    p = _one_param([1.0, 2.0, 3.0], g)
    opt = RMSprop([p], lr=0.1)
    assert (opt.rho, opt.eps) == (0.9, 1e-8)
    opt.step()
    s = 0.1 * g**2
    np.testing.assert_allclose(p.value, [1.0, 2.0, 3.0] - 0.1 * g / (np.sqrt(s) + 1e-8))
    p = _one_param([1.0, 2.0, 3.0], g)
    opt = Adam([p], lr=0.1)
    assert (opt.beta1, opt.beta2, opt.eps) == (0.9, 0.999, 1e-8)
    for _ in range(2):
        opt.step()
    m = 0.1 * g * 0.9 + 0.1 * g
    v = 0.001 * g**2 * 0.999 + 0.001 * g**2
    step1 = 0.1 * (g / (np.abs(g) + 1e-8))
    step2 = 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(p.value, [1.0, 2.0, 3.0] - step1 - step2, rtol=1e-12)
    p = _one_param([1.0, 2.0, 3.0], 0.0)
    opt = AdamW([p], lr=0.1)
    assert opt.weight_decay == 0.01
    opt.step()
    np.testing.assert_allclose(p.value, np.array([1.0, 2.0, 3.0]) * (1 - 0.1 * 0.01))
    sgd = SGD([_one_param([1.0], 1.0)], lr=0.5)
    assert (sgd.momentum, sgd.nesterov, sgd.slots) == (0.0, False, ())
    assert SGD([_one_param([1.0], 1.0)], lr=0.5, momentum=0.5).slots == ("velocity",)


def test_adamw_decays_weights_only_and_not_without_weight_decay():
    w = _one_param([2.0], 0.0)
    b = Parameter("b", np.array([2.0]))
    AdamW([w, b], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_array_equal(w.value, [2.0 * (1 - 0.05)])
    np.testing.assert_array_equal(b.value, [2.0])
    w = _one_param([2.0], 0.0)
    AdamW([w], lr=0.5, weight_decay=0.0).step()
    np.testing.assert_array_equal(w.value, [2.0])


def test_sgd_with_momentum_and_nesterov_step_by_step():
    p = _one_param([0.0], 1.0)
    opt = SGD([p], lr=0.1, momentum=0.5)
    opt.step()
    opt.step()
    np.testing.assert_allclose(p.value, [-0.1 - 0.15])  # v = 1, then 1.5
    p = _one_param([0.0], 1.0)
    opt = SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    opt.step()
    opt.step()
    np.testing.assert_allclose(p.value, [-0.1 * 1.5 - 0.1 * 1.75])  # g + mu v


def test_optimizer_state_dict_and_its_refusals():
    p = _one_param([1.0, 2.0], [0.5, 0.5])
    opt = Adam([p], lr=0.25)
    opt.step()
    state = opt.state_dict()
    assert set(state) == {"t", "lr", "w/m", "w/v"}
    assert state["t"] == 1 and state["t"].dtype == np.int64 and state["lr"] == 0.25
    fresh = Adam([_one_param([1.0, 2.0], 0.0)], lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.t == 1 and fresh.lr == 0.25 and isinstance(fresh.lr, float)
    np.testing.assert_array_equal(fresh.state["w"]["m"], opt.state["w"]["m"])
    with pytest.raises(
        ValueError, match=r"^optimizer state mismatch: missing \['w/v'\], unexpected \['x'\]$"
    ):
        fresh.load_state_dict({"t": state["t"], "lr": state["lr"], "w/m": state["w/m"], "x": 1})
    wrong = dict(state, **{"w/m": state["w/m"].astype(np.float32)})
    with pytest.raises(
        ValueError, match=r"^optimizer state w/m: expected \(2,\) float64, got \(2,\) float32$"
    ):
        fresh.load_state_dict(wrong)
    with pytest.raises(ValueError, match=r"^optimizer got no parameters$"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match=r"^learning rate must be > 0, got -1$"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match=r"^momentum must be in \[0, 1\), got 1.0$"):
        SGD([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"^momentum must be in \[0, 1\), got -0.1$"):
        SGD([p], lr=0.1, momentum=-0.1)
    with pytest.raises(ValueError, match=r"^nesterov needs momentum > 0$"):
        SGD([p], lr=0.1, nesterov=True)
    for key in ("beta1", "beta2"):
        for beta in (1.0, -0.5):
            with pytest.raises(ValueError, match=rf"^{key} must be in \[0, 1\), got {beta}$"):
                Adam([p], lr=0.1, **{key: beta})
    Adam([p], lr=0.1, beta1=0.0, beta2=0.0)  # 0 is allowed
    SGD([p], lr=1e-300)
    with pytest.raises(NotImplementedError):
        Optimizer([p], lr=0.1).step()


def test_chunks_cover_the_vector_in_near_equal_aligned_pieces():
    assert _chunks(10, 100) == [(0, 10)]
    assert _chunks(100, 100) == [(0, 100)]
    assert _chunks(101, 100) == [(0, 64), (64, 101)]
    assert _chunks(300, 100) == [(0, 112), (112, 224), (224, 300)]
    assert _chunks(64, 16) == [(0, 16), (16, 32), (32, 48), (48, 64)]


def test_packed_state_arrays_are_views_of_the_parameters_slices():
    model = mlp(2, [3], 1, dtype=np.float64)
    opt = Adam(list(model.parameters()), lr=0.1)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    for p in model.parameters():
        assert opt.state[p.name]["m"].shape == p.value.shape
        np.testing.assert_allclose(opt.state[p.name]["m"], 0.1)
    assert sorted(opt.state) == sorted(p.name for p in model.parameters())


# --- schedules ---------------------------------------------------------------------------------


def test_schedule_defaults_and_formulas_exactly():
    step = SCHEDULES["step"](2.0)  # gamma 0.95 every 10 epochs
    assert [step(e) for e in (0, 9, 10, 19, 20)] == [
        2.0,
        2.0,
        2.0 * 0.95,
        2.0 * 0.95,
        2.0 * 0.95**2,
    ]
    assert SCHEDULES["step"](1.0, gamma=0.5, step_size=1)(3) == 0.125
    exp = SCHEDULES["exponential"](2.0)  # gamma 0.97
    assert [exp(0), exp(2)] == [2.0, 2.0 * 0.97**2]
    cos = SCHEDULES["cosine"](2.0, total=4)  # down to min_lr 0
    assert [cos(0), cos(2), cos(4), cos(9)] == pytest.approx([2.0, 1.0, 0.0, 0.0], abs=1e-15)
    assert cos(1) == pytest.approx(1 + math.cos(math.pi / 4), rel=1e-15)
    warm = SCHEDULES["warmup_cosine"](1.0, total=15)  # warmup 5, then cosine over 10
    assert [warm(e) for e in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert warm(10) == pytest.approx(0.5) and warm(15) == pytest.approx(0.0, abs=1e-15)
    short = SCHEDULES["warmup_cosine"](1.0, total=3, warmup=5)  # cosine over max(-2, 1) = 1
    assert short(5) == 1.0 and short(6) == pytest.approx(0.0, abs=1e-15)
    assert SCHEDULES["warmup_cosine"](1.0, total=10, warmup=2, min_lr=0.5)(10) == 0.5
    base = Schedule(0.5)
    assert base.base_lr == 0.5 and base.state_dict() == {}
    assert base.observe(1.0) is None and base.load_state_dict({}) is None
    with pytest.raises(NotImplementedError):
        base(0)


def test_schedule_refusals_name_the_value():
    with pytest.raises(ValueError, match=r"^learning rate must be > 0, got 0$"):
        SCHEDULES["constant"](0)
    with pytest.raises(ValueError, match=r"^step_size must be >= 1, got 0$"):
        SCHEDULES["step"](1.0, step_size=0)
    SCHEDULES["step"](1.0, step_size=1)
    with pytest.raises(ValueError, match=r"^cosine schedule needs total >= 1 epochs, got 0$"):
        SCHEDULES["cosine"](1.0, total=0)
    SCHEDULES["cosine"](1.0, total=1)


# --- statistics --------------------------------------------------------------------------------


def _named(layer, name):
    layer.name = name
    return layer


def _activation_stats(layer):
    """What the trainer logs for `layer` after one sampled step: StepStats' summary of it."""
    stats = StepStats([], [layer], ("activations",))
    stats.sample([], 0.0)
    return stats.summary()


def test_activation_statistics_exactly():
    tanh = _named(Tanh(), "tanh_0")
    tanh.forward(np.arctanh(np.array([[-0.97, -0.96, 0.0, 0.96, 0.97, 0.5]])), training=True)
    stats = _activation_stats(tanh)
    assert list(stats) == ["act/tanh_0/mean", "act/tanh_0/std", "act/tanh_0/sat_frac"]
    assert stats["act/tanh_0/sat_frac"] == pytest.approx(2 / 6)  # strictly beyond ±0.96
    y = tanh.output
    assert stats["act/tanh_0/mean"] == pytest.approx(y.mean(), rel=1e-12)
    assert stats["act/tanh_0/std"] == pytest.approx(y.std(), rel=1e-12)
    sig = _named(Sigmoid(), "sigmoid_0")
    sig.forward(np.array([[-5.0, -3.0, 0.0, 3.0, 5.0]]), training=True)  # 0.0067 .047 .5 .95 .993
    assert _activation_stats(sig)["act/sigmoid_0/sat_frac"] == pytest.approx(2 / 5)
    relu = _named(ReLU(), "relu_0")
    relu.forward(np.array([[1.0, 0.0, -1.0], [2.0, -1.0, 0.0]]), training=True)
    assert activation_values(relu, relu.output) == pytest.approx(
        [0.5, math.sqrt(5 / 6 - 0.25), 2 / 3]
    )
    leaky = _named(LeakyReLU(), "leaky_relu_0")
    leaky.forward(np.array([[1.0, 0.0, -1.0], [2.0, -1.0, 0.0]]), training=True)
    assert _activation_stats(leaky)["act/leaky_relu_0/dead_frac"] == pytest.approx(2 / 3)
    constant = _named(Identity(), "identity_0")
    assert _activation_stats(constant) == {}  # it records no output
    flat = _named(ReLU(), "relu_1")
    flat.forward(np.full((2, 2), 3.0), training=True)
    assert activation_values(flat, flat.output) == [3.0, 0.0, 0.0]  # variance clamped at 0
    assert activation_keys(_named(GELU(), "gelu_0")) == ["act/gelu_0/mean", "act/gelu_0/std"]


def test_gradient_norms_update_ratios_and_step_stats_exactly():
    w = Parameter("dense_0/W", np.array([[3.0, 4.0]]), decay=True)
    b = Parameter("dense_0/b", np.array([1.0]))
    w.grad[...] = [[0.6, 0.8]]
    b.grad[...] = [2.0]
    norms = grad_norms([w, b])  # what the trainer passes to StepStats.sample
    assert norms == [1.0, 2.0] and global_norm(norms) == math.sqrt(5)
    assert global_norm([3.0, 4.0]) == 5.0
    one = StepStats([w, b], [], ("update_ratio",))
    one.sample([1.0, 2.0], 0.5)  # the weight norm (5) computed by StepStats
    assert one.summary() == {"update_ratio/dense_0": 0.5 / (5 + 1e-12)}
    assert update_ratio(1.0, 2.0, 0.0) == 2e12  # a zero weight norm does not divide by zero
    relu = _named(ReLU(), "relu_0")
    stats = StepStats([w, b], [relu], ("grad_norm",))
    assert stats.grad_keys == ["grad_norm/dense_0/W", "grad_norm/dense_0/b", "grad_norm/global"]
    assert stats.other_keys == [] and bool(stats)
    stats.sample([1.0, 2.0], 0.5)
    stats.sample([3.0, 0.0], 0.5)
    assert stats.summary() == {
        "grad_norm/dense_0/W/mean": 2.0,
        "grad_norm/dense_0/W/max": 3.0,
        "grad_norm/dense_0/b/mean": 1.0,
        "grad_norm/dense_0/b/max": 2.0,
        "grad_norm/global/mean": (math.sqrt(5) + 3.0) / 2,
        "grad_norm/global/max": 3.0,
    }
    ratios = StepStats([w, b], [relu], ("update_ratio",))
    assert ratios.grad_keys == [] and ratios.other_keys == ["update_ratio/dense_0"]
    assert ratios.summary() == {}  # nothing sampled yet
    ratios.sample([1.0, 2.0], 0.5, value_norms=[10.0, 1.0])
    assert ratios.summary() == {"update_ratio/dense_0": 0.5 / (10 + 1e-12)}
    acts = StepStats([w, b], [relu, _named(Identity(), "identity_0")], ("activations",))
    assert acts.other_keys == ["act/relu_0/mean", "act/relu_0/std", "act/relu_0/dead_frac"]
    relu.forward(np.array([[1.0, -1.0], [3.0, -2.0]]), training=True)
    acts.sample([0.0, 0.0], 0.1)
    assert acts.summary() == pytest.approx(
        {
            "act/relu_0/mean": 1.0,
            "act/relu_0/std": math.sqrt(2.5 - 1.0),
            "act/relu_0/dead_frac": 0.5,
        }
    )
    assert not StepStats([w, b], [relu], ("nothing",))


def test_step_stats_weight_norms_and_the_outputs_epoch_range_after_other_statistics():
    w = Parameter("block_1/dense_0/W", np.array([[3.0, 4.0]]), decay=True)
    b = Parameter("block_1/dense_0/b", np.array([1.0]))
    want = ("grad_norm", "update_ratio", "weight_norm", "output")
    stats = StepStats([w, b], [], want, classes=2)  # output/min sits past nine other columns
    assert stats.other_keys == [
        "update_ratio/block_1/dense_0", "weight_norm/block_1/dense_0",
        "output/min", "output/max", "output/mean", "output/class_0", "output/class_1",
    ]  # fmt: skip
    stats.sample([1.0, 2.0], 0.5, [5.0, 1.0], np.array([[-1.0], [2.0]]), np.array([0, 1]))
    stats.sample([1.0, 2.0], 0.5, [10.0, 1.0], np.array([[-3.0], [1.0]]), np.array([1, 1]))
    summary = stats.summary()
    assert summary["weight_norm/block_1/dense_0"] == 7.5  # the mean over the steps
    assert summary["output/min"] == -3.0 and summary["output/max"] == 2.0  # the epoch's range
    assert summary["output/mean"] == -0.25 and summary["output/class_1"] == 0.75
    assert StepStats([w, b], [], ("output",)).other_keys[-1] == "output/mean"  # no classes


def test_step_stats_keep_a_nan_visible_in_the_maximum():
    w = Parameter("dense_0/W", np.ones((1, 1)), decay=True)
    stats = StepStats([w], [], ("grad_norm",))
    stats.sample([float("nan")], 0.1)
    stats.sample([1.0], 0.1)
    assert math.isnan(stats.summary()["grad_norm/dense_0/W/max"])


# --- registry, workspace, gradcheck ------------------------------------------------------------


def test_registry_lookup_register_and_the_unhashable_name():
    reg: Registry[int] = Registry("thing", {"b": 2})
    assert reg.what == "thing" and reg.lookup("b") == 2

    @reg.register("a", "alias")
    def one():
        return 1

    assert reg["a"] is one and reg["alias"] is one
    with pytest.raises(ValueError, match=r"^unknown thing 'c'; allowed: a, alias, b$"):
        reg.lookup("c")
    with pytest.raises(ValueError, match=r"^unknown thing \['a'\]; allowed: a, alias, b$"):
        reg.lookup(["a"])
    assert Registry("x") == {}


def test_workspace_reuses_an_array_per_shape_and_dtype():
    ws = Workspace()
    a = ws.get((2, 3), np.float32)
    assert ws.get((2, 3), np.float32) is a
    b = ws.get((2, 3), np.float64)
    assert b is not a and b.dtype == np.float64
    assert ws.get((3, 2), np.float64).shape == (3, 2)


def test_gradcheck_is_exact_on_a_cubic_and_refuses_float32():
    """f(w) = mean((w x)^3)/..: the 4th-order stencil is exact on cubics, so the analytic and
    numeric gradients agree to rounding; a gradient off by 1% is reported as 1e-2."""
    model = Sequential([Dense(1, 1, init="zeros", dtype=np.float64)])
    model[0].W.value[...] = 0.7
    model[0].b.value[...] = 0.2
    x, y = np.array([[1.0], [-2.0], [0.5]]), np.array([[0.1], [0.3], [-0.2]])
    errors = gradcheck(model, MSE(), x, y)
    assert set(errors) == {"dense_0/W", "dense_0/b", "input"}
    assert max(errors.values()) < 1e-9
    errors = gradcheck(model, MSE(), x, y, l2=0.5)
    assert max(errors.values()) < 1e-9
    np.testing.assert_array_equal(model[0].W.value, [[0.7]])  # weights put back exactly
    original = model[0].backward

    def off(dy, need_dx=True):
        dx = original(dy, need_dx)
        model[0].b.grad *= 1.01
        return dx

    model[0].backward = off
    assert gradcheck(model, MSE(), x, y)["dense_0/b"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    single = Sequential([Dense(1, 1, dtype=np.float32)])
    with pytest.raises(TypeError, match=r"^gradcheck needs float64 inputs and parameters$"):
        gradcheck(single, MSE(), x.astype(np.float32), y)
    with pytest.raises(TypeError, match=r"^gradcheck needs float64 inputs and parameters$"):
        gradcheck(model, MSE(), x.astype(np.float32), y)


# --- found by the mutation run -----------------------------------------------------------------


def test_calling_a_model_is_inference():
    model = mlp(3, [8], 2, dropout=0.5, batch_norm=True, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 3))
    np.testing.assert_array_equal(model(x), model.forward(x, training=False))
    assert not np.array_equal(model(x), model.forward(x, training=True))


def test_clipping_never_leaves_a_norm_above_the_limit():
    w = Parameter("w", np.zeros(2))
    w.grad[...] = [3e-7, 4e-7]  # norm 5e-7: the 1e-12 guard is not negligible here
    total = clip_by_global_norm([w], 2.5e-7)
    assert total == pytest.approx(5e-7, rel=1e-15)
    assert norm(w.grad) <= 2.5e-7
    np.testing.assert_allclose(w.grad, [1.5e-7, 2e-7], rtol=1e-5)


def test_statistics_refuse_norms_that_do_not_match_the_parameters():
    w = Parameter("dense_0/W", np.ones((2, 2)), decay=True)
    b = Parameter("dense_0/b", np.ones(2))
    with pytest.raises(ValueError):
        StepStats([w, b], [], ("grad_norm",)).sample([1.0], 0.1)
    with pytest.raises(ValueError):
        StepStats([w, b], [], ("grad_norm", "update_ratio")).sample([1.0], 0.1)


def test_softmax_probabilities_are_shifted_per_row_so_no_row_underflows():
    logits = np.array([[1000.0, 0.0], [0.0, 1.0], [-1000.0, -999.0]])
    p = SoftmaxCrossEntropy().predict_proba(logits)
    e = math.exp(1.0)
    expected = [[1.0, 0.0], [1 / (1 + e), e / (1 + e)], [1 / (1 + e), e / (1 + e)]]
    np.testing.assert_allclose(p, expected, rtol=1e-15, atol=1e-300)


def test_adamw_passes_the_adam_hyperparameters_on():
    p = _one_param([1.0], 0.5)
    opt = AdamW([p], lr=0.1, weight_decay=0.0, beta1=0.5, beta2=0.75, eps=0.25)
    assert (opt.beta1, opt.beta2, opt.eps) == (0.5, 0.75, 0.25)
    opt.step()
    m_hat, v_hat = 0.5 * 0.5 / 0.5, 0.25 * 0.25 / 0.25
    np.testing.assert_allclose(p.value, [1.0 - 0.1 * m_hat / (math.sqrt(v_hat) + 0.25)])


def test_plateau_defaults_counting_min_delta_floor_and_state():
    plateau = SCHEDULES["plateau"](1.0)  # factor 0.5, patience 5, min_delta 1e-4, min_lr 1e-6
    assert (plateau.factor, plateau.patience, plateau.min_delta, plateau.min_lr) == (
        0.5, 5, 1e-4, 1e-6,
    )  # fmt: skip
    plateau.observe(1.0)
    for _ in range(5):  # five epochs without an improvement of more than 1e-4: patience holds
        plateau.observe(1.0 - 0.5e-4)
    assert plateau(0) == 1.0 and plateau.bad_epochs == 5
    plateau.observe(1.0)  # the sixth: the rate halves and the count starts over
    assert plateau(0) == 0.5 and plateau.bad_epochs == 0 and plateau.best == 1.0
    plateau.observe(0.5)  # better by more than min_delta
    assert plateau.best == 0.5 and plateau.bad_epochs == 0
    assert plateau.state_dict() == {"lr": 0.5, "best": 0.5, "bad_epochs": 0}
    floor = SCHEDULES["plateau"](1e-6 * 1.5, patience=0)
    floor.observe(1.0)
    floor.observe(1.0)
    assert floor(0) == 1e-6  # never below min_lr
    floor.observe(1.0)
    assert floor(0) == 1e-6
    maximize = SCHEDULES["plateau"](1.0, patience=0, min_delta=0.0, mode="max")
    maximize.observe(0.5)
    maximize.observe(0.6)  # higher is better: an improvement
    assert maximize(0) == 1.0
    maximize.observe(0.6)
    assert maximize(0) == 0.5
    assert SCHEDULES["plateau"](2.0).state_dict() == {"lr": 2.0, "best": math.inf, "bad_epochs": 0}
    strict = SCHEDULES["plateau"](1.0, patience=5, min_delta=0.1, mode="max")
    strict.observe(0.5)
    strict.observe(0.58)  # higher, but not by more than min_delta
    assert strict.bad_epochs == 1
    strict.observe(0.61)  # by more than 0.1
    assert strict.bad_epochs == 0
    restored = SCHEDULES["plateau"](1.0)
    restored.load_state_dict({"lr": np.float64(0.25), "best": np.float64(0.1), "bad_epochs": 3})
    assert (restored(7), restored.best, restored.bad_epochs) == (0.25, 0.1, 3)
    assert type(restored.lr) is float and type(restored.bad_epochs) is int
    for factor in (0.0, 1.0):
        with pytest.raises(
            ValueError, match=rf"^plateau factor must be in \(0, 1\), got {factor}$"
        ):
            SCHEDULES["plateau"](1.0, factor=factor)
    with pytest.raises(ValueError, match=r"^plateau mode must be min or max, got 'up'$"):
        SCHEDULES["plateau"](1.0, mode="up")


def test_binary_predictions_are_integer_labels():
    labels = SigmoidBCE().predict(np.array([[-1.0], [2.0]]))
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1]
    assert SigmoidBCE().predict(np.array([[-1.0, 2.0]])).dtype == np.int64


def test_an_optimizer_of_packed_values_but_separate_gradients_updates_each_parameter():
    model = mlp(2, [3], 1, dtype=np.float64)
    params = list(model.parameters())
    for p in params:
        p.grad = np.ones_like(p.value)  # gradients no longer tile one vector
    before = [p.value.copy() for p in params]
    SGD(params, lr=0.5).step()
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.value, b - 0.5)


def test_step_stats_keep_the_activations_sampled_after_the_forward_pass():
    model = mlp(2, [3], 1, activation="relu", dtype=np.float64)
    params = list(model.parameters())
    relu = [m for m in model.modules if m.kind == "relu"]
    stats = StepStats(params, relu, ("activations",))
    model.forward(np.ones((4, 2)), training=True)
    first = relu[0].output.mean()
    stats.sample_activations()
    model.forward(-5 * np.ones((4, 2)), training=True)  # e.g. a later pass of the same step
    assert relu[0].output.mean() != pytest.approx(first)
    stats.sample([1.0] * len(params), 0.1)
    assert stats.summary()["act/relu_0/mean"] == pytest.approx(first)


def test_gradcheck_checks_no_l2_unless_asked():
    model = Sequential([Dense(2, 1, dtype=np.float64, rng=np.random.default_rng(1))])
    x, y = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([[0.1], [0.3]])
    assert gradcheck(model, MSE(), x, y) == gradcheck(model, MSE(), x, y, l2=0.0)


def test_dropout_draws_its_mask_in_the_data_dtype_and_keeps_a_draw_equal_to_p():
    x = np.ones((1, 8), dtype=np.float32)
    draws = np.random.default_rng(3).random((1, 8), dtype=np.float32)
    p = float(draws[0, 0])  # a unit whose draw is exactly p is kept: P(U >= p) = 1 - p
    y = Dropout(p, rng=np.random.default_rng(3)).forward(x, training=True)
    expected = (draws >= np.float32(p)) * np.float32(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y, expected)
    assert y[0, 0] > 0


def test_inference_returns_fresh_arrays_a_caller_may_keep():
    layer = Dense(2, 2, dtype=np.float64)
    a = layer.forward(np.ones((3, 2)))
    kept = a.copy()
    b = layer.forward(np.zeros((3, 2)))
    assert b is not a and not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, kept)  # not overwritten by the next call


def test_a_residual_projection_is_a_decayed_weight_drawn_from_the_given_rng_in_the_dtype():
    from nnexp.nn.residual import Residual, Skip

    def projection(seed: int, dtype=np.float32) -> np.ndarray:
        block = Residual(Skip(), 3, 4, init="xavier_normal", rng=np.random.default_rng(seed),
                         dtype=dtype)  # fmt: skip
        assert block.P is not None and block.P.decay is True  # L2 and statistics see it
        assert block.P.value.shape == (3, 4) and block.P.value.dtype == dtype
        return block.P.value

    assert not np.array_equal(projection(1), projection(2))  # the rng given, not a fixed one
    assert np.array_equal(projection(1), projection(1))
    assert projection(1, np.float64).dtype == np.float64
    assert Residual(Skip(), 4, 4).P is None  # equal widths: the identity, no parameter


def test_a_residual_projections_defaults_he_normal_from_seed_0_and_its_init_kwargs():
    from nnexp.nn.residual import Residual, Skip

    default = Residual(Skip(), 3, 4).P.value
    expected = initialize("he_normal", (3, 4), np.random.default_rng(0), np.float32)
    np.testing.assert_array_equal(default, expected)
    small = Residual(Skip(), 3, 4, init="normal", init_kwargs={"std": 1e-6}).P.value
    assert np.abs(small).max() < 1e-5  # the std given, not normal's 0.01


def test_mlp_gives_a_projection_its_init_kwargs_and_the_models_rng_after_the_dense_layer():
    model = mlp(3, [4], 2, init="normal", init_kwargs={"std": 0.5}, residual=True, seed=7)
    (projection,) = [m for m in model.modules if m.kind == "residual"]
    rng = np.random.default_rng(7)
    dense = initialize("normal", (3, 4), rng, np.float32, std=0.5)  # drawn first
    np.testing.assert_array_equal(model.modules[1].W.value, dense)
    expected = initialize("normal", (3, 4), rng, np.float32, std=0.5)
    np.testing.assert_array_equal(projection.P.value, expected)
    for a, b in zip(mlp(3, [4], 2).parameters(), mlp(3, [4], 2, seed=0).parameters(), strict=True):
        np.testing.assert_array_equal(a.value, b.value)  # the default seed is 0


def test_a_skip_called_alone_returns_the_block_and_shortcut_gradients_summed():
    from nnexp.nn.residual import Skip

    skip = Skip()
    skip.shortcut_grad = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(skip.backward(np.array([[3.0, 4.0]])), [[4.0, 6.0]])


def test_a_residual_sum_in_evaluation_is_fresh_and_in_training_keeps_the_dtype():
    from nnexp.nn.residual import Residual, Skip

    skip = Skip()
    block = Residual(skip, 2, 2)
    x = np.ones((2, 2), dtype=np.float32)
    skip.forward(x)
    first = block.forward(x)
    kept = first.copy()
    block.forward(x * 5)
    np.testing.assert_array_equal(first, kept)  # a later call does not overwrite it
    assert block.forward(x, training=True).dtype == np.float32


def test_the_loss_scaler_halves_on_overflow_doubles_after_clean_steps_and_keeps_its_state():
    from nnexp.nn.amp import LossScaler

    scaler = LossScaler("dynamic", growth_interval=3)
    start = scaler.scale
    assert (scaler.clean_steps, scaler.skipped_steps) == (0, 0)
    assert scaler.skip() is True and scaler.scale == start / 2 and scaler.skipped_steps == 1
    scaler.clean(), scaler.clean()
    assert scaler.scale == start / 2 and scaler.clean_steps == 2
    scaler.clean()  # the third clean step in a row: doubled, the count starts over
    assert scaler.scale == start and scaler.clean_steps == 0
    scaler.clean()
    copy = LossScaler("dynamic", growth_interval=3)
    copy.load_state_dict(scaler.state_dict())
    assert (copy.scale, copy.clean_steps, copy.skipped_steps) == (start, 1, 1)
    static = LossScaler("8")
    static.clean()
    assert static.skip() is False and static.scale == 8.0  # static: an overflow is divergence
    assert LossScaler("none").skip() is False


def test_output_statistics_are_numpys_min_max_and_mean_in_every_dtype():
    from nnexp.nn.stats import output_values

    rng = np.random.default_rng(4)
    for dtype in (np.float16, np.float32, np.float64):
        logits = (rng.standard_normal((97, 3)) * 3 + 0.1).astype(dtype)
        expected = [float(logits.min()), float(logits.max()), float(logits.mean())]
        assert output_values(logits, None, 0) == expected
    # float16 sums in float32, as NumPy's mean does: 2049 is not a float16 (it rounds to 2048)
    halves = np.array([[2048.0, 1.0, 0.0]], np.float16)
    assert output_values(halves, None, 0) == [0.0, 2048.0, 683.0] and halves.mean() == 683.0


def test_the_predicted_class_histogram_takes_a_column_and_needs_the_predictions():
    from nnexp.nn.stats import output_values

    logits = np.zeros((4, 1), np.float32)
    column = np.array([[1], [0], [1], [1]])  # (batch, 1), as a binary model predicts
    assert output_values(logits, column, 2) == [0.0, 0.0, 0.0, 0.25, 0.75]
    with pytest.raises(
        AssertionError, match=r"^a classifier's output statistics need its predictions$"
    ):
        output_values(logits, None, 2)
    w = Parameter("dense_0/W", np.ones((2, 2)))
    with pytest.raises(AssertionError, match=r"^the output statistics need the step's logits$"):
        StepStats([w], [], ("output",), classes=0).sample([1.0], 0.1)


def test_the_optimizers_default_learning_rates():
    params = [Parameter("dense_0/W", np.ones((2, 2)))]
    assert SGD(params).lr == 0.1
    assert RMSprop(params).lr == 0.001 and Adam(params).lr == 0.001
