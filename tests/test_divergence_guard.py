"""The divergence guard: every NaN/Inf check of training raises NonFiniteError with the full
message (what, where, the usual fixes), and the trainer applies nan_policy in one place. The
paths tests/test_nan.py does not reach: a non-finite loss, clipping by value and by norm, a
gradient norm that overflows with finite elements, the test metrics under both policies."""

from __future__ import annotations

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import MSE, SGD, mlp
from nnexp.nn.schedules import Constant
from nnexp.train import NonFiniteError, Trainer, TrainSettings
from nnexp.train.divergence import DivergenceGuard
from nnexp.train.trainer import RESULTS

FIXES = (
    "(lr=0.01). Try a lower learning rate (optimizer.lr=0.001), gradient clipping "
    "(trainer.grad_clip.norm=1.0), or standardized inputs (dataset.standardize=true)"
)


def _data(huge_train_row: int | None = None, test_scale: float = 1.0) -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)).astype(np.float32)
    X_train = X[:64].copy()
    if huge_train_row is not None:
        X_train[huge_train_row] *= np.float32(1e30)
    X_test = X[80:] * np.float32(test_scale)
    return Splits(X_train, y[:64], X[64:80], y[64:80], X_test, y[80:], task="regression")


def _trainer(data: Splits, policy: str = "raise", **settings) -> Trainer:
    model = mlp(3, [4], 1, activation="identity", seed=1)
    opt = SGD(list(model.parameters()), lr=0.01)
    settings = {"stats": ()} | settings
    s = TrainSettings(epochs=3, batch_size=16, nan_policy=policy, **settings)
    return Trainer(model, MSE(), opt, Constant(0.01), data, s)


def _poison_gradient(trainer: Trainer, value: float, step: int = 6) -> None:
    """From `step` on, the second dense layer's weight gradient holds `value`."""
    dense = trainer.model.modules[2]
    backward, calls = dense.backward, [0]

    def poisoned(dy, need_dx=True):
        dx = backward(dy, need_dx)
        calls[0] += 1
        if calls[0] >= step:
            dense.W.grad.flat[1] = value
        return dx

    dense.backward = poisoned


def _message(trainer: Trainer) -> str:
    with pytest.raises(NonFiniteError) as err:
        trainer.fit()
    return str(err.value)


def test_a_non_finite_loss_is_named_by_a_replay_of_the_forward_pass():
    message = _message(_trainer(_data(huge_train_row=40)))
    # A row of the batch is ~1e30: the input, not the learning rate, is blamed.
    assert message == (
        "training diverged at epoch 1, step 2 (batch 2 of 4): the loss is inf at the loss "
        "computation (outputs finite but up to 6.49e+29) (lr=0.01). Likely cause: the input is "
        "not standardized — the batch holds values up to 8.44e+29 (standardized ones stay "
        "within ~10). Set dataset.standardize=true (and trainer.grad_clip.norm=1.0 as a "
        "safety net)"
    )


def test_huge_initial_weights_are_blamed_not_the_learning_rate():
    """Issue 15: N(0, 1e30²) weights diverge at step 1; the advice named the learning rate."""
    model = mlp(3, [4], 1, activation="relu", init="normal", init_kwargs={"std": 1e30}, seed=1)
    opt = SGD(list(model.parameters()), lr=0.01)
    s = TrainSettings(epochs=3, batch_size=16, stats=())
    trainer = Trainer(model, MSE(), opt, Constant(0.01), _data(), s)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit()
    message = str(err.value)
    assert err.value.cause == "initialization"
    assert "step 1 (batch 1 of 4)" in message
    assert "Likely cause: the initialization, not the learning rate" in message
    assert "model.init=he" in message and "optimizer.lr=" not in message


def test_a_healthy_init_with_a_huge_lr_still_blames_the_learning_rate():
    model = mlp(3, [4], 1, activation="relu", seed=1)
    opt = SGD(list(model.parameters()), lr=1e6)
    s = TrainSettings(epochs=3, batch_size=16, stats=())
    trainer = Trainer(model, MSE(), opt, Constant(1e6), _data(), s)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit()
    assert err.value.cause == "learning rate"
    assert "Try a lower learning rate (optimizer.lr=100000)" in str(err.value)


