"""Objectives know their direction (val/acc is maximized, losses and rmse minimized) and every
consumer follows it: early stopping, restore_best, best.npz, the plateau schedule, the sweep's
best run, the report and Optuna. And what a run reports is what it returns: after restore_best,
the final metrics, the objective and the test metrics describe the restored epoch."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from nnexp.data import Splits
from nnexp.nn import Adam, SigmoidBCE, mlp
from nnexp.nn.schedules import Constant, ReduceOnPlateau
from nnexp.objective import FAILED_VALUE, Objective, direction_of
from nnexp.report.collect import RunRecord, Sweep
from nnexp.report.table import table
from nnexp.train import (
    Callback,
    Checkpointer,
    EarlyStopping,
    Trainer,
    TrainSettings,
    load_checkpoint,
)

# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "direction"),
    [
        ("val/loss", "min"),
        ("train/loss", "min"),
        ("val/rmse", "min"),
        ("val/acc", "max"),
        ("train/acc", "max"),
    ],
)
def test_each_metric_has_its_direction(key, direction):
    assert direction_of(key) == direction
    assert Objective.of(key).direction == direction


def test_mode_overrides_the_table_and_unknown_metrics_need_a_mode():
    assert direction_of("val/acc", "min") == "min"
    assert direction_of("val/loss", "max") == "max"
    assert direction_of("val/custom", "max") == "max"
    with pytest.raises(ValueError, match=r"trainer\.objective_mode=min or max"):
        direction_of("val/custom")
    with pytest.raises(ValueError, match="allowed: auto, min, max"):
        direction_of("val/loss", "up")


def test_improves_best_of_and_failed_value_follow_the_direction():
    lo, hi = Objective("val/loss", "min"), Objective("val/acc", "max")
    assert lo.improves(0.4, 0.5) and not lo.improves(0.5, 0.5) and not lo.improves(0.6, 0.5)
    assert hi.improves(0.6, 0.5) and not hi.improves(0.5, 0.5) and not hi.improves(0.4, 0.5)
    assert not lo.improves(0.45, 0.5, min_delta=0.1) and lo.improves(0.35, 0.5, min_delta=0.1)
    assert not hi.improves(0.55, 0.5, min_delta=0.1) and hi.improves(0.65, 0.5, min_delta=0.1)
    assert not lo.improves(math.nan, 0.5) and not hi.improves(math.nan, 0.5)
    assert lo.improves(1e30, lo.worst) and hi.improves(-1e30, hi.worst)
    assert lo.best_of([0.3, 0.1, 0.2]) == 0.1 and hi.best_of([0.3, 0.1, 0.2]) == 0.3
    assert sorted([0.3, 0.1, 0.2], key=hi.sort_key) == [0.3, 0.2, 0.1]
    assert lo.failed_value == FAILED_VALUE and hi.failed_value == -FAILED_VALUE
    assert (lo.optuna_direction, hi.optuna_direction) == ("minimize", "maximize")


# --- the trainer's consumers ----------------------------------------------------------------


class _Scripted(Callback):
    """Replaces the epoch's val/acc by a scripted value (before the callbacks that read it) and
    keeps a copy of each epoch's weights and metrics."""

    def __init__(self, accs):
        self.accs, self.weights, self.metrics = list(accs), {}, {}

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["val/acc"] = self.accs[epoch - 1]
        self.weights[epoch] = [p.value.copy() for p in trainer.params]
        self.metrics[epoch] = dict(metrics)


def _data(n: int = 200) -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    return Splits(X[:120], y[:120], X[120:160], y[120:160], X[160:], y[160:], task="binary")


def _fit(tmp_path: Path, accs, *, objective: Objective, patience=2, restore_best=True, **kw):
    model = mlp(3, [8], 1, seed=3)
    opt = Adam(list(model.parameters()), lr=0.01)
    script = _Scripted(accs)
    callbacks = [
        script,
        EarlyStopping(patience=patience, restore_best=restore_best, objective=objective),
        Checkpointer(tmp_path, objective=objective),
    ]
    settings = TrainSettings(epochs=len(accs), batch_size=16, seed=5, objective=objective.key)
    trainer = Trainer(model, SigmoidBCE(), opt, Constant(0.01), _data(), settings, callbacks)
    final = trainer.fit()
    return trainer, final, script


ACC = Objective("val/acc", "max")


