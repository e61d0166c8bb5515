"""Exact wiring of a run, in-process: what `build` hands to each piece (early stopping, the
checkpointer, the progress bar, the tracker of a sweep's job, the model bundle), what
`EveryNEpochs` forwards, the divergence diagnostics' edge cases, and the exported bundle's
format (float64 targets, no pickles, an indented spec).

Written for the mutation run (`make mutate`, tests/mutants.md): each test kills mutants that
survived the tests that run the CLI in a subprocess, where mutmut cannot see them."""

from __future__ import annotations

import io
import json
import sys
import types
import warnings

import numpy as np
import pytest
from conftest import small_config as _cfg

from nnexp import build as b
from nnexp.config import (
    ConfigError,
    RegularizationConfig,
    TrackingConfig,
    TrainerConfig,
)
from nnexp.data import FileSpec
from nnexp.names import TAG_DOCTOR_FINDINGS
from nnexp.nn import MSE, SGD, Parameter, mlp
from nnexp.objective import Objective
from nnexp.schema import describe as describe_limits
from nnexp.train import Callback, NonFiniteError, Predictor, Trainer, TrainSettings, save_bundle
from nnexp.train.callbacks import EveryNEpochs
from nnexp.train.divergence import first_nonfinite_output, largest_gradient

# --- build ---------------------------------------------------------------------------------------


def test_early_stopping_and_the_checkpointer_get_the_objective_and_restore_best(tmp_path):
    cfg = _cfg(
        regularization=RegularizationConfig(early_stopping=True, patience=3, restore_best=False),
        trainer=TrainerConfig(epochs=2, batch_size=16, progress=True, objective="val/acc"),
    )
    trainer = b.build_trainer(cfg, b.build(cfg), b.Job(tmp_path, [], {}, tmp_path, "k"))
    stopper, checkpointer, _, progress = trainer.callbacks[:4]
    assert stopper.restore_best is False
    assert stopper.objective == Objective("val/acc", "max")
    assert checkpointer.objective == Objective("val/acc", "max")
    assert progress.enabled is True  # trainer.progress=true, whatever stderr is


def test_progress_unset_follows_whether_stderr_is_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert b._progress(None) is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert b._progress(None) is False


def test_the_objective_is_checked_against_the_task_the_data_has():
    with pytest.raises(ConfigError, match=r"trainer.objective='val/rmse': a binary run"):
        b.build(_cfg(trainer=TrainerConfig(objective="val/rmse")))


def test_one_output_for_sigmoid_bce_whatever_the_targets():
    splits = b.build(_cfg()).splits
    assert b.n_outputs("sigmoid_bce", splits) == 1
    two_columns = type("S", (), {"y_train": np.zeros((4, 2)), "n_classes": 2})()
    assert b.n_outputs("sigmoid_bce", two_columns) == 1
    assert b.n_outputs("mse", two_columns) == 2


def test_regression_targets_are_scaled_by_a_std_below_one_and_kept_in_the_run_dtype(tmp_path):
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.standard_normal(40) * 0.25, rng.standard_normal(40) * 4])
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((40, 2)), y=y)
    built = b.build(_cfg(dataset=FileSpec(path=str(tmp_path / "d.npz"), task="regression")))
    np.testing.assert_allclose(built.y_scale, built.splits.y_train.std(axis=0), rtol=1e-6)
    assert built.y_scale[0] < 0.5  # a std below 1 is a scale, not a constant target
    assert built.data.y_train.dtype == np.float32  # trainer.dtype, not NumPy's float64
    s, d = built.splits, built.data
    for raw, scaled in ((s.y_train, d.y_train), (s.y_val, d.y_val), (s.y_test, d.y_test)):
        np.testing.assert_allclose(scaled, (raw - built.y_mean) / built.y_scale, rtol=1e-5)


def test_the_bundle_predicts_raw_rows_as_the_model_does_standardized_ones(tmp_path):
    built = b.build(_cfg())
    b.bundle_writer(built)(tmp_path / "model")
    predictor = Predictor(tmp_path / "model")
    s = built.splits
    raw = b.raw_rows(s, 8)
    logits = built.model.forward(s.X_train[:8], training=False)
    np.testing.assert_allclose(predictor.logits(raw), logits, rtol=1e-5, atol=1e-6)


