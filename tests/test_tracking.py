"""nnexp.tracking against a real sqlite MLflow store: a run gets its params (chunked past 100),
tags, every metric at its epoch (past 1000 buffered points), the config, Hydra files,
checkpoints and plots as artifacts, and a pyfunc model that predicts exactly what `Predictor`
predicts (also in a fresh interpreter where nnexp cannot be imported). A crash ends the run
FAILED with its error (and `diverged` for NaN), keeps the checkpoints, and is never masked by
a tracking failure. A fake trainer drives the callback; nnexp.train is not needed.

One store per module (creating an MLflow sqlite schema takes seconds); each test uses its own
experiment or run in it."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnexp.nn import mlp
from nnexp.tracking import MlflowTracker, configure_mlflow_env, limits, make_plots
from nnexp.tracking.plots import curves_figure, grad_norms_figure
from nnexp.train.export import Predictor, save_bundle

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow is first imported

EPOCHS = 30
N_PARAMS = 150  # > 100: params go in two log_batch calls


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SimpleNamespace:
    """A sqlite store that is *not* MLflow's default (./mlflow.db in the working directory),
    so a call that ignored the tracker's URI would miss it. MLflow puts ``mlruns/`` in the
    working directory."""
    root = tmp_path_factory.mktemp("mlflow")
    workdir = root / "work"
    workdir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from mlflow import MlflowClient

        uri = f"sqlite:///{root}/mlflow.db"
        yield SimpleNamespace(root=root, workdir=workdir, uri=uri, client=MlflowClient(uri))


def _task(kind: str, seed: int = 0) -> SimpleNamespace:
    """A small untrained network, its bundle writer, and raw inputs far from standardized."""
    rng = np.random.default_rng(seed)
    X = rng.normal(5.0, 3.0, size=(64, 4))
    if kind == "classification":
        kwargs = dict(in_features=4, hidden=[8, 8], out_features=3, activation="tanh", seed=seed)
        bundle = dict(loss="softmax_cross_entropy", task="multiclass", classes=["a", "b", "c"])
    else:
        kwargs = dict(in_features=4, hidden=[8], out_features=1, dtype="float64", seed=seed)
        bundle = dict(loss="mse", task="regression", y_mean=100.0, y_scale=15.0)
    model = mlp(**kwargs)
    write_bundle = functools.partial(
        save_bundle,
        model=model,
        mlp_kwargs=kwargs,
        x_mean=X.mean(axis=0),
        x_scale=X.std(axis=0),
        **bundle,
    )
    return SimpleNamespace(X=X, write_bundle=write_bundle)


def _history(epochs: int, task: str = "classification") -> list[dict[str, float]]:
    """Per-epoch metrics as the trainer reports them: 39 keys an epoch."""
    rows = []
    for e in range(1, epochs + 1):
        row = {"train/loss": 1.0 / e, "val/loss": 1.2 / e, "lr": 0.1, "time/epoch_s": 0.01}
        row |= {"train/acc": 1 - 0.5 / e, "val/acc": 1 - 0.6 / e}
        if task == "regression":
            row = {k.replace("/acc", "/rmse"): v for k, v in row.items()}
        for layer in range(4):  # the early sigmoid layers' gradients vanish
            for stat, scale in (("mean", 1.0), ("max", 3.0)):
                row[f"grad_norm/dense_{layer}/W/{stat}"] = scale * 10.0 ** (layer - 4) / e
                row[f"grad_norm/dense_{layer}/b/{stat}"] = scale * 10.0 ** (layer - 4)
            row[f"update_ratio/dense_{layer}"] = 1e-3
        for layer in range(3):
            row |= {f"act/sigmoid_{layer}/{s}": 0.5 for s in ("mean", "std", "sat_frac")}
        row |= {"grad_norm/global/mean": 0.1, "grad_norm/global/max": 0.2}
        row |= {"act/extra/mean": float(e), "act/extra/std": 0.0}
        rows.append(row)
    return rows


def _tracker(store, tmp_path: Path, name: str, **overrides) -> MlflowTracker:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    for stem in ("config", "overrides", "hydra"):
        (run_dir / ".hydra" / f"{stem}.yaml").write_text(f"# {stem}\nkey: {stem}\n")
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir()
    for stem in ("best", "last"):
        np.savez(ckpt / f"{stem}.npz", W=np.arange(6.0).reshape(2, 3), epoch=np.array(3))
    params = {f"group{i % 7}.key{i}": i for i in range(N_PARAMS)}
    params |= {"model.hidden": [64, 32], "model.note": "x" * 10_000, "model.init": None}
    task = _task("classification")
    kwargs = dict(
        uri=store.uri,
        experiment=name,
        run_name=f"{name}-run",
        params=params,
        tags={"overrides": "model=deep optimizer.lr=0.1", "task": "multiclass"},
        run_dir=run_dir,
        checkpoint_dir=ckpt,
        write_bundle=task.write_bundle,
        input_example=task.X[:5],
        flush_every_s=1e9,  # only fit end and errors flush: > 1000 points wait in the buffer
    )
    return MlflowTracker(**(kwargs | overrides))


def _fit(tracker: MlflowTracker, history: list[dict], *, final=None, fail=None):
    """What `Trainer.fit` does with a callback: epochs, then fit end, or on error
    `on_exception` and re-raise."""
    trainer = SimpleNamespace(epoch=0, global_step=0, history=[])
    try:
        tracker.on_fit_start(trainer)
        for row in history:
            trainer.epoch += 1
            trainer.global_step += 10
            trainer.history.append(row)
            tracker.on_epoch_end(trainer, trainer.epoch, row)
        if fail is not None:
            raise fail
        tracker.on_fit_end(trainer, dict(history[-1]) | (final or {}))
    except BaseException as exc:
        tracker.on_exception(trainer, exc)
        raise
    return trainer


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory) -> SimpleNamespace:
    """A 30-epoch classification run that ends normally."""
    import mlflow

    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), list(sys.path))
    tracker = _tracker(store, tmp_path_factory.mktemp("finished"), "finished")
    history = _history(EPOCHS)
    _fit(tracker, history, final={"test/loss": 0.05, "test/acc": 0.97, "epochs_run": EPOCHS})
    after = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), list(sys.path))
    run = store.client.get_run(tracker.run_id)
    return SimpleNamespace(tracker=tracker, run=run, history=history, globals=(before, after))


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


# --- a finished run -------------------------------------------------------------------------


def test_run_is_finished_with_tags_and_a_model_uri(finished, store):
    run = finished.run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "finished-run"
    assert run.info.experiment_id == finished.tracker.experiment_id
    tags = run.data.tags
    assert tags["overrides"] == "model=deep optimizer.lr=0.1"
    assert tags["task"] == "multiclass"
    assert "error" not in tags and "mlflow.parentRunId" not in tags
    # MLflow 3's LoggedModel: from this run, with the metrics of the last epoch attached
    model = store.client.get_logged_model(tags["model_uri"].removeprefix("models:/"))
    assert (model.name, model.source_run_id) == ("model", run.info.run_id)
    assert {m.key: m.value for m in model.metrics or []}["test/acc"] == 0.97


def test_params_are_all_logged_with_dotted_keys(finished):
    params = finished.run.data.params
    assert len(params) == N_PARAMS + 3
    assert params["group3.key10"] == "10"
    assert params["model.hidden"] == "[64, 32]"
    assert params["model.init"] == "None"
    assert params["model.note"] == "x" * limits.PARAM_VALUE_LENGTH  # truncated, not rejected


def test_every_metric_is_logged_once_at_its_epoch(finished, store):
    client, run_id = store.client, finished.run.info.run_id
    val_loss = client.get_metric_history(run_id, "val/loss")
    # steps 1..30; the final metrics repeat epoch 30's and are not logged twice
    assert [m.step for m in val_loss] == list(range(1, EPOCHS + 1))
    assert [m.value for m in val_loss] == pytest.approx([1.2 / e for e in range(1, EPOCHS + 1)])
    (test_acc,) = client.get_metric_history(run_id, "test/acc")
    assert (test_acc.step, test_acc.value) == (EPOCHS, 0.97)
    # 39 keys x 30 epochs = 1170 points were buffered: none lost past one log_batch of 1000
    keys = finished.history[0].keys()
    assert keys <= finished.run.data.metrics.keys()
    total = sum(len(client.get_metric_history(run_id, key)) for key in keys)
    assert total == len(keys) * EPOCHS > limits.METRICS_PER_BATCH


def test_artifacts_config_hydra_checkpoints_plots(finished, store):
    client, run_id = store.client, finished.run.info.run_id
    assert {"config.yaml", "hydra", "checkpoints", "plots"} <= _artifacts(client, run_id)
    assert _artifacts(client, run_id, "hydra") == {
        f"hydra/{s}.yaml" for s in ("config", "overrides", "hydra")
    }
    assert _artifacts(client, run_id, "plots") == {"plots/curves.png", "plots/grad_norms.png"}
    assert _artifacts(client, run_id, "checkpoints") == {
        "checkpoints/best.npz",
        "checkpoints/last.npz",
    }
    import mlflow

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="checkpoints/last.npz", tracking_uri=store.uri
    )
    with np.load(local, allow_pickle=False) as f:
        assert np.array_equal(f["W"], np.arange(6.0).reshape(2, 3))
    config = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="config.yaml", tracking_uri=store.uri
    )
    assert Path(config).read_text() == "# config\nkey: config\n"


def test_mlflow_global_state_is_left_as_it_was(finished, store):
    import mlflow

    before, after = finished.globals
    assert before == after  # tracking URI, MLFLOW_TRACKING_URI, sys.path
    assert mlflow.active_run() is None
    assert not (store.workdir / "mlflow.db").exists()  # nothing went to the default store


# --- the pyfunc model -----------------------------------------------------------------------


def _reference(task: SimpleNamespace, tmp_path: Path, X: np.ndarray) -> np.ndarray:
    """What nnexp.nn's network predicts: the values, or the labels of the class indices."""
    predictor = Predictor(task.write_bundle(tmp_path / "reference"))
    predicted = predictor.predict(X)
    return predicted if predictor.classes is None else np.asarray(predictor.classes)[predicted]


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_pyfunc_model_predicts_what_predictor_predicts(store, tmp_path, kind, monkeypatch):
    import mlflow
    import pandas as pd

    task = _task(kind, seed=1)
    tracker = _tracker(
        store, tmp_path, f"model-{kind}", write_bundle=task.write_bundle, input_example=task.X[:3]
    )
    _fit(tracker, _history(2, "regression" if kind == "regression" else "classification"))
    run = store.client.get_run(tracker.run_id)
    X = np.random.default_rng(7).normal(5.0, 3.0, size=(50, 4))
    expected = _reference(task, tmp_path, X)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)  # where load_model resolves URIs
    columns = ["x0", "x1", "x2", "x3"]  # the signature names the features
    for uri in (run.data.tags["model_uri"], f"runs:/{tracker.run_id}/model"):
        model = mlflow.pyfunc.load_model(uri)
        assert model.metadata.get_input_schema().input_names() == columns
        assert np.array_equal(model.predict(pd.DataFrame(X, columns=columns)), expected)
        with pytest.raises(mlflow.exceptions.MlflowException, match=r"missing inputs \['x0'"):
            model.predict(X)  # unnamed columns: MLflow's own check of a column-named signature
    if kind == "classification":
        assert set(expected) == {"a", "b", "c"}  # the labels, not the class indices
    else:
        assert expected.dtype.kind == "f" and abs(expected.mean() - 100.0) < 50