@pytest.mark.parametrize(
    "settings", [{"clip_value": 1.0}, {"clip_norm": 1.0}, {"stats": ("grad_norm",)}, {}]
)
def test_a_nan_gradient_is_named_before_clipping_or_after_the_update(settings):
    trainer = _trainer(_data(), **settings)
    _poison_gradient(trainer, np.nan)
    assert _message(trainer) == (
        "training diverged at epoch 2, step 6 (batch 2 of 4): the gradient is not finite at "
        f"dense_1/W {FIXES}"
    )
    assert (trainer.epoch, trainer.global_step) == (1, 5)  # the failing step is not counted


@pytest.mark.parametrize("settings", [{"clip_norm": 1.0}, {"stats": ("grad_norm",)}])
def test_finite_gradients_whose_norm_overflows_name_the_largest(settings):
    trainer = _trainer(_data(), **settings)
    _poison_gradient(trainer, np.float32(1e30))
    assert _message(trainer) == (
        "training diverged at epoch 2, step 6 (batch 2 of 4): the gradient norm overflows at "
        f"dense_1/W (|gradient| up to 1e+30) {FIXES}"
    )


def test_test_metrics_name_the_last_epoch_and_step():
    message = _message(_trainer(_data(test_scale=1e30)))
    assert message == (
        f"training diverged at epoch 3, step 12 (evaluation): test/loss is inf {FIXES}"
    )


def test_policy_stop_on_the_test_metrics_keeps_the_trained_model_and_drops_them():
    trainer = _trainer(_data(test_scale=1e30), policy="stop")
    final = trainer.fit()
    assert trainer.diverged == (
        f"training diverged at epoch 3, step 12 (evaluation): test/loss is inf {FIXES}"
    )
    assert trainer.should_stop and trainer.stop_reason.startswith("diverged")
    assert trainer.epoch == 3 and final["epochs_run"] == 3.0
    assert not any(k.startswith("test/") for k in final)
    assert final["val/loss"] == trainer.history[-1]["val/loss"]


def test_policy_stop_on_a_non_finite_loss_voids_the_epoch():
    trainer = _trainer(_data(huge_train_row=40), policy="stop")
    final = trainer.fit()
    assert trainer.diverged is not None and "step 2 (batch 2 of 4)" in trainer.diverged
    assert trainer.epoch == 0 and trainer.history == []
    assert {"test/loss", "test/rmse"} <= final.keys() and final["epochs_run"] == 0.0


def test_the_guard_alone():
    model = mlp(3, [4], 1, activation="identity", seed=1)
    params = list(model.parameters())
    guard = DivergenceGuard(model, params, Constant(0.5), RESULTS)
    guard.begin_epoch(4, lr=0.25, batches=10, first_step=31)
    with np.errstate(over="ignore", invalid="ignore"):
        guard.check_loss(1.0, np.ones((2, 3), np.float32), step=33)
        guard.check_gradients(33)
        guard.check_gradients(33, norms=[1.0, 2.0])
        guard.check_weights(33)
        guard.check_metrics({"val/loss": 1.0, "lr": np.inf}, epoch=4, step=40, lr=0.25)
        params[1].grad[0] = np.inf
        with pytest.raises(NonFiniteError) as err:
            guard.check_gradients(33)
        assert str(err.value).startswith(
            "training diverged at epoch 4, step 33 (batch 3 of 10): the gradient is not finite "
            "at dense_0/b (lr=0.25). Try a lower learning rate (optimizer.lr=0.05)"
        )
        with pytest.raises(NonFiniteError, match=r"epoch 5, step 40 \(evaluation\): val/acc"):
            guard.check_metrics({"val/loss": 1.0, "val/acc": np.nan}, epoch=5, step=40, lr=0.25)


def _guard_of(first_weights: np.ndarray) -> DivergenceGuard:
    model = mlp(2, [4], 1, activation="identity", seed=1)
    params = list(model.parameters())
    params[0].value[...] = first_weights  # dense_0/W, (fan_in 2, 4)
    params[2].value[...] = [[1.0], [-1.0], [1.0], [-1.0]]  # dense_1/W: std 1, gain 2
    guard = DivergenceGuard(model, params, Constant(0.1), RESULTS)
    guard.begin_epoch(1, lr=0.1, batches=4, first_step=1)
    return guard


INIT_FIXES = (
    "He and Xavier keep it near 1). Use model.init=he (ReLU family) or model.init=xavier "
    "(tanh, sigmoid), or a smaller model.init_scale"
)