def test_early_stopping_on_accuracy_goes_on_while_it_rises_and_keeps_the_best_epoch(tmp_path):
    # Rising for 5 epochs, then falling: a minimizer would stop at epoch 3 (two "worse" epochs)
    # and keep epoch 1; the maximizer runs to epoch 7 and keeps epoch 5.
    accs = [0.5, 0.6, 0.7, 0.8, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]
    trainer, final, script = _fit(tmp_path, accs, objective=ACC)
    assert trainer.epoch == 7, trainer.stop_reason
    assert "no val/acc (higher is better) improvement" in trainer.stop_reason
    for p, w in zip(trainer.params, script.weights[5], strict=True):
        np.testing.assert_array_equal(p.value, w)  # restored bit for bit
    best = load_checkpoint(tmp_path / "best.npz")
    assert int(best["epoch"]) == 5
    for param, w in zip(trainer.params, script.weights[5], strict=True):
        np.testing.assert_array_equal(best[f"param/{param.name}"], w)
    assert final["best/epoch"] == 5.0


def test_loss_objective_is_still_minimized(tmp_path):
    losses = Objective("val/loss", "min")
    trainer, final, script = _fit(tmp_path, [0.5] * 8, objective=losses, patience=3)
    val = [script.metrics[e]["val/loss"] for e in sorted(script.metrics)]
    best = int(np.argmin(val[: trainer.epoch])) + 1
    assert final["best/epoch"] == best
    assert final["val/loss"] == min(val[: trainer.epoch])


def test_after_restore_best_the_run_reports_the_restored_epoch(tmp_path):
    accs = [0.5, 0.9, 0.6, 0.55, 0.5, 0.5]
    trainer, final, script = _fit(tmp_path, accs, objective=ACC, patience=3)
    assert trainer.epoch == 5 and final["best/epoch"] == 2.0
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert final[key] == script.metrics[2][key], key
    # The test metrics are computed on the restored weights.
    assert final["test/loss"] == trainer.evaluate("test")["test/loss"]
    for p, w in zip(trainer.params, script.weights[2], strict=True):
        np.testing.assert_array_equal(p.value, w)
    # The last epoch's own values stay in the history.
    assert trainer.history[-1]["val/acc"] == 0.5


def test_without_restore_best_the_last_epoch_is_reported(tmp_path):
    accs = [0.5, 0.9, 0.6, 0.55, 0.5, 0.5]
    trainer, final, script = _fit(tmp_path, accs, objective=ACC, patience=3, restore_best=False)
    assert "best/epoch" not in final
    assert final["val/acc"] == 0.5 and final["val/loss"] == script.metrics[5]["val/loss"]
    for p, w in zip(trainer.params, script.weights[5], strict=True):
        np.testing.assert_array_equal(p.value, w)


def test_plateau_schedule_follows_the_direction():
    up = ReduceOnPlateau(1.0, factor=0.5, patience=1, min_delta=0.0, mode="max")
    for acc in (0.5, 0.6, 0.7, 0.8):  # rising accuracy: no reduction
        up.observe(acc)
    assert up(0) == 1.0
    up.observe(0.8)
    up.observe(0.7)  # two epochs without improvement > patience 1
    assert up(0) == 0.5
    down = ReduceOnPlateau(1.0, factor=0.5, patience=1, min_delta=0.0, mode="min")
    for loss in (0.5, 0.6, 0.7):
        down.observe(loss)
    assert down(0) == 0.5
    with pytest.raises(ValueError, match="min or max"):
        ReduceOnPlateau(1.0, mode="up")


def test_build_gives_the_plateau_schedule_the_objective_direction():
    from nnexp.build import build_schedule
    from nnexp.config import PlateauScheduleConfig, TrainerConfig

    cfg = SimpleNamespace(
        schedule=PlateauScheduleConfig(patience=0, min_delta=0.0),
        optimizer=SimpleNamespace(lr=1.0),
        trainer=TrainerConfig(objective="val/acc"),
    )
    schedule = build_schedule(cfg)
    schedule.observe(0.5)
    schedule.observe(0.6)  # better accuracy: no reduction
    assert schedule(0) == 1.0
    cfg.trainer = TrainerConfig(objective="val/acc", objective_mode="min")
    schedule = build_schedule(cfg)
    schedule.observe(0.5)
    schedule.observe(0.6)  # "worse" when told to minimize
    assert schedule(0) == 0.5


# --- the config ------------------------------------------------------------------------------