_FRESH_INTERPRETER = """
import importlib.abc, importlib.util, json, sys
# nnexp is not installed here (its editable-install finder removed; -I keeps the cwd and
# PYTHONPATH off sys.path; any import of it is refused), and neither are the runner's
# dependencies.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
assert importlib.util.find_spec("nnexp") is None

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in {"nnexp", "hydra", "omegaconf", "tqdm", "sklearn", "matplotlib"}:
            raise ModuleNotFoundError(f"blocked: {name}")

sys.meta_path.insert(0, Block())
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
X = pd.DataFrame(json.loads(sys.argv[2]), columns=["x0", "x1", "x2", "x3"])
served = sys.modules["nnexp_serving"].__file__
nnexp = sorted(m for m in sys.modules if m == "nnexp" or m.startswith("nnexp."))
print(json.dumps({"pred": model.predict(X).tolist(), "served": served, "nnexp": nnexp}))
"""


@pytest.mark.slow  # a fresh interpreter imports mlflow: ~8 s
def test_pyfunc_model_loads_where_nnexp_is_not_installed(finished, store, tmp_path):
    X = np.random.default_rng(3).normal(5.0, 3.0, size=(20, 4))
    env = dict(os.environ, MLFLOW_TRACKING_URI=store.uri, MLFLOW_DISABLE_TELEMETRY="true")
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            textwrap.dedent(_FRESH_INTERPRETER),
            f"runs:/{finished.run.info.run_id}/model",
            json.dumps(X.tolist()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "/code/nnexp_serving/" in out["served"]  # the copy logged with the model
    assert out["nnexp"] == []
    assert out["pred"] == _reference(_task("classification"), tmp_path, X).tolist()


# --- failures -------------------------------------------------------------------------------


def test_divergence_ends_the_run_failed_with_checkpoints_and_metrics(store, tmp_path, caplog):
    tracker = _tracker(store, tmp_path, "diverged")
    history = _history(3)
    history[-1]["train/loss"] = math.nan
    with pytest.raises(FloatingPointError, match="diverged at epoch 3"):
        _fit(tracker, history, fail=FloatingPointError("training diverged at epoch 3"))
    run = store.client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "FloatingPointError: training diverged at epoch 3"
    assert run.data.tags["diverged"] == "true"
    assert "model_uri" not in run.data.tags
    client = store.client
    assert _artifacts(client, tracker.run_id, "checkpoints") == {
        "checkpoints/best.npz",
        "checkpoints/last.npz",
    }
    assert "plots/grad_norms.png" in _artifacts(client, tracker.run_id, "plots")
    loss = client.get_metric_history(tracker.run_id, "train/loss")
    assert [m.step for m in loss] == [1, 2, 3] and math.isnan(loss[-1].value)  # NaN is kept
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # (nnexp logs them)


def test_other_errors_fail_without_diverged_and_ctrl_c_is_killed(store, tmp_path):
    failed = _tracker(store, tmp_path / "a", "errors")
    with pytest.raises(ValueError):
        _fit(failed, _history(1), fail=ValueError("bad " + "y" * 20_000))
    run = store.client.get_run(failed.run_id)
    assert run.info.status == "FAILED" and "diverged" not in run.data.tags
    assert run.data.tags["error"].startswith("ValueError: bad yyy")
    assert len(run.data.tags["error"]) == limits.TAG_VALUE_LENGTH

    killed = _tracker(store, tmp_path / "b", "errors")
    with pytest.raises(KeyboardInterrupt):
        _fit(killed, _history(1), fail=KeyboardInterrupt())
    run = store.client.get_run(killed.run_id)
    assert run.info.status == "KILLED"
    assert run.info.experiment_id == failed.experiment_id  # the experiment is reused


def test_a_tracking_failure_during_a_crash_does_not_mask_the_error(store, tmp_path, caplog):
    tracker = _tracker(store, tmp_path, "broken")
    trainer = SimpleNamespace(epoch=0, global_step=0, history=[])
    tracker.on_fit_start(trainer)
    trainer.epoch, trainer.history = 1, _history(1)
    tracker.on_epoch_end(trainer, 1, trainer.history[0])

    def unavailable(*args, **kwargs):
        raise ConnectionError("tracking server unavailable")

    tracker.client.log_batch = unavailable  # flushing metrics and tagging the error fail
    with pytest.raises(FloatingPointError, match="nan loss"):
        try:
            raise FloatingPointError("nan loss")
        except BaseException as exc:
            tracker.on_exception(trainer, exc)  # must not raise
            raise
    err = caplog.text  # nnexp's warnings go through logging
    assert "could not flush metrics" in err and "tracking server unavailable" in err
    # the steps that still work still ran: checkpoints logged, run ended
    assert store.client.get_run(tracker.run_id).info.status == "FAILED"
    assert "checkpoints" in _artifacts(store.client, tracker.run_id)


def test_metrics_are_flushed_every_flush_every_s(store, tmp_path):
    eager = _tracker(store, tmp_path / "a", "flush", flush_every_s=0.0)
    lazy = _tracker(store, tmp_path / "b", "flush")  # flush_every_s=1e9
    for tracker in (eager, lazy):
        # A fresh run (epoch 0): a trainer that starts later is a resume, and the tracker
        # back-fills the epochs it missed at once.
        trainer = SimpleNamespace(epoch=0, global_step=0, history=[])
        tracker.on_fit_start(trainer)
        trainer.epoch, trainer.global_step, trainer.history = 1, 10, _history(1)
        tracker.on_epoch_end(trainer, 1, trainer.history[0])
    assert len(store.client.get_metric_history(eager.run_id, "val/loss")) == 1
    assert len(store.client.get_metric_history(lazy.run_id, "val/loss")) == 0


def test_without_a_uri_the_tracker_follows_mlflow_tracking_uri(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    tracker = _tracker(store, tmp_path, "env-uri", uri=None)
    tracker.on_fit_start(SimpleNamespace(epoch=0, global_step=0, history=[]))
    assert store.client.get_run(tracker.run_id).info.run_name == "env-uri-run"


def test_on_exception_before_the_run_exists_does_nothing(store, tmp_path):
    tracker = _tracker(store, tmp_path, "never-started")
    tracker.on_exception(SimpleNamespace(epoch=0, global_step=0, history=[]), RuntimeError("x"))
    assert tracker.run_id is None


def test_a_sweep_job_is_nested_under_its_parent(store, tmp_path):
    experiment_id = store.client.create_experiment("sweep")
    parent = store.client.create_run(experiment_id, run_name="sweep")
    tracker = _tracker(store, tmp_path, "sweep", parent_run_id=parent.info.run_id)
    tracker.on_fit_start(SimpleNamespace(epoch=0, global_step=0, history=[]))
    run = store.client.get_run(tracker.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert tracker.experiment_id == experiment_id


# --- pieces ---------------------------------------------------------------------------------


def test_limits_fit_the_installed_mlflow():
    from mlflow.utils import validation as v

    assert limits.PARAMS_PER_BATCH <= v.MAX_PARAMS_TAGS_PER_BATCH
    assert min(v.MAX_METRICS_PER_BATCH, v.MAX_ENTITIES_PER_BATCH) >= limits.METRICS_PER_BATCH
    assert limits.PARAM_VALUE_LENGTH <= v.MAX_PARAM_VAL_LENGTH
    assert limits.TAG_VALUE_LENGTH <= v.MAX_TAG_VAL_LENGTH


def test_param_values():
    assert limits.param_value([64, 32]) == "[64, 32]"
    assert limits.param_value(("relu", "tanh")) == '["relu", "tanh"]'
    assert limits.param_value([Path("a")]) == "[PosixPath('a')]"
    assert limits.param_value(0.1) == "0.1"
    assert limits.param_value(True) == "True"


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_plots_from_history(tmp_path):
    paths = make_plots(_history(5), tmp_path)
    assert [p.name for p in paths] == ["curves.png", "grad_norms.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


@pytest.mark.parametrize(("task", "quality"), [("classification", "acc"), ("regression", "rmse")])
def test_curves_png_has_one_labelled_line_per_split_and_metric(task, quality):
    """curves.png: a loss panel (train/loss, val/loss) and a panel for the first quality metric
    (train and val), against epoch; each line carries its epochs' values and its legend entry."""
    history = _history(5, task)
    axes = curves_figure(history).get_axes()
    assert len(axes) == 2
    for ax, metric in zip(axes, ("loss", quality), strict=True):
        keys = [f"train/{metric}", f"val/{metric}"]
        assert _labels(ax) == keys
        assert _legend(ax) == keys
        assert ax.get_title() == metric
        assert ax.get_xlabel() == "epoch"
        for line, key in zip(ax.get_lines(), keys, strict=True):
            assert list(line.get_xdata()) == [1, 2, 3, 4, 5]
            np.testing.assert_allclose(line.get_ydata(), [row[key] for row in history])
    # Without a quality metric: the loss panel alone.
    only_loss = [{k: v for k, v in r.items() if not k.endswith(quality)} for r in history]
    (ax,) = curves_figure(only_loss).get_axes()
    assert _labels(ax) == ["train/loss", "val/loss"]


def test_curves_png_y_axes_are_labelled():
    axes = curves_figure(_history(3)).get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss", "acc"]


def test_grad_norms_png_has_one_line_per_layer_of_weight_gradient_means():
    """grad_norms.png: one line per layer (dense_0..dense_3), each the per-epoch mean of dL/dW
    (not the max, not the bias), on a log axis with labelled axes and a legend per layer."""
    history = _history(5)
    fig = grad_norms_figure(history)
    (ax,) = fig.get_axes()
    layers = [f"dense_{i}" for i in range(4)]
    assert _labels(ax) == layers
    assert _legend(ax) == layers
    for line, layer in zip(ax.get_lines(), layers, strict=True):
        key = f"grad_norm/{layer}/W/mean"
        np.testing.assert_allclose(line.get_ydata(), [row[key] for row in history])
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch"
    assert "dL/dW" in ax.get_ylabel()
    # The vanishing gradient shows: the first layer's line lies 3 decades below the last's.
    first, last = ax.get_lines()[0].get_ydata(), ax.get_lines()[-1].get_ydata()
    np.testing.assert_allclose(np.asarray(last) / np.asarray(first), 1000.0)
    assert (
        grad_norms_figure([{k: v for k, v in r.items() if "grad" not in k} for r in history])
        is None
    )


@pytest.mark.parametrize("epochs", [0, 1, 4])
def test_plots_survive_nan_inf_zeros_and_short_runs(tmp_path, epochs):
    history = _history(epochs, "regression")
    for row in history[1:]:
        row |= {"train/loss": math.inf, "val/rmse": math.nan, "grad_norm/dense_0/W/mean": 0.0}
        row["grad_norm/dense_1/W/mean"] = -math.inf
    paths = make_plots(history, tmp_path)
    assert len(paths) == (2 if epochs else 0)
    without_grads = [{k: v for k, v in r.items() if "grad" not in k} for r in history]
    assert [p.name for p in make_plots(without_grads, tmp_path / "g")] == (
        ["curves.png"] if epochs else []
    )
    if not epochs:
        return
    # Non-finite values are gaps; the first epoch is still drawn. Zeros on the log axis are
    # not gaps: they lie on its "exactly 0" floor (tests/test_plots.py).
    loss_ax, rmse_ax = curves_figure(history).get_axes()
    train_loss = loss_ax.get_lines()[0].get_ydata()
    assert train_loss[0] == 1.0 and np.isnan(train_loss[1:]).all()
    assert np.isnan(rmse_ax.get_lines()[1].get_ydata()[1:]).all()
    (grad_ax,) = grad_norms_figure(history).get_axes()
    dense_0, dense_1 = grad_ax.get_lines()[:2]
    assert np.isfinite(dense_0.get_ydata()).all()
    assert (dense_0.get_ydata()[1:] < dense_0.get_ydata()[0]).all()  # on the floor, below
    assert np.isnan(dense_1.get_ydata()[1:]).all()
    # A line needs two points: short runs get markers.
    assert all(line.get_marker() == "o" for line in loss_ax.get_lines())


def test_env_defaults_do_not_override_the_user(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    configure_mlflow_env()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


def test_importing_nnexp_tracking_imports_neither_mlflow_nor_matplotlib():
    code = (
        "import sys, nnexp.tracking, os; "
        "print(sorted(m for m in ('mlflow', 'matplotlib') if m in sys.modules), "
        "os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]", "true"]