def test_a_divergence_from_weights_out_of_range_blames_the_initialization_with_its_gain():
    c = 1e4  # dense_0/W = ±c: std c, gain c·√2; the network's gain 2c√2 ≈ 2.8e4
    guard = _guard_of(np.array([[c, -c, c, -c], [-c, c, -c, c]]))
    batch = np.array([[np.nan, 1.0]], np.float32)
    with pytest.raises(NonFiniteError) as err:
        guard.check_loss(float("nan"), batch, step=2)
    assert err.value.cause == "initialization"
    assert str(err.value) == (
        "training diverged at epoch 1, step 2 (batch 2 of 4): the loss is nan at the input "
        "batch itself (the data holds NaN/Inf) (lr=0.1). Likely cause: the initialization, not "
        "the learning rate — the starting weights amplify a signal ~1e4x through the network "
        f"(dense_0/W: std·√fan_in = 1.41e+04; {INIT_FIXES}"
    )
    infinite = _guard_of(np.array([[np.inf, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(NonFiniteError) as err:
        infinite.check_loss(float("nan"), batch, step=1)
    assert "amplify a signal beyond float range through the network (dense_0/W: std·√fan_in = " in (
        str(err.value)
    )


def test_what_is_out_of_range_the_initialization_at_a_gain_above_1e3_the_input_above_1e3():
    from nnexp.train.divergence import likely_cause

    assert likely_cause(3.0, None) == "learning rate"  # log10(1e3): at the limit, in range
    assert likely_cause(3.01, None) == "initialization"
    assert likely_cause(0.0, np.array([[1e3, -1e3]])) == "learning rate"
    assert likely_cause(0.0, np.array([[1e3, -1001.0]])) == "input"
    assert likely_cause(0.0, np.array([[np.nan, 2e3]])) == "input"
    assert likely_cause(0.0, np.zeros((0, 2))) == "learning rate"


def _weight(name: str, value, decay: bool = True):
    from nnexp.nn import Parameter

    return Parameter(name, np.asarray(value), decay=decay)


def test_initial_gain_multiplies_each_weight_matrix_std_times_root_fan_in():
    import math
    import warnings

    from nnexp.train.divergence import initial_gain

    assert initial_gain([]) == (0.0, "", 0.0)
    half = np.array([[0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [-0.5, 0.5]])  # std 0.5, fan_in 4: 1
    quarter = half / 2  # gain 0.5
    params = [
        _weight("dense_0/W", half), _weight("dense_0/b", np.full(2, 1e9), decay=False),
        _weight("odd/v", np.full(3, 1e9)), _weight("empty/W", np.zeros((0, 2))),
        _weight("dense_1/W", quarter), _weight("dense_2/W", half),
    ]  # fmt: skip
    log_gain, worst, gain = initial_gain(params)  # biases, vectors and empty arrays skipped
    assert math.isclose(log_gain, math.log10(0.5)) and (worst, gain) == ("dense_0/W", 1.0)
    assert initial_gain([_weight("d/W", np.zeros((2, 2)))]) == (-math.inf, "", 0.0)
    big = np.array([[1e20, -1e20], [-1e20, 1e20]], np.float32)  # squares overflow float32
    log_gain, worst, gain = initial_gain([_weight("d/W", big)])
    assert math.isclose(log_gain, 20 + math.log10(math.sqrt(2)), rel_tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an Inf weight is an answer, not a warning
        log_gain, worst, gain = initial_gain([_weight("d/W", np.array([[np.inf, 0.0]] * 2))])
    assert log_gain == math.inf and worst == "d/W" and math.isnan(gain)


def test_a_non_finite_loss_names_the_non_finite_weight_first():
    model = mlp(3, [4], 1, activation="identity", seed=1)
    params = list(model.parameters())
    guard = DivergenceGuard(model, params, Constant(0.1), RESULTS)
    guard.begin_epoch(1, lr=0.1, batches=2, first_step=1)
    params[2].value[0, 0] = np.nan  # dense_1/W
    with pytest.raises(NonFiniteError) as err:
        guard.check_loss(float("nan"), np.ones((2, 3), np.float32), step=1)
    assert "the loss is nan at dense_1/W (lr=0.1)" in str(err.value)


def test_the_guard_checks_unpacked_parameters_array_by_array():
    from nnexp.nn import Parameter

    w, b = Parameter("d/W", np.ones((2, 2)), decay=True), Parameter("d/b", np.zeros(2))
    model = mlp(2, [], 2, activation="identity", seed=0)
    guard = DivergenceGuard(model, [w, b], Constant(0.1), RESULTS)
    guard.begin_epoch(1, lr=0.1, batches=1, first_step=1)
    guard.check_gradients(1)
    guard.check_weights(1)
    b.grad[1] = np.inf
    with pytest.raises(NonFiniteError, match="the gradient is not finite at d/b"):
        guard.check_gradients(1)
