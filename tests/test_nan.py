"""NaN/Inf: the first non-finite loss, gradient, weight or metric stops the run, named by
epoch, step and layer, with the usual fixes; the run ends FAILED and tagged `diverged`, the
last good checkpoint stays loadable. Policy `stop` keeps the last good epoch instead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import MSE, SGD, mlp
from nnexp.nn.schedules import Constant
from nnexp.train import (
    NonFiniteError,
    Trainer,
    TrainSettings,
    load_checkpoint,
    trainer_state,
)

TRACKED_SMALL = ("trainer.checkpoint_every=1", "trainer.stats=[]")
# A linear network on unstandardized regression data, with a warmup that raises the learning
# rate every epoch: epochs 1-2 train, epoch 3 overflows (deterministic: same seed, same data).
LATE_DIVERGENCE = (
    "dataset=regression",
    "dataset.standardize=false",
    "model.activation=identity",
    "schedule=warmup_cosine",
    "schedule.warmup=10",
    "optimizer.lr=1.5",
    "trainer.epochs=10",
)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("nnexp: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_lr_1e6_on_unstandardized_data_fails_fast_with_one_clear_line(cli, tmp_path):
    proc = cli("optimizer.lr=1e6", "dataset.standardize=false", *TRACKED_SMALL)
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert "training diverged at epoch 1, step " in line
    assert " at the output of dense_" in line or " at dense_" in line  # the layer
    assert "lr=1e+06" in line and "optimizer.lr=100000" in line
    assert "trainer.grad_clip.norm" in line and "dataset.standardize=true" in line
    (run,) = cli.runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["diverged"] == "true"
    assert run.data.tags["error"].startswith("NonFiniteError: training diverged at epoch 1")
    assert "model_uri" not in run.data.tags


def test_a_late_divergence_keeps_the_last_good_checkpoint(cli, tmp_path):
    proc = cli(*LATE_DIVERGENCE, *TRACKED_SMALL)
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert "training diverged at epoch 3, step " in line and "dense_" in line
    state = load_checkpoint(tmp_path / "outputs/run/checkpoints/last.npz")
    assert int(state["epoch"]) == 2
    assert all(np.isfinite(v).all() for k, v in state.items() if k.startswith("param/"))
    (run,) = cli.runs()
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    client = cli.client()
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert [m.step for m in history] == [1, 2]
    assert all(math.isfinite(m.value) for m in history)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/last.npz" in artifacts


def test_nan_policy_stop_keeps_the_last_good_epoch_and_fails_the_run(cli, tmp_path):
    proc = cli(
        *LATE_DIVERGENCE, *TRACKED_SMALL, "trainer.nan_policy=stop", "tracking.register_as=m"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: warning:")]
    assert len(warnings) == 1 and "training diverged at epoch 3" in warnings[0]
    assert "2 epochs (diverged (trainer.nan_policy=stop)" in proc.stdout
    (run,) = cli.runs()
    # FAILED and tagged, like policy raise; but with a model of the last good epoch, and
    # every metric finite (test/* measured on that model)
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    assert run.data.tags["model_uri"]
    # ...which is not registered: a diverged run never becomes the model's newest version
    assert cli.client().search_registered_models() == []
    assert "the model of this diverged run is logged but not registered as 'm'" in proc.stderr
    metrics = run.data.metrics
    assert metrics["epochs_run"] == 2 and {"test/loss", "test/rmse"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values())
    client = cli.client()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    # the model predicts with the weights of last.npz (epoch 2)
    import mlflow

    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    weights = model.unwrap_python_model().bundle.forward.weights
    state = load_checkpoint(tmp_path / "outputs/run/checkpoints/last.npz")
    assert int(state["epoch"]) == 2
    params = [k for k in state if k.startswith("param/")]
    assert params
    for key in params:
        assert np.array_equal(weights[key], state[key]), key


# --- in process: every place a non-finite value can first appear ---------------------------


def _regression(X_val_scale: float = 1.0) -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)).astype(np.float32)
    X_val = X[64:80] * np.float32(X_val_scale)
    return Splits(X[:64], y[:64], X_val, y[64:80], X[80:], y[80:], task="regression")


def _fit(data: Splits, lr: float, policy: str = "raise", epochs: int = 3) -> Trainer:
    model = mlp(3, [4], 1, activation="identity", seed=1)
    opt = SGD(list(model.parameters()), lr=lr)
    settings = TrainSettings(epochs=epochs, batch_size=16, nan_policy=policy, stats=())
    trainer = Trainer(model, MSE(), opt, Constant(lr), data, settings)
    trainer.fit()
    return trainer


def test_an_update_that_overflows_the_weights_names_the_layer():
    with pytest.raises(NonFiniteError) as err:
        _fit(_regression(), lr=3e38)
    message = str(err.value)
    assert "epoch 1, step 1 (batch 1 of 4)" in message
    assert "the update made the weights non-finite at dense_0/W" in message


def _poison_gradient(trainer: Trainer, layer: int, step: int) -> None:
    """From `step` on (1-based), layer `layer`'s backward leaves a NaN in its weight gradient
    while the loss stays finite."""
    dense = trainer.model.modules[layer]
    backward, calls = dense.backward, [0]

    def poisoned(dy, need_dx=True):
        dx = backward(dy, need_dx)
        calls[0] += 1
        if calls[0] >= step:
            dense.W.grad.flat[1] = np.nan
        return dx

    dense.backward = poisoned


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("stats", [(), ("grad_norm", "update_ratio")])
def test_a_nan_gradient_behind_a_finite_loss_is_named_as_a_gradient(packed, stats):
    """The check after the update still tells a NaN gradient from an overflowing update."""
    model = mlp(3, [4], 1, activation="identity", seed=1)
    if not packed:
        for p in model.parameters():
            p.value, p.grad = p.value.copy(), p.grad.copy()
    opt = SGD(list(model.parameters()), lr=0.01)
    settings = TrainSettings(epochs=2, batch_size=16, stats=stats)
    trainer = Trainer(model, MSE(), opt, Constant(0.01), _regression(), settings)
    _poison_gradient(trainer, layer=2, step=6)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit()
    message = str(err.value)
    assert "epoch 2, step 6 (batch 2 of 4)" in message
    assert "the gradient is not finite at dense_1/W" in message


def test_policy_stop_after_a_nan_gradient_restores_the_optimizer_state_too():
    """Under Adam a NaN gradient spoils the moments as well as the weights: both go back."""
    from nnexp.nn import Adam

    def fit(poison: bool) -> Trainer:
        model = mlp(3, [4], 1, activation="identity", seed=1)
        opt = Adam(list(model.parameters()), lr=0.01)
        settings = TrainSettings(epochs=3 if poison else 1, batch_size=16, nan_policy="stop")
        trainer = Trainer(model, MSE(), opt, Constant(0.01), _regression(), settings)
        if poison:
            _poison_gradient(trainer, layer=0, step=6)
        trainer.fit()
        return trainer

    stopped, reference = fit(poison=True), fit(poison=False)
    assert stopped.diverged and "the gradient is not finite at dense_0/W" in stopped.diverged
    assert stopped.epoch == reference.epoch == 1
    assert stopped.optimizer.t == reference.optimizer.t == 4
    for key, value in reference.optimizer.state_dict().items():
        np.testing.assert_array_equal(stopped.optimizer.state_dict()[key], value, err_msg=key)
    for p, q in zip(stopped.params, reference.params, strict=True):
        np.testing.assert_array_equal(p.value, q.value, err_msg=p.name)


def test_validation_overflow_with_finite_weights_is_caught():
    """Training is fine; the validation inputs are huge and overflow the forward pass."""
    with pytest.raises(NonFiniteError, match=r"epoch 1, .*evaluation\): val/loss is inf"):
        _fit(_regression(X_val_scale=1e30), lr=0.01)


def test_policy_stop_rolls_back_to_the_last_good_epoch():
    reference = _fit(_regression(), lr=0.01, epochs=1)
    stopped = _fit(_regression(X_val_scale=1e30), lr=0.01, policy="stop")
    assert stopped.diverged and "val/loss is inf" in stopped.diverged
    assert stopped.epoch == 0 and stopped.history == []
    # the epoch that ended in a non-finite metric is undone: the initial weights are back
    fresh = _fit(_regression(), lr=0.01, epochs=1)
    initial = mlp(3, [4], 1, activation="identity", seed=1)
    for p, q in zip(stopped.params, initial.parameters(), strict=True):
        assert np.array_equal(p.value, q.value)
    assert trainer_state(reference)["epoch"] == trainer_state(fresh)["epoch"] == 1


def test_per_step_check_finds_a_nan_where_a_sum_would_not_overflow():
    from nnexp.train.divergence import all_finite

    big = np.full(10, 3e38, dtype=np.float32)  # finite, but the sum overflows
    with np.errstate(over="ignore", invalid="ignore"):  # as the trainer calls it
        assert all_finite([big, np.ones(3)])
        assert not all_finite([np.ones(3), np.array([1.0, np.nan])])
        assert not all_finite([np.array([np.inf, -np.inf])])  # a sum of nan
        # Norms at hand answer it; norms that overflowed or are NaN send it to the arrays.
        assert all_finite([np.array([np.nan])], norms=[1.0, 2.0])  # trusted: finite norms
        assert not all_finite([np.array([np.nan])], norms=[1.0, math.nan])
        assert all_finite([big], norms=[math.inf])  # overflowed, but every element is finite


def test_policy_stop_under_mixed_precision_restores_the_loss_scalers_state_too():
    """Under trainer.precision=mixed the dynamic scaler absorbs a NaN gradient by halving its
    scale and skipping the step, until the scale reaches 1: then the step diverges. Policy stop
    rolls back to the last good epoch — the scaler's scale and counters included, so the run
    reports (and checkpoints) the scaler the kept weights were trained with."""

    def fit(epochs: int) -> Trainer:
        model = mlp(3, [4], 1, activation="identity", seed=1)
        opt = SGD(list(model.parameters()), lr=0.01)
        settings = TrainSettings(
            epochs=epochs, batch_size=16, nan_policy="stop", precision="mixed", stats=()
        )
        trainer = Trainer(model, MSE(), opt, Constant(0.01), _regression(), settings)
        # From step 6 on every gradient is NaN: the scaler skips those steps, halving its scale
        # each time, until the scale is 1 and a step diverges.
        _poison_gradient(trainer, layer=0, step=6)
        trainer.fit()
        return trainer

    stopped = fit(epochs=20)
    assert stopped.diverged and "the gradient is not finite at dense_0/W" in stopped.diverged
    good = stopped.epoch  # the last good epoch: the next one diverged
    assert good >= 2 and f"diverged at epoch {good + 1}," in stopped.diverged
    reference = fit(epochs=good)  # the same run, ended before the divergence
    assert reference.diverged is None and reference.epoch == good
    assert reference.scaler is not None and stopped.scaler is not None
    assert reference.scaler.skipped_steps >= 2 and reference.scaler.scale > 1.0
    for key, value in reference.scaler.state_dict().items():
        np.testing.assert_array_equal(stopped.scaler.state_dict()[key], value, err_msg=key)
    for p, q in zip(stopped.params, reference.params, strict=True):
        np.testing.assert_array_equal(p.value, q.value, err_msg=p.name)
