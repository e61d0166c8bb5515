"""Exact behaviour of nnexp.train's pieces around the loop: the divergence diagnostics and their
one-line message, `EveryNEpochs`, the progress bar, and the exported model bundle that
`Predictor` reads back (the same predictions, raw inputs in, original units out).

Written for the mutation run (`make mutate`, tests/mutants.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import MSE, SGD, Parameter, SigmoidBCE, SoftmaxCrossEntropy, mlp
from nnexp.nn.schedules import Constant
from nnexp.train import Callback, Predictor, ProgressBar, Trainer, TrainSettings, save_bundle
from nnexp.train.callbacks import EveryNEpochs
from nnexp.train.divergence import (
    NonFiniteError,
    all_finite,
    describe,
    first_nonfinite_output,
    first_nonfinite_param,
    largest_gradient,
)

# --- divergence -------------------------------------------------------------------------------


def test_describe_is_one_line_with_where_what_and_the_fixes():
    message = describe(
        "the loss is nan", epoch=3, step=41, batch="batch 2 of 7", lr=0.05, base_lr=0.1,
        layer="dense_1/W",
    )  # fmt: skip
    assert message == (
        "training diverged at epoch 3, step 41 (batch 2 of 7): the loss is nan at dense_1/W "
        "(lr=0.05). Try a lower learning rate (optimizer.lr=0.01), gradient clipping "
        "(trainer.grad_clip.norm=1.0), or standardized inputs (dataset.standardize=true)"
    )
    bare = describe("x", epoch=1, step=1, batch="evaluation", lr=1e-7, base_lr=math.inf)
    assert bare.startswith("training diverged at epoch 1, step 1 (evaluation): x (lr=1e-07). ")
    assert "(optimizer.lr=a smaller value)" in bare
    assert issubclass(NonFiniteError, FloatingPointError)


def test_nonfinite_params_outputs_and_the_largest_gradient_are_named():
    a = Parameter("dense_0/W", np.ones(3))
    b = Parameter("dense_1/W", np.array([1.0, np.inf]))
    assert first_nonfinite_param([a, b], "weights") == "dense_1/W"
    assert first_nonfinite_param([a, b], "gradient") is None
    a.grad[1] = np.nan
    assert first_nonfinite_param([a, b], "gradient") == "dense_0/W"
    assert first_nonfinite_param([a], "weights") is None

    a.grad[...] = [1.0, -300.0, 2.0]
    b.grad[...] = [250.0, 1.0]
    assert largest_gradient([a, b]) == "dense_0/W (|gradient| up to 300)"
    empty = Parameter("empty", np.zeros(0))
    assert largest_gradient([empty, b]) == "dense_1/W (|gradient| up to 250)"

    model = mlp(2, [2], 1, activation="identity", dtype=np.float64, seed=0)
    x = np.ones((1, 2))
    out = first_nonfinite_output(model, x)
    assert out.startswith("the loss computation (outputs finite but up to ")
    assert out == f"the loss computation (outputs finite but up to {np.abs(model(x)).max():.3g})"
    assert first_nonfinite_output(model, np.array([[np.nan, 1.0]])) == (
        "the input batch itself (the data holds NaN/Inf)"
    )
    model[2].W.value[...] = np.inf
    assert first_nonfinite_output(model, x) == "the output of dense_1"


def test_all_finite_without_norms_checks_every_array():
    assert all_finite([np.ones(2), np.zeros(3)])
    assert all_finite([])
    assert not all_finite([np.ones(2), np.array([np.inf])])
    assert all_finite([np.ones(2)], norms=[1.0])


# --- callbacks and progress -------------------------------------------------------------------


class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("start")

    def on_batch_end(self, trainer, step, loss):
        self.events.append(("batch", step))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.events.append(("epoch", epoch))

    def on_fit_end(self, trainer, metrics):
        self.events.append("end")

    def on_exception(self, trainer, exc):
        self.events.append(("exception", type(exc).__name__))


class _FakeTrainer:
    def __init__(self, epochs, should_stop=False):
        self.settings = TrainSettings(epochs=epochs, batch_size=1)
        self.should_stop = should_stop


def test_every_n_epochs_forwards_every_nth_and_the_last_epoch_and_all_other_events():
    inner = _Recorder()
    every = EveryNEpochs(inner, 3)
    trainer = _FakeTrainer(epochs=7)
    every.on_fit_start(trainer)
    for epoch in range(1, 8):
        every.on_batch_end(trainer, epoch, 0.5)
        every.on_epoch_end(trainer, epoch, {})
    every.on_fit_end(trainer, {})
    every.on_exception(trainer, KeyError("k"))
    epochs = [e[1] for e in inner.events if isinstance(e, tuple) and e[0] == "epoch"]
    assert epochs == [3, 6, 7]  # every third, and the last
    assert [e for e in inner.events if isinstance(e, tuple) and e[0] == "batch"] == [
        ("batch", i) for i in range(1, 8)
    ]
    assert inner.events[0] == "start" and inner.events[-2:] == ["end", ("exception", "KeyError")]
    stopping = _Recorder()
    EveryNEpochs(stopping, 5).on_epoch_end(_FakeTrainer(epochs=9, should_stop=True), 2, {})
    assert stopping.events == [("epoch", 2)]  # a stopping run logs its last epoch too
    base = Callback()
    assert base.state_key is None and base.state_dict() == {}
    assert base.load_state_dict({}) is None


def test_progress_bar_shows_the_latest_metrics_and_closes(capsys):
    bar = ProgressBar()
    trainer = _FakeTrainer(epochs=3)
    trainer.epoch = 1
    bar.on_fit_start(trainer)
    assert bar._bar.total == 3 and bar._bar.n == 1 and bar._bar.unit == "epoch"
    bar.on_epoch_end(trainer, 2, {"train/loss": 0.123456, "val/loss": 2.0, "val/acc": 0.5})
    assert bar._bar.n == 2
    assert bar._bar.postfix == "loss=0.1235, val_loss=2, val_acc=0.5"
    bar.on_epoch_end(trainer, 3, {"train/loss": 1.0, "val/rmse": 3.25})
    assert bar._bar is None  # closed with the last epoch, before the model is logged
    bar.on_fit_end(trainer, {})
    bar.on_exception(trainer, ValueError())  # closing twice is harmless
    shown = capsys.readouterr().err
    assert "3/3" in shown and "loss=1, val_rmse=3.25" in shown
    off = ProgressBar(enabled=False)
    off.on_fit_start(trainer)
    off.on_epoch_end(trainer, 1, {"train/loss": 1.0})
    assert off._bar is None and capsys.readouterr().err == ""
    failing = ProgressBar()
    failing.on_fit_start(trainer)
    failing.on_exception(trainer, ValueError())
    assert failing._bar is None


# --- the model bundle ---------------------------------------------------------------------------


def _trained(loss, out_features, y, batch_norm=False):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    kwargs = dict(
        in_features=3, hidden=[5], out_features=out_features, activation="tanh",
        batch_norm=batch_norm, dtype="float64", seed=3,
    )  # fmt: skip
    model = mlp(**kwargs)
    task = {MSE: "regression", SigmoidBCE: "binary"}.get(type(loss), "multiclass")
    data = Splits(X[:30], y[:30], X[30:], y[30:], X[:0], y[:0], task=task)
    opt = SGD(list(model.parameters()), lr=0.1)
    Trainer(model, loss, opt, Constant(0.1), data, TrainSettings(epochs=3, batch_size=8)).fit()
    return model, kwargs, X


def test_bundle_round_trip_of_a_classifier_on_raw_inputs(tmp_path):
    y = np.random.default_rng(1).integers(0, 3, 40)
    model, kwargs, X = _trained(SoftmaxCrossEntropy(), 3, y, batch_norm=True)
    x_mean, x_scale = np.array([1.0, -2.0, 0.5]), np.array([2.0, 4.0, 0.5])
    path = save_bundle(
        tmp_path / "nested" / "bundle", model, mlp_kwargs=kwargs, loss="softmax_cross_entropy",
        task="multiclass", classes=["a", "b", "c"], x_mean=x_mean, x_scale=x_scale,
    )  # fmt: skip
    assert path == tmp_path / "nested" / "bundle"
    spec = json.loads((path / "spec.json").read_text())
    assert spec == {
        "format": 2, "mlp": kwargs, "loss": "softmax_cross_entropy", "task": "multiclass",
        "classes": ["a", "b", "c"], "labels": ["a", "b", "c"], "features": ["x0", "x1", "x2"],
        "layers": [
            {"kind": "dense", "name": "dense_0"},
            {"kind": "batchnorm", "name": "batchnorm_0", "eps": 1e-05},
            {"kind": "tanh", "name": "tanh_0"},
            {"kind": "dense", "name": "dense_1"},
        ],
    }  # fmt: skip
    with np.load(path / "weights.npz", allow_pickle=False) as f:
        keys = set(f.files)
    assert keys == {
        *(f"param/{p.name}" for p in model.parameters()),
        "buffer/batchnorm_0/running_mean", "buffer/batchnorm_0/running_var", "x_mean", "x_scale",
    }  # fmt: skip
    predictor = Predictor(path)
    assert predictor.task == "multiclass" and predictor.classes == ["a", "b", "c"]
    assert predictor.n_features == 3 and predictor.dtype == np.float64
    raw = X * x_scale + x_mean  # what a user passes: unstandardized
    logits = model.forward(X)
    np.testing.assert_allclose(predictor.logits(raw), logits, rtol=1e-12)
    np.testing.assert_array_equal(predictor.predict(raw), logits.argmax(axis=1))
    np.testing.assert_allclose(
        predictor.predict_proba(raw), SoftmaxCrossEntropy().predict_proba(logits), rtol=1e-12
    )
    np.testing.assert_allclose(predictor.logits(raw[0]), logits[:1], rtol=1e-12)  # one row
    with pytest.raises(ValueError, match=r"^expected inputs of shape \(n, 3\), got \(2, 4\)$"):
        predictor.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"^expected inputs of shape \(n, 3\), got \(1, 2, 3\)$"):
        predictor.predict(np.zeros((1, 2, 3)))


def test_bundle_of_a_regressor_undoes_the_target_scaling(tmp_path):
    y = np.random.default_rng(2).standard_normal(40)
    model, kwargs, X = _trained(MSE(), 1, y)
    path = save_bundle(
        tmp_path, model, mlp_kwargs=kwargs, loss="mse", task="regression",
        y_mean=10.0, y_scale=np.array([3.0]),
    )  # fmt: skip
    with np.load(path / "weights.npz", allow_pickle=False) as f:
        assert f["y_mean"].dtype == np.float64 and "x_mean" not in f.files
    predictor = Predictor(path)
    assert predictor.classes is None and predictor.x_mean is None
    np.testing.assert_allclose(predictor.predict(X), model.forward(X)[:, 0] * 3.0 + 10.0)
    plain = save_bundle(tmp_path / "plain", model, mlp_kwargs=kwargs, loss="mse", task="regression")
    np.testing.assert_allclose(Predictor(plain).predict(X), model.forward(X)[:, 0])


def test_bundle_dtype_defaults_to_float32_and_binary_probabilities(tmp_path):
    y = (np.arange(40) % 2).astype(np.float64)
    _, kwargs, X = _trained(SigmoidBCE(), 1, y)
    del kwargs["dtype"]  # a spec without a dtype: the mlp default (float32)
    model = mlp(**kwargs)
    path = save_bundle(tmp_path, model, mlp_kwargs=kwargs, loss="sigmoid_bce", task="binary")
    predictor = Predictor(path)
    assert predictor.dtype == np.float32
    logits = model.forward(X.astype(np.float32))
    np.testing.assert_allclose(predictor.predict_proba(X), SigmoidBCE().predict_proba(logits))
    assert predictor.predict_proba(X).dtype == np.float32
    np.testing.assert_array_equal(predictor.predict(X), (logits[:, 0] > 0).astype(np.int64))


# --- early stopping -----------------------------------------------------------------------------


class _Model:
    def __init__(self, buffers):
        self._buffers = buffers

    def buffers(self):
        return self._buffers


class _StoppingTrainer:
    """What EarlyStopping touches of a trainer: parameters, buffers, the stop flags."""

    def __init__(self, epochs=100):
        self.params = [Parameter("w", np.zeros(2))]
        self.model = _Model({"bn/running_mean": np.zeros(2)})
        self.settings = TrainSettings(epochs=epochs, batch_size=1)
        self.should_stop, self.stop_reason, self.restored, self.epoch = False, "", None, 0

    def epoch_end(self, stopper, epoch, val_loss, **extra):
        self.params[0].value[...] = epoch  # the weights of each epoch are recognizable
        self.model.buffers()["bn/running_mean"][...] = -epoch
        metrics = {"val/loss": val_loss, "train/loss": 1.0, "lr": 0.1, "grad_norm/x": 2.0}
        stopper.on_epoch_end(self, epoch, metrics | extra)


def test_early_stopping_defaults_patience_and_the_restored_epoch():
    from nnexp.train import EarlyStopping

    stopper = EarlyStopping()
    assert (stopper.patience, stopper.min_delta, stopper.restore_best) == (10, 0.0, True)
    assert stopper.objective.key == "val/loss" and stopper.best == math.inf
    trainer = _StoppingTrainer()
    losses = [1.0, 0.5, 0.5, 0.6, *[0.7] * 8]  # best at epoch 2; 0.5 again is no improvement
    for epoch, loss in enumerate(losses, start=1):
        trainer.epoch_end(stopper, epoch, loss)
        if trainer.should_stop:
            break
    assert epoch == 12 and stopper.bad_epochs == 10  # the 10th epoch without improvement
    assert trainer.stop_reason == (
        "early stopping: no val/loss (lower is better) improvement for 10 epochs "
        "(best 0.5 at epoch 2)"
    )
    assert (stopper.best, stopper.best_epoch) == (0.5, 2)
    np.testing.assert_array_equal(trainer.params[0].value, [2.0, 2.0])  # epoch 2's weights
    np.testing.assert_array_equal(trainer.model.buffers()["bn/running_mean"], [-2.0, -2.0])
    assert trainer.restored == (2, {"val/loss": 0.5, "train/loss": 1.0})


def test_early_stopping_min_delta_without_restore_and_at_the_last_epoch():
    from nnexp.train import EarlyStopping

    stopper = EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
    trainer = _StoppingTrainer()
    trainer.epoch_end(stopper, 1, 1.0)
    trainer.epoch_end(stopper, 2, 0.95)  # better, but not by more than 0.1
    assert stopper.bad_epochs == 1 and not trainer.should_stop
    trainer.epoch_end(stopper, 3, 0.85)  # by more than 0.1: counts as an improvement
    assert stopper.bad_epochs == 0 and stopper.best_epoch == 3
    trainer.epoch_end(stopper, 4, 0.9)
    trainer.epoch_end(stopper, 5, 0.9)
    assert trainer.should_stop and trainer.restored is None
    np.testing.assert_array_equal(trainer.params[0].value, [5.0, 5.0])  # left as they are
    restoring = EarlyStopping(patience=5)
    short = _StoppingTrainer(epochs=3)
    for epoch, loss in ((1, 0.3), (2, 0.2), (3, 0.4)):
        short.epoch_end(restoring, epoch, loss)
    assert not short.should_stop and short.restored == (2, {"val/loss": 0.2, "train/loss": 1.0})
    np.testing.assert_array_equal(short.params[0].value, [2.0, 2.0])  # restored at the end


def test_early_stopping_state_round_trip_and_a_resumed_ended_run():
    from nnexp.train import EarlyStopping

    stopper = EarlyStopping(patience=3)
    trainer = _StoppingTrainer(epochs=3)
    for epoch, loss in ((1, 0.3), (2, 0.2), (3, 0.25)):
        trainer.epoch_end(stopper, epoch, loss, **{"val/acc": 0.75})
    state = stopper.state_dict()
    assert set(state) == {
        "best", "best_epoch", "bad_epochs", "value/0", "buffer/bn/running_mean",
        "metric/val/loss", "metric/train/loss", "metric/val/acc",
    }  # fmt: skip
    assert stopper.state_key == "early_stopping"
    again = EarlyStopping(patience=3)
    again.load_state_dict(state)
    assert (again.best, again.best_epoch, again.bad_epochs) == (0.2, 2, 1)
    resumed = _StoppingTrainer(epochs=3)
    resumed.epoch = 3  # the checkpoint of the last epoch: the run had ended
    again.on_fit_start(resumed)
    assert resumed.restored == (2, {"val/loss": 0.2, "train/loss": 1.0, "val/acc": 0.75})
    running = _StoppingTrainer(epochs=10)
    running.epoch = 3
    again.on_fit_start(running)
    assert running.restored is None  # still training: nothing to report yet
    fresh = EarlyStopping()
    fresh.load_state_dict(EarlyStopping().state_dict())
    assert fresh._best_values is None and fresh.best == math.inf


# --- found by the mutation run --------------------------------------------------------------------


def test_every_n_epochs_passes_the_loss_of_each_batch_on():
    seen = []

    class Inner(Callback):
        def on_batch_end(self, trainer, step, loss):
            seen.append((step, loss))

    EveryNEpochs(Inner(), 4).on_batch_end(_FakeTrainer(epochs=2), 7, 0.25)
    assert seen == [(7, 0.25)]


def test_the_replay_runs_in_training_mode_like_the_step_it_explains():
    from nnexp.nn import Dropout, Sequential

    model = Sequential([Dropout(0.5, rng=np.random.default_rng(0))])
    x = np.full((1, 8), 2e38, dtype=np.float32)  # finite; twice as much (a kept unit) is not
    with np.errstate(over="ignore"):
        assert first_nonfinite_output(model, x) == "the output of dropout_0"


def test_blas_tags_and_description_name_each_library():
    from nnexp.train import blas

    pools = blas.blas_pools()
    assert pools and all(p["user_api"] == "blas" for p in pools)
    keys = [(str(p.get("internal_api")), str(p.get("version"))) for p in pools]
    assert keys == sorted(keys)
    tags = blas.blas_tags()
    assert set(tags) == {"blas.library", "blas.kernel", "blas.threads"}
    assert tags["blas.library"] == "; ".join(f"{a} {v}" for a, v in keys)
    assert tags["blas.kernel"] == "; ".join(str(p.get("architecture")) for p in pools)
    assert tags["blas.threads"] == "; ".join(str(p.get("num_threads")) for p in pools)
    p = pools[0]
    assert blas.describe_blas().startswith(
        f"{p['internal_api']} {p['version']} kernel={p['architecture']} threads={p['num_threads']}"
    )


def test_blas_tags_when_threadpoolctl_finds_none(monkeypatch):
    from nnexp.train import blas

    monkeypatch.setattr(blas, "blas_pools", lambda: [])
    assert blas.blas_tags() == {"blas.library": "none found by threadpoolctl"}
    assert blas.describe_blas() == "no BLAS found by threadpoolctl"
    fake = [
        {
            "internal_api": "openblas",
            "version": "0.3.9",
            "architecture": "Haswell",
            "num_threads": 4,
        },
        {"internal_api": "mkl", "version": "2024", "architecture": "x", "num_threads": 1},
    ]
    monkeypatch.setattr(blas, "blas_pools", lambda: fake)
    assert blas.blas_tags()["blas.library"] == "openblas 0.3.9; mkl 2024"
    assert blas.describe_blas() == (
        "openblas 0.3.9 kernel=Haswell threads=4; mkl 2024 kernel=x threads=1"
    )


def _small_trainer(tmp_path, *callbacks, dropout=0.0):
    from nnexp.nn import SGD

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    model = mlp(2, [3], 1, dropout=dropout, dtype="float64", seed=1)
    data = Splits(X[:16], y[:16], X[16:], y[16:], X[:0], y[:0], task="binary")
    opt = SGD(list(model.parameters()), lr=0.1)
    settings = TrainSettings(epochs=2, batch_size=8, stats=())
    return Trainer(model, SigmoidBCE(), opt, Constant(0.1), data, settings, list(callbacks))


def test_restore_carries_the_stop_flag_and_tolerates_missing_optional_state(tmp_path):
    from nnexp.train import EarlyStopping
    from nnexp.train.checkpoint import restore, trainer_state

    done = _small_trainer(tmp_path)
    done.fit()
    done.should_stop, done.stop_reason = True, "early stopping: enough"
    state = {k: np.array(v, copy=True) for k, v in trainer_state(done).items()}
    again = _small_trainer(tmp_path, EarlyStopping(patience=3))  # no early-stopping state saved
    restore(again, state)
    assert again.should_stop and again.stop_reason == "early stopping: enough"
    assert again.callbacks[0].best == math.inf  # kept its fresh state
    dropped = _small_trainer(tmp_path, dropout=0.5)  # same weights, dropout added: no RNG saved
    before = dropped.model[2].rng.bit_generator.state
    restore(dropped, state)
    assert dropped.model[2].rng.bit_generator.state == before


def test_an_architecture_mismatch_names_the_extra_and_missing_arrays(tmp_path):
    from nnexp.train import CheckpointError
    from nnexp.train.checkpoint import restore, trainer_state

    state = dict(trainer_state(_small_trainer(tmp_path)))
    state["param/dense_9/W"] = np.zeros((1, 1))
    with pytest.raises(CheckpointError) as info:
        restore(_small_trainer(tmp_path), state, source="ckpt.npz")
    assert str(info.value) == (
        "ckpt.npz: other architecture: the model has no ['param/dense_9/W'] and needs [] "
        "(was model.* changed since the checkpoint was written?)"
    )
    state = {k: v.astype(np.float32) if k.startswith("param/") else v for k, v in
             trainer_state(_small_trainer(tmp_path)).items()}  # fmt: skip
    with pytest.raises(CheckpointError) as info:
        restore(_small_trainer(tmp_path), state, source="ckpt.npz")
    assert str(info.value) == (
        "ckpt.npz: other dtype: param/dense_0/W is float32, this run uses float64 (trainer.dtype)"
    )


def test_history_skips_a_torn_line_anywhere(tmp_path):
    from nnexp.train.checkpoint import load_history

    lines = [
        json.dumps({"epoch": 1, "metrics": {"val/loss": 1.0}}),
        '{"epoch": 2, "metr',  # torn (a crash mid-write), then the run went on
        json.dumps({"epoch": 2, "metrics": {"val/loss": 0.5}}),
        json.dumps({"epoch": 3, "metrics": {"val/loss": 0.25}}),
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_history(tmp_path, 3) == [{"val/loss": 1.0}, {"val/loss": 0.5}, {"val/loss": 0.25}]
    assert load_history(tmp_path, 2) == [{"val/loss": 1.0}, {"val/loss": 0.5}]


def test_blas_pools_are_sorted_by_library_and_version_whatever_the_load_order(monkeypatch):
    import threadpoolctl

    from nnexp.train import blas

    loaded = [
        {"user_api": "blas", "internal_api": "openblas", "version": "0.3.31"},
        {"user_api": "openmp", "internal_api": "openmp", "version": None},
        {"user_api": "blas", "internal_api": "mkl", "version": "2025"},
        {"user_api": "blas", "internal_api": "openblas", "version": "0.3.29"},
    ]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: loaded)
    assert [(p["internal_api"], p["version"]) for p in blas.blas_pools()] == [
        ("mkl", "2025"), ("openblas", "0.3.29"), ("openblas", "0.3.31"),
    ]  # fmt: skip