def test_config_refuses_an_objective_without_a_direction_and_a_bad_mode():
    from nnexp.config import ConfigError, TrainerConfig

    with pytest.raises(ConfigError, match=r"trainer.objective='val/nosuch'.*objective_mode"):
        TrainerConfig(objective="val/nosuch")
    assert TrainerConfig(objective="val/nosuch", objective_mode="max").objective_spec() == (
        Objective("val/nosuch", "max")
    )
    with pytest.raises(ConfigError, match=r"trainer\.objective_mode='up'"):
        TrainerConfig(objective_mode="up")
    assert TrainerConfig(objective="train/acc").objective_spec().direction == "max"


def test_failed_jobs_report_the_worst_value_of_their_direction():
    from nnexp.cli import failed_value

    cfg = OmegaConf.create({"trainer": {"objective": "val/acc", "objective_mode": "auto"}})
    assert failed_value(cfg) == -FAILED_VALUE
    cfg = OmegaConf.create({"trainer": {"objective": "val/loss"}})
    assert failed_value(cfg) == FAILED_VALUE
    cfg = OmegaConf.create({"trainer": {"objective": "val/bogus"}})  # the config's own mistake
    assert failed_value(cfg) == FAILED_VALUE


# --- the report ------------------------------------------------------------------------------


class _History:
    def __init__(self, histories):
        self.histories = histories

    def get_metric_history(self, run_id, key):
        point = type("Point", (), {})
        out = []
        for step, value in enumerate(self.histories.get((run_id, key), []), start=1):
            p = point()
            p.step, p.value = step, value
            out.append(p)
        return out


def _sweep(direction: str) -> Sweep:
    runs = []
    histories = {}
    for i, (final, curve) in enumerate([(0.6, [0.5, 0.7, 0.6]), (0.9, [0.8, 0.9]), (0.7, [0.7])]):
        run_id = f"r{i}"
        runs.append(
            RunRecord(
                run_id=run_id,
                name=f"#{i}",
                job=i,
                status="FINISHED",
                diverged=False,
                error="",
                params={"optimizer.lr": str(i)},
                metrics={"val/acc": final},
                objective=final,
            )
        )
        histories[run_id, "val/acc"] = curve
    return Sweep(
        sweep_id="s",
        parent_run_id="p",
        name="s",
        experiment_id="0",
        objective="val/acc",
        swept=["optimizer.lr"],
        runs=runs,
        client=_History(histories),
        direction=direction,
    )


def test_the_best_run_of_an_accuracy_sweep_is_the_highest():
    sweep = _sweep("max")
    assert sweep.best().run_id == "r1"
    headers, rows = table(sweep)
    starred = [row[1] for row in rows if row[1].endswith(" *")]
    assert starred == ["#1 *"]
    best_column = headers.index("val/acc best")
    assert [row[best_column] for row in rows] == ["0.7", "0.9", "0.7"]
    # Told to minimize (objective_mode=min), the same numbers pick the other end.
    assert _sweep("min").best().run_id == "r0"


# --- through the CLI, into MLflow -----------------------------------------------------------

TINY = ("trainer.epochs=2", "dataset.n_samples=200", "trainer.checkpoint_every=0")


def test_cli_after_restore_best_the_final_metrics_are_the_restored_epochs(cli):
    proc = cli.ok(
        "trainer.epochs=60",
        "regularization=early_stopping",
        "regularization.patience=4",
        "trainer.objective=val/acc",
        "optimizer.lr=0.3",
        "dataset.n_samples=300",
    )
    (run,) = cli.runs()
    client = cli.client()
    best = int(run.data.metrics["best/epoch"])
    epochs = int(run.data.metrics["epochs_run"])
    assert best < epochs, proc.stdout  # early stopping ended it after the best epoch
    for key in ("val/acc", "val/loss", "train/loss"):
        history = client.get_metric_history(run.info.run_id, key)
        by_step = {}
        for m in history:
            by_step.setdefault(m.step, []).append(m.value)
        assert run.data.metrics[key] == by_step[best][0], key  # the latest value: the restored
        assert by_step[epochs][0] == history[-2].value or len(by_step[epochs]) == 1
        if key == "val/acc":
            assert run.data.metrics[key] == max(v[0] for v in by_step.values())
    # The last epoch's own value stays in the history (first point at the last step).
    val_loss = client.get_metric_history(run.info.run_id, "val/loss")
    last_points = [m.value for m in sorted(val_loss, key=lambda m: m.timestamp) if m.step == epochs]
    assert last_points[-1] == run.data.metrics["val/loss"]
    assert "val/loss=" in proc.stdout and f"{run.data.metrics['val/loss']:.4g}" in proc.stdout


