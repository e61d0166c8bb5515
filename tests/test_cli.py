"""The runner end to end: the real CLI in a subprocess, a real sqlite MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import model_rows

from nnexp.nn import SigmoidBCE, mlp
from nnexp.train import load_checkpoint

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ("trainer.epochs=1", "trainer.batch_size=64", "trainer.checkpoint_every=1")
GROUPS = ("model", "optimizer", "schedule", "dataset", "regularization")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def write_csv(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    rows = ["a,b,c,label"] + [f"{a},{b},{c},{int(a + b > 0)}" for a, b, c in X]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    return ["dataset.path=data.csv", "dataset.target=label"]


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_runs_and_is_tracked(cli, group, tmp_path):
    """One multirun per group: every option composes, validates, trains one epoch, and lands in
    MLflow FINISHED with params, metrics (with steps), statistics and artifacts."""
    opts = options(group)
    if group == "dataset":
        # The user's own file needs its path: it runs on its own, the rest as one sweep.
        cli.ok("dataset=file", *write_csv(tmp_path), *TINY)
        swept = [o for o in opts if o != "file"]
        cli.ok("-m", f"dataset={','.join(swept)}", *TINY)
    else:
        cli.ok("-m", f"{group}={','.join(opts)}", "dataset.n_samples=120", *TINY)
    # The jobs' runs; each multirun also has a parent run (nnexp.tracking.sweep).
    runs = [r for r in cli.runs() if r.data.tags.get("sweep.role") != "parent"]
    assert len(runs) == len(opts)
    client = cli.client()
    chosen = set()
    for run in runs:
        assert run.info.status == "FINISHED"
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert {"model.hidden", "optimizer.lr", "trainer.epochs", "dataset.name"} <= set(params)
        assert {"train/loss", "val/loss", "lr", "time/epoch_s"} <= set(metrics)
        assert "grad_norm/dense_0/W/mean" in metrics and "grad_norm/global/max" in metrics
        assert "update_ratio/dense_0" in metrics
        assert any(k.startswith("act/") and k.endswith("/mean") for k in metrics)
        assert tags["task"] in ("binary", "multiclass", "regression")
        assert tags["nnexp.version"]
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert [m.step for m in history] == [1]
        if tags["task"] == "regression":
            assert {"val/rmse", "test/rmse"} <= set(metrics)
        else:
            assert {"train/acc", "val/acc", "test/acc"} <= set(metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "checkpoints", "plots"} <= artifacts
        ckpts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
        assert {"checkpoints/last.npz", "checkpoints/best.npz"} <= ckpts
        chosen.add(next(o for o in tags["overrides"].split() if o.startswith(f"{group}=")))
    assert chosen == {f"{group}={o}" for o in opts}  # every option ran, each in its own run


def test_checkpoint_and_pyfunc_model_predict_like_the_trained_network(cli, tmp_path):
    import mlflow

    from nnexp.data import MoonsSpec, prepare

    cli.ok("trainer.epochs=5")
    (run,) = cli.runs()
    # The pyfunc model, on raw inputs, reproduces the logged validation accuracy...
    splits = prepare(MoonsSpec(), dtype=np.float32)
    raw_val = splits.X_val * splits.scale + splits.mean
    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    pred = np.asarray(model.predict(model_rows(model, raw_val)))
    assert np.mean(pred == splits.y_val) == pytest.approx(run.data.metrics["val/acc"], abs=1e-9)
    # ...and the last checkpoint, loaded into the same architecture, predicts the same.
    state = load_checkpoint(tmp_path / "outputs/run/checkpoints/last.npz")
    assert int(state["epoch"]) == 5
    spec = yaml.safe_load((tmp_path / "outputs/run/.hydra/config.yaml").read_text())
    net = mlp(2, spec["model"]["hidden"], 1, activation="relu", init="he", dtype="float32")
    for p in net.parameters():
        np.copyto(p.value, state[f"param/{p.name}"])
    assert np.array_equal(SigmoidBCE().predict(net.forward(splits.X_val)), pred)


def test_default_run_learns_moons(cli):
    proc = cli.ok()
    (run,) = cli.runs()
    assert run.data.metrics["val/acc"] >= 0.95
    assert "val/acc=" in proc.stdout


@pytest.mark.slow
def test_digits_with_adam_reaches_95_percent(cli):
    cli.ok(
        "dataset=digits",
        "model=shallow",
        "optimizer=adam",
        "model.hidden=[64]",
        "trainer.epochs=60",
    )
    (run,) = cli.runs()
    assert run.data.metrics["test/acc"] >= 0.95


@pytest.mark.slow
def test_diabetes_beats_the_mean_predictor(cli):
    from nnexp.data import DiabetesSpec, prepare

    cli.ok(
        "dataset=diabetes",
        "optimizer=adam",
        "optimizer.lr=0.01",
        "trainer.epochs=100",
        "regularization=early_stopping",
    )
    (run,) = cli.runs()
    s = prepare(DiabetesSpec(), dtype=np.float64)
    mean_rmse = float(np.sqrt(np.mean((s.y_test - s.y_train.mean()) ** 2)))
    assert run.data.metrics["test/rmse"] < 0.9 * mean_rmse


BAD = [
    (["model=foo"], "Could not find 'model/foo'"),
    (["model.hiden=3"], "Key 'hiden' not in 'ModelConfig'"),
    (["optimizer.lr=abc"], "Value 'abc' of type 'str' could not be converted to Float"),
    (["optimizer.lr=0"], "optimizer.lr=0.0: must be > 0"),
    (["optimizer.lr=-1"], "optimizer.lr=-1.0: must be > 0"),
    (["trainer.batch_size=0"], "trainer.batch_size=0: must be >= 1"),
    (["model.hidden=[16,0]"], "model.hidden=[16, 0]: must be a list of layer widths >= 1"),
    (["model.dropout=1.0"], "model.dropout=1.0: must be in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1: must be in [0, 1)"),
    (["model.init=bogus"], "model.init='bogus': allowed:"),
    (["model.activation=swish"], "model.activation='swish': allowed:"),
    (["optimizer.beta2=0.9"], "Key 'beta2' not in 'SGDConfig'"),
    (["dataset=file", "dataset.path=missing.csv"], "dataset.path="),
    (["dataset=file", "dataset.path=data.csv", "dataset.target=nope"], "dataset.target='nope'"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_fail_before_training_with_a_specific_message(cli, tmp_path, overrides, message):
    (tmp_path / "data.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    proc = cli(*overrides)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [r for r in cli.runs() if r.info.status == "FINISHED"]
    assert not (tmp_path / "outputs/run/checkpoints").exists()