def test_the_bundle_of_a_regression_returns_original_units(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 2))
    np.savez(tmp_path / "d.npz", X=X, y=100 + 10 * X[:, 0])
    built = b.build(_cfg(dataset=FileSpec(path=str(tmp_path / "d.npz"), task="regression")))
    b.bundle_writer(built)(tmp_path / "model")
    predicted = Predictor(tmp_path / "model").predict(b.raw_rows(built.splits, 5))
    scaled = built.model.forward(built.splits.X_train[:5], training=False).ravel()
    np.testing.assert_allclose(
        predicted.ravel(), scaled * built.y_scale + built.y_mean, rtol=1e-5
    )  # fmt: skip


def _sweep_job(tmp_path):
    from nnexp.tracking.sweep import SweepInfo, SweepJob

    info = SweepInfo("sw1", "parent123", "exp", "1", "sqlite:///x.db", swept=["optimizer.lr"])
    return SweepJob(info, 3, {"optimizer.lr": "0.1"})


def test_a_sweeps_job_gets_its_parent_run_name_tags_and_no_plot_worker(tmp_path):
    sweep = _sweep_job(tmp_path)
    cfg = _cfg(tracking=TrackingConfig(enabled=True, uri="sqlite:///x.db"))
    built = b.build(cfg)
    job = b.Job(tmp_path, [], {}, tmp_path, "k", sweep=sweep, single_run=False)
    tracker = b.build_tracker(cfg, built, job)
    assert tracker.parent_run_id == "parent123"
    assert tracker.run_name == sweep.run_name and sweep.run_name
    assert tracker.plot_worker is False
    tags = b.run_tags(cfg, built, job)
    assert sweep.tags.items() <= tags.items()  # the sweep's tags added to the run's own
    assert tags["task"] == "binary" and tags["dataset"] == "moons"
    single_of_a_sweep = b.Job(tmp_path, [], {}, tmp_path, "k", sweep=sweep, single_run=True)
    assert b.build_tracker(cfg, built, single_of_a_sweep).plot_worker is False
    named = _cfg(tracking=TrackingConfig(enabled=True, uri="sqlite:///x.db", run_name="mine"))
    assert b.build_tracker(named, built, job).run_name == "mine"
    tracker.write_bundle(tmp_path / "model")  # the built model's bundle
    spec = json.loads((tmp_path / "model" / "spec.json").read_text())
    assert spec["mlp"] == built.mlp_kwargs and spec["classes"] == ["0", "1"]


# --- train: callbacks, divergence, bundle --------------------------------------------------------


class _Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer))

    def on_batch_end(self, trainer, step, loss):
        self.calls.append(("batch_end", trainer, step, loss))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.calls.append(("epoch_end", trainer, epoch, metrics))

    def on_fit_end(self, trainer, metrics):
        self.calls.append(("fit_end", trainer, metrics))

    def on_exception(self, trainer, exc):
        self.calls.append(("exception", trainer, exc))


def test_every_n_epochs_forwards_the_trainer_and_the_metrics_themselves():
    inner = _Recorder()
    every = EveryNEpochs(inner, 2)
    trainer = type("T", (), {"settings": type("S", (), {"epochs": 5})(), "should_stop": False})()
    metrics, exc = {"val/loss": 1.0}, RuntimeError("x")
    every.on_fit_start(trainer)
    every.on_batch_end(trainer, 7, 0.5)
    every.on_epoch_end(trainer, 1, metrics)
    every.on_epoch_end(trainer, 2, metrics)
    every.on_fit_end(trainer, metrics)
    every.on_exception(trainer, exc)
    assert inner.calls == [
        ("fit_start", trainer),
        ("batch_end", trainer, 7, 0.5),
        ("epoch_end", trainer, 2, metrics),
        ("fit_end", trainer, metrics),
        ("exception", trainer, exc),
    ]
    assert all(call[1] is trainer for call in inner.calls)
    assert inner.calls[2][3] is metrics and inner.calls[3][2] is metrics


def test_the_diagnostics_raise_no_floating_point_warning():
    model = mlp(2, [3], 1, activation="relu", seed=0)
    for p in model.parameters():
        p.value[...] = 1e30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would be an exception here
        with np.errstate(all="warn"):
            assert first_nonfinite_output(model, np.full((2, 2), 1e30, np.float32)) is not None
            a = Parameter("a/W", np.ones(2, np.float32))
            a.grad[...] = [np.inf, -np.inf]
            assert largest_gradient([a]).startswith("a/W (|gradient| up to inf")


def test_an_empty_gradient_counts_as_zero_next_to_small_ones():
    small = Parameter("small/W", np.ones(2))
    small.grad[...] = [0.25, -0.5]
    assert largest_gradient([Parameter("empty", np.zeros(0)), small]) == (
        "small/W (|gradient| up to 0.5)"
    )