def test_cli_refuses_an_objective_the_run_does_not_log(cli):
    proc = cli("trainer.objective=val/nosuch", *TINY)
    assert proc.returncode == 2, proc.stderr
    assert "nnexp: error: trainer.objective='val/nosuch'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("dataset=diabetes", "trainer.objective=val/acc", "trainer.epochs=2")
    assert proc.returncode == 2, proc.stderr
    assert "a regression run (diabetes) logs train/loss, val/loss, val/rmse" in proc.stderr


def test_cli_optuna_direction_that_disagrees_with_the_objective_fails_before_any_job(cli):
    proc = cli("-m", "hydra/sweeper=optuna", "trainer.objective=val/acc", "optimizer.lr=0.1,0.2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "hydra.sweeper.direction=minimize disagrees with trainer.objective" in proc.stderr
    assert "set hydra.sweeper.direction=maximize" in proc.stderr
    assert cli.runs() == []


@pytest.mark.slow
def test_cli_optuna_study_on_accuracy_maximizes_it(cli, tmp_path):
    import yaml

    proc = cli.ok(
        "-m",
        "hparams_search=lr_init_optuna",
        "hydra.sweeper.n_trials=3",
        "trainer.objective=val/acc",
        *TINY,
    )
    assert "maximize" in proc.stdout + proc.stderr
    runs = cli.runs()
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    trials = [r for r in runs if r is not parent]
    accs = {r.info.run_id: r.data.metrics["val/acc"] for r in trials}
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    assert yaml.safe_load(results.read_text())["best_value"] == pytest.approx(max(accs.values()))
    assert parent.data.tags["sweep.objective_direction"] == "max"
    assert accs[parent.data.tags["sweep.best_run_id"]] == max(accs.values())


# --- reproducibility: BLAS recorded, and pinned on request -----------------------------------


def _blas_tags(cli, threads: str, *overrides: str) -> dict[str, str]:
    import subprocess
    import sys

    from conftest import cli_env

    env = cli_env() | {v: threads for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    args = [sys.executable, "-m", "nnexp", *TINY, *overrides, f"tracking.uri={cli.uri}"]
    args += [f"tracking.run_name={threads}-{len(overrides)}", "hydra.run.dir=outputs/run"]
    proc = subprocess.run(args, cwd=cli.workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (run,) = [r for r in cli.runs() if r.info.run_name == f"{threads}-{len(overrides)}"]
    return run.data.tags


def test_every_run_records_its_blas_and_deterministic_pins_one_thread(cli):
    from threadpoolctl import threadpool_info

    if not any(p.get("user_api") == "blas" for p in threadpool_info()):
        pytest.skip("no BLAS visible to threadpoolctl")
    free = _blas_tags(cli, "2")
    assert free["blas.threads"] == "2" and free["nnexp.deterministic"] == "false"
    assert free["blas.library"] and free["blas.kernel"]
    pinned = _blas_tags(cli, "2", "trainer.deterministic=true")
    assert pinned["blas.threads"] == "1" and pinned["nnexp.deterministic"] == "true"
    assert pinned["blas.library"] == free["blas.library"]


def test_deterministic_blas_restores_the_previous_limit():
    from threadpoolctl import threadpool_info

    from nnexp.train.blas import blas_tags, deterministic_blas

    if not any(p.get("user_api") == "blas" for p in threadpool_info()):
        pytest.skip("no BLAS visible to threadpoolctl")
    before = blas_tags()["blas.threads"]
    with deterministic_blas(True):
        assert set(blas_tags()["blas.threads"].split("; ")) == {"1"}
    assert blas_tags()["blas.threads"] == before
    with deterministic_blas(False):
        assert blas_tags()["blas.threads"] == before


def test_a_metric_without_a_split_and_the_refusals_word_for_word():
    from nnexp.objective import Objective, direction_of

    assert direction_of("loss") == "min" and direction_of("acc") == "max"
    with pytest.raises(ValueError) as info:
        direction_of("val/nope")
    assert str(info.value) == (
        "no known direction for 'nope' (known: loss (min), rmse (min), acc (max)); "
        "set trainer.objective_mode=min or max"
    )
    with pytest.raises(ValueError) as info:
        Objective("val/loss", "up")
    assert str(info.value) == "objective direction 'up': allowed: min, max"
