"""Exact numbers of the training loop, in-process: an epoch's train/loss and train/acc are the
means over its rows (checked with a learning rate of 1e-30, below float32's rounding, where
they equal the loss and accuracy of the untouched model on the training split), `lr` is the
scheduled rate, the statistics reach the epoch's metrics, their cost is the sum of the clocked
calls, and evaluation in chunks covers every row.

Written for the mutation run (`make mutate`, tests/mutants.md)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import MSE, SGD, SigmoidBCE, mlp
from nnexp.nn.schedules import Constant
from nnexp.train import NonFiniteError, Trainer, TrainSettings
from nnexp.train import trainer as trainer_module
from nnexp.train.trainer import EVAL_CHUNK, Statistics


def _binary(rows: int = 40) -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows + 16, 2)).astype(np.float32)
    y = (X[:, 0] > 0.3).astype(np.float32)
    return Splits(X[:rows], y[:rows], X[rows:], y[rows:], X[:0], y[:0], task="binary")


def _trainer(lr: float, stats=(), epochs: int = 1) -> Trainer:
    model = mlp(2, [5], 1, activation="tanh", seed=3)
    return Trainer(
        model, SigmoidBCE(), SGD(list(model.parameters()), lr=lr), Constant(lr), _binary(),
        TrainSettings(epochs=epochs, batch_size=16, stats=stats),
    )  # fmt: skip


def test_an_epochs_train_loss_and_accuracy_are_means_over_its_rows():
    trainer = _trainer(lr=1e-30)  # below float32 rounding: every batch sees the same model
    X, y = trainer.data.X_train, trainer.data.y_train
    logits = trainer.model.forward(X, training=False)
    expected_loss = float(trainer.loss.value_and_grad(logits, y)[0])
    expected_acc = float(np.mean(trainer.loss.predict(logits).ravel() == y))
    metrics = trainer.fit()
    assert abs(metrics["train/loss"] - expected_loss) < 1e-6
    assert abs(metrics["train/acc"] - expected_acc) < 1e-12
    assert 0.0 < expected_acc < 1.0  # a test that can tell a mean from a sum
    assert trainer.history[0]["lr"] == 1e-30


def test_the_sampled_statistics_reach_the_epochs_metrics():
    trainer = _trainer(lr=0.1, stats=("grad_norm",))
    trainer.fit()
    assert any(key.startswith("grad_norm/") for key in trainer.history[0])
    assert trainer.statistics.summary()  # the last epoch's, after training
    assert Statistics(trainer.params, []).summary() == {}  # no epoch began: nothing


def test_the_statistics_cost_is_the_sum_of_the_clocked_calls(monkeypatch):
    clock = iter(np.arange(100.0))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    stats = Statistics(_trainer(lr=0.1).params, [])
    stats.grad_norms()
    stats.grad_norms()
    assert stats.seconds == 2.0  # two calls, one tick each


def test_evaluation_in_chunks_covers_every_row():
    trainer = _trainer(lr=0.1)
    X = np.random.default_rng(1).standard_normal((EVAL_CHUNK + 10, 2)).astype(np.float32)
    logits = trainer.predict_logits(X)
    assert logits.shape == (EVAL_CHUNK + 10, 1)
    np.testing.assert_allclose(logits, trainer.model.forward(X, training=False), rtol=1e-6)


def test_validation_accuracy_and_rmse_in_the_targets_units():
    trainer = _trainer(lr=0.1)
    logits = trainer.model.forward(trainer.data.X_val, training=False)
    predicted = trainer.loss.predict(logits).ravel()
    expected = float(np.mean(predicted == trainer.data.y_val))
    assert trainer.evaluate("val")["val/acc"] == expected and 0.0 < expected < 1.0

    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 2)).astype(np.float32)
    y = (X[:, 0] * 0.5).astype(np.float32)
    data = Splits(X[:20], y[:20], X[20:], y[20:], X[:0], y[:0], task="regression")
    data = replace(data, y_scale=3.0)  # targets trained in units of 3
    model = mlp(2, [4], 1, activation="tanh", seed=0)
    regression = Trainer(
        model, MSE(), SGD(list(model.parameters()), lr=0.1), Constant(0.1), data,
        TrainSettings(epochs=1, batch_size=8, stats=()),
    )  # fmt: skip
    residual = model.forward(X[20:], training=False).ravel() - y[20:]
    rmse = float(np.sqrt(np.mean(residual**2))) * 3.0
    assert abs(regression.evaluate("val")["val/rmse"] - rmse) < 1e-5 * rmse


def test_evaluation_overflow_raises_no_warning_the_guard_reports_it_instead():
    trainer = _trainer(lr=0.1)
    first = trainer.params[0]
    first.value[...] = 1e30  # overflows on every row
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="warn"):
            metrics = trainer.evaluate("val")
    first.value.flat[0] = np.inf
    with pytest.raises(NonFiniteError) as err:
        trainer.guard.check_metrics(metrics | {"val/loss": np.nan}, epoch=2, step=7, lr=0.1)
    message = str(err.value)
    assert message.startswith("training diverged at epoch 2, step 7 (evaluation): val/loss is nan")
    assert f"at {first.name} (lr=0.1)" in message


def test_each_epoch_trains_at_its_scheduled_rate_and_is_timed():
    from nnexp.nn.schedules import Exponential

    trainer = _trainer(lr=0.1, epochs=3)
    trainer.schedule = Exponential(0.1, gamma=0.5)
    trainer.fit()
    assert [h["lr"] for h in trainer.history] == pytest.approx([0.1, 0.05, 0.025])
    assert all(0.0 < h["time/epoch_s"] < 60.0 for h in trainer.history)


def test_callbacks_hear_each_step_with_its_loss_and_the_end_with_the_final_metrics():
    from nnexp.train import Callback

    class Listener(Callback):
        def __init__(self) -> None:
            self.batches: list[tuple] = []
            self.final: dict | None = None

        def on_batch_end(self, trainer, step, loss):
            self.batches.append((trainer, step, loss))

        def on_fit_end(self, trainer, metrics):
            self.final = metrics

    listener = Listener()
    trainer = _trainer(lr=0.1, epochs=1)
    trainer.callbacks.append(listener)
    result = trainer.fit()
    assert [step for _, step, _ in listener.batches] == [1, 2, 3]  # 40 rows, batches of 16
    assert all(t is trainer and isinstance(loss, float) and loss > 0 for t, _, loss in
               listener.batches)  # fmt: skip
    losses = [loss for _, _, loss in listener.batches]
    rows = [16, 16, 8]
    mean = sum(loss * n for loss, n in zip(losses, rows, strict=True)) / 40
    assert result["train/loss"] == pytest.approx(mean, rel=1e-6)
    assert listener.final == result


def test_non_finite_validation_metrics_name_the_last_step_taken():
    trainer = _trainer(lr=0.1, epochs=2)
    trainer.data.X_val[0] = np.nan
    where = r"^training diverged at epoch 1, step 3 \(evaluation\)"
    with pytest.raises(NonFiniteError, match=where):
        trainer.fit()


def test_a_diverging_step_raises_the_guards_error_not_a_numpy_warning():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((56, 2)) * 100).astype(np.float32)  # unstandardized
    y = X[:, 0].copy()
    data = Splits(X[:40], y[:40], X[40:], y[40:], X[:0], y[:0], task="regression")
    model = mlp(2, [5], 1, activation="identity", seed=0)
    trainer = Trainer(
        model, MSE(), SGD(list(model.parameters()), lr=1.0), Constant(1.0), data,
        TrainSettings(epochs=5, batch_size=8, stats=("grad_norm",)),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would escape as an exception
        with np.errstate(all="warn"), pytest.raises(NonFiniteError, match="the loss is inf"):
            trainer.fit()


def test_sampled_update_ratios_use_the_weights_norms_after_the_update():
    trainer = _trainer(lr=0.1, stats=("grad_norm", "update_ratio"), epochs=1)
    trainer.fit()
    ratios = {k: v for k, v in trainer.history[0].items() if k.startswith("update_ratio/")}
    assert ratios and all(0.0 < v < 1.0 for v in ratios.values())


def test_a_binary_classifiers_output_statistics_count_its_two_classes():
    # One sigmoid output: two classes (not the output layer's input width, here 5).
    trainer = _trainer(lr=0.1, stats=("output",))
    trainer.fit()
    classes = sorted(k for k in trainer.history[0] if k.startswith("output/class_"))
    assert classes == ["output/class_0", "output/class_1"]
    assert trainer.history[0]["output/class_0"] + trainer.history[0]["output/class_1"] == 1.0


@pytest.mark.parametrize(("batch_norm", "sizes"), [(True, [4, 5]), (False, [4, 4, 1])])
def test_a_remainder_of_one_row_is_folded_into_the_last_batch_only_under_batch_norm(
    batch_norm, sizes
):
    model = mlp(2, [5], 1, activation="tanh", seed=3, batch_norm=batch_norm)
    data = _binary(rows=9)
    trainer = Trainer(
        model, SigmoidBCE(), SGD(list(model.parameters()), lr=0.1), Constant(0.1), data,
        TrainSettings(epochs=1, batch_size=4, stats=()),
    )  # fmt: skip
    assert [len(b) for b in trainer._batches()] == sizes


def _mixed(loss_scale: str, stats=("grad_norm",)) -> Trainer:
    model = mlp(2, [8] * 12, 1, activation="sigmoid", seed=3)
    return Trainer(
        model, SigmoidBCE(), SGD(list(model.parameters()), lr=0.1), Constant(0.1), _binary(64),
        TrainSettings(epochs=1, batch_size=16, stats=stats, precision="mixed",
                      loss_scale=loss_scale),
    )  # fmt: skip


def test_mixed_precision_scales_the_loss_as_configured():
    assert _mixed("none").scaler.scale == 1.0
    assert _mixed("256").scaler.scale == 256.0
    assert _mixed("dynamic").scaler.scale > 256.0  # starts high, halves on overflow
    assert _trainer(lr=0.1).scaler is None  # float32: no scaler


def _underflow(loss_scale: str) -> dict[str, float]:
    trainer = _mixed(loss_scale)
    trainer.fit()
    return {k: v for k, v in trainer.history[0].items() if k.startswith("amp/underflow/")}


def test_mixed_precision_measures_underflow_on_the_sampled_steps():
    # A 12-layer sigmoid net unscaled: its first layers' float16 gradients flush to zero;
    # the dynamic scale lifts them back into float16's range.
    unscaled, scaled = _underflow("none"), _underflow("dynamic")
    assert len(unscaled) == 13 and unscaled["amp/underflow/dense_0"] > 0.3
    assert scaled.keys() == unscaled.keys() and max(scaled.values()) == 0.0


def test_with_clipping_by_norm_statistics_still_sample_every_k_steps():
    model = mlp(2, [5], 1, activation="tanh", seed=3)
    trainer = Trainer(
        model, SigmoidBCE(), SGD(list(model.parameters()), lr=0.1), Constant(0.1), _binary(),
        TrainSettings(epochs=1, batch_size=8, stats=("grad_norm",), stats_every=2, clip_norm=1.0),
    )  # fmt: skip
    trainer.fit()  # 5 steps, numbered 0-4 as they start: 0, 2 and 4 are sampled
    assert trainer.statistics.current._count == 3


def test_a_batch_normalized_models_batches_are_never_of_one_row():
    def sizes(rows: int, batch_norm: bool) -> list[int]:
        model = mlp(2, [5], 1, activation="tanh", batch_norm=batch_norm, seed=3)
        trainer = Trainer(
            model, SigmoidBCE(), SGD(list(model.parameters()), lr=0.1), Constant(0.1),
            _binary(rows), TrainSettings(epochs=1, batch_size=4, stats=()),
        )  # fmt: skip
        return [len(b) for b in trainer._batches()]

    assert sizes(10, batch_norm=True) == [4, 4, 2]  # two rows normalize
    assert sizes(9, batch_norm=True) == [4, 5]  # one would not: folded into the last batch
    assert sizes(5, batch_norm=True) == [5]
    assert sizes(9, batch_norm=False) == [4, 4, 1]


def test_a_fresh_trainer_has_no_stop_reason_and_guards_with_its_schedule():
    trainer = _trainer(lr=0.1)
    assert trainer.stop_reason == "" and trainer.guard.schedule is trainer.schedule
    trainer.fit()
    assert trainer.stop_reason == ""  # ran all its epochs
    assert Statistics(trainer.params, []).classes == 0  # a regressor's, by default


def test_evaluating_overflowing_weights_is_quiet_the_guard_reports_it():
    trainer = _trainer(lr=0.1)
    for p in trainer.params:
        p.value[...] = 3e38  # float32 products overflow to Inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = trainer.evaluate("val")
    assert not np.isfinite(metrics["val/loss"])