def test_a_schedule_without_base_lr_suggests_a_tenth_of_its_rate():
    class Rate:  # any callable epoch -> lr
        def __call__(self, epoch: int) -> float:
            return 0.01

    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 2)).astype(np.float32)
    X[5] = np.nan
    y = X[:, 0].copy()
    from nnexp.data import Splits

    data = Splits(X, y, X[:8], y[:8], X[:8], y[:8], task="regression")
    model = mlp(2, [3], 1, activation="identity", seed=0)
    trainer = Trainer(
        model, MSE(), SGD(list(model.parameters()), lr=0.01), Rate(), data,
        TrainSettings(epochs=1, batch_size=8, stats=()),
    )  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"optimizer\.lr=0\.001\)"):
        trainer.fit()


def test_a_bundle_keeps_targets_in_float64_an_indented_spec_and_refuses_pickles(tmp_path):
    model = mlp(2, [3], 1, activation="relu", seed=0)
    save_bundle(
        tmp_path / "m", model, mlp_kwargs={"in_features": 2, "hidden": [3], "out_features": 1,
        "activation": "relu", "seed": 0}, loss="mse", task="regression",
        y_mean=np.float32(1.5), y_scale=np.array([2.0], np.float32),
    )  # fmt: skip
    with np.load(tmp_path / "m" / "weights.npz") as f:
        assert f["y_mean"].dtype == np.float64 and f["y_scale"].dtype == np.float64
    text = (tmp_path / "m" / "spec.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2)  # readable, two-space indented
    # A weights file holding a Python object is refused, not unpickled.
    with np.load(tmp_path / "m" / "weights.npz") as f:
        arrays = dict(f)
    arrays["x_mean"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "m" / "weights.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        Predictor(tmp_path / "m")


def test_schema_rule_with_only_an_upper_bound():
    assert describe_limits({"lt": 1}) == "must be < 1"
    assert describe_limits({"le": 5, "note": "(seconds)"}) == "must be <= 5 (seconds)"


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "dynamic"), ("none", "none"), ("64", "64")]
)
def test_the_loss_scale_setting_reaches_the_trainer_dynamic_when_unset(setting, expected):
    cfg = _cfg(
        trainer=TrainerConfig(epochs=1, batch_size=16, precision="mixed", loss_scale=setting)
    )
    assert b.train_settings(cfg).loss_scale == expected
    assert b.train_settings(cfg).precision == "mixed"


def test_the_doctor_verdict_knows_the_task_and_tags_the_tracked_run(tmp_path):
    cfg = _cfg()
    built = b.build(cfg)
    job = b.Job(tmp_path, [], {"model": {"init": "zeros"}}, tmp_path, "k")

    class Tracker:  # its tags go through the tracker's link: sent, or spooled
        run_id = "run42"

        def send_tags(self, tags):
            Tracker.logged = self.run_id, dict(tags)

    verdict = b.doctor_verdict(built, job, Tracker())
    assert (verdict.task, verdict.n_classes) == ("binary", 2)
    assert verdict.params == {"model.init": "zeros"}

    finished = types.SimpleNamespace(history=[{"train/acc": 0.5}])  # chance: underfitting
    verdict.on_fit_end(finished, {})
    run_id, tags = Tracker.logged
    assert run_id == "run42"
    assert tags[TAG_DOCTOR_FINDINGS] == "symmetry,underfitting"


def test_the_doctor_verdict_of_a_failed_run_reads_its_cause_and_its_stop_message(tmp_path):
    from nnexp.train.divergence import CAUSE_INIT

    seen = []
    verdict = b.doctor_verdict(b.build(_cfg()), b.Job(tmp_path, [], {}, tmp_path, "k"))
    verdict.report = seen.append
    error = NonFiniteError("training diverged at epoch 1")
    error.cause = CAUSE_INIT
    verdict.on_exception(types.SimpleNamespace(history=[], diverged=None), error)
    assert [f.code for f in seen[-1]] == ["diverged_init"]
    assert seen[-1][0].evidence == "training diverged at epoch 1"
    # nan_policy=stop: no exception, the trainer's own message says it diverged.
    stopped = types.SimpleNamespace(history=[], diverged="diverged at epoch 4 (loss=nan)")
    verdict.on_fit_end(stopped, {})
    assert [f.code for f in seen[-1]] == ["diverged_lr"]
    assert seen[-1][0].evidence == "diverged at epoch 4 (loss=nan)"
