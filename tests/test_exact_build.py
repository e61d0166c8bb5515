"""Exact behaviour of nnexp.build, the composition root, on configs built in Python (no Hydra):
which loss a task gets and the message when it cannot serve it, the outputs per loss, the
network's and the trainer's settings as the config states them, regression targets trained
standardized, the callbacks in their order, and the small helpers (flatten, raw_rows,
git_commit, run_tags).

Written for the mutation run (`make mutate`, tests/mutants.md); test_option_effects*.py checks
each option's effect through Hydra's compose."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config as _cfg

from nnexp import build as b
from nnexp.config import (
    AdamConfig,
    ConfigError,
    CosineScheduleConfig,
    GradClipConfig,
    ModelConfig,
    RegularizationConfig,
    TrackingConfig,
    TrainerConfig,
)
from nnexp.data import MoonsSpec, RegressionSpec, SpiralsSpec
from nnexp.nn import MSE, SigmoidBCE, SoftmaxCrossEntropy


def test_the_loss_of_each_task_and_the_refusal_naming_the_alternatives():
    assert [b.choose_loss(_cfg(), t) for t in ("binary", "multiclass", "regression")] == [
        "sigmoid_bce",
        "softmax_cross_entropy",
        "mse",
    ]
    softmax = _cfg(model=ModelConfig(output="softmax_cross_entropy"))
    assert b.choose_loss(softmax, "binary") == "softmax_cross_entropy"
    with pytest.raises(ConfigError) as info:
        b.choose_loss(_cfg(model=ModelConfig(output="mse")), "binary")
    assert str(info.value) == (
        "model.output='mse': cannot serve a binary dataset (moons); use auto or one of "
        "sigmoid_bce, softmax_cross_entropy"
    )
    with pytest.raises(ConfigError) as info:
        b.choose_loss(_cfg(model=ModelConfig(output="sigmoid_bce")), "regression")
    assert str(info.value).endswith(
        "cannot serve a regression dataset (moons); use auto or one of mse"
    )


def test_result_metrics_and_the_objective_check():
    assert b.result_metrics("binary") == ("train/loss", "val/loss", "train/acc", "val/acc")
    assert b.result_metrics("regression") == ("train/loss", "val/loss", "val/rmse")
    b.check_objective(_cfg(trainer=TrainerConfig(objective="train/acc")), "multiclass")
    with pytest.raises(ConfigError) as info:
        b.check_objective(_cfg(trainer=TrainerConfig(objective="val/acc")), "regression")
    assert str(info.value) == (
        "trainer.objective='val/acc': a regression run (moons) logs train/loss, val/loss, val/rmse"
    )


def test_mlp_and_trainer_settings_follow_the_config():
    cfg = _cfg(
        model=ModelConfig(
            hidden=[3, 2], activation="leaky_relu", alpha=0.2, init="uniform", init_scale=0.3,
            dropout=0.1, batch_norm=True, residual=True,
        ),
        regularization=RegularizationConfig(l2=0.01, dropout=0.25),
        trainer=TrainerConfig(
            epochs=7, batch_size=9, dtype="float64", seed=4, stats=["grad_norm"], stats_every=3,
            nan_policy="stop", objective="val/acc", grad_clip=GradClipConfig(norm=2.0, value=0.5),
        ),
    )  # fmt: skip
    assert b.mlp_kwargs(cfg, 5, 3) == {
        "in_features": 5, "hidden": [3, 2], "out_features": 3, "activation": "leaky_relu",
        "activation_kwargs": {"alpha": 0.2}, "init": "uniform", "init_kwargs": {"limit": 0.3},
        "dropout": 0.25, "batch_norm": True, "residual": True, "dtype": "float64", "seed": 4,
    }  # fmt: skip
    plain = b.mlp_kwargs(_cfg(model=ModelConfig(init="normal", init_scale=2.0, dropout=0.3)), 2, 1)
    assert plain["init_kwargs"] == {"std": 2.0} and plain["activation_kwargs"] == {}
    assert plain["dropout"] == 0.3 and plain["batch_norm"] is False and not plain["residual"]
    assert b.mlp_kwargs(_cfg(), 2, 1)["init_kwargs"] == {}
    off = b.mlp_kwargs(
        _cfg(regularization=RegularizationConfig(batch_norm=False, dropout=0.0)), 2, 1
    )
    assert off["batch_norm"] is False and off["dropout"] == 0.0
    settings = b.train_settings(cfg)
    assert (settings.epochs, settings.batch_size, settings.seed, settings.l2) == (7, 9, 4, 0.01)
    assert (settings.clip_norm, settings.clip_value) == (2.0, 0.5)
    assert settings.stats == ("grad_norm",) and settings.stats_every == 3
    assert (settings.nan_policy, settings.objective) == ("stop", "val/acc")


def test_schedule_and_optimizer_get_their_hyperparameters():
    cfg = _cfg(schedule=CosineScheduleConfig(min_lr=0.01), trainer=TrainerConfig(epochs=30))
    cosine = b.build_schedule(cfg)
    assert (cosine.total, cosine.min_lr, cosine.base_lr) == (30, 0.01, 0.1)  # total: the epochs
    assert b.build_schedule(_cfg(schedule=CosineScheduleConfig(total=5))).total == 5
    built = b.build(_cfg(optimizer=AdamConfig(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)))
    opt = built.optimizer
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (0.01, 0.8, 0.99, 1e-6)
    assert opt.params == list(built.model.parameters())


def test_build_of_each_task():
    binary = b.build(_cfg())
    assert isinstance(binary.loss, SigmoidBCE) and binary.loss_name == "sigmoid_bce"
    assert binary.mlp_kwargs["out_features"] == 1 and binary.mlp_kwargs["in_features"] == 2
    assert binary.data.classification and binary.data.y_scale == 1.0
    assert binary.y_mean is None and binary.y_scale is None
    np.testing.assert_array_equal(binary.data.y_train, binary.splits.y_train)
    multi = b.build(_cfg(dataset=SpiralsSpec(n_samples=60, n_classes=4)))
    assert isinstance(multi.loss, SoftmaxCrossEntropy) and multi.mlp_kwargs["out_features"] == 4
    reg = b.build(
        _cfg(
            dataset=RegressionSpec(n_samples=50, n_features=3, n_informative=2, noise=1.0),
            trainer=TrainerConfig(dtype="float64"),
        )
    )
    assert isinstance(reg.loss, MSE) and not reg.data.classification
    y = reg.splits.y_train
    assert reg.y_mean == pytest.approx(y.mean()) and reg.y_scale == pytest.approx(y.std())
    np.testing.assert_allclose(reg.data.y_train, (y - y.mean()) / y.std())
    np.testing.assert_allclose(reg.data.y_val, (reg.splits.y_val - y.mean()) / y.std())
    assert reg.data.y_scale == reg.y_scale and reg.data.y_train.dtype == np.float64
    assert isinstance(reg.y_scale, float)  # one target: a number (the bundle's JSON), no array
    two = b.build(
        _cfg(dataset=RegressionSpec(n_samples=50, n_features=3, n_informative=2, n_targets=2))
    )
    assert two.mlp_kwargs["out_features"] == 2 and np.shape(two.y_scale) == (2,)


def test_a_constant_regression_target_keeps_scale_one(tmp_path):
    from nnexp.data import FileSpec

    path = tmp_path / "c.csv"
    path.write_text("a,target\n" + "".join(f"{i},2.5\n" for i in range(30)))
    built = b.build(_cfg(dataset=FileSpec(path=str(path), task="regression")))
    assert built.y_scale == 1.0 and built.y_mean == pytest.approx(2.5)
    assert not built.data.y_train.any()


def test_build_trainer_orders_the_callbacks_and_writes_the_bundle_when_untracked(tmp_path):
    from nnexp import train

    cfg = _cfg(regularization=RegularizationConfig(early_stopping=True, patience=4))
    built = b.build(cfg)
    made = []

    def process_callback():
        made.append(1)
        return train.Callback()

    job = b.Job(
        run_dir=tmp_path, overrides=[], resolved={}, source_dir=tmp_path, resume_key="k",
        process_callbacks=[process_callback],
    )  # fmt: skip
    trainer = b.build_trainer(cfg, built, job)
    kinds = [type(c).__name__ for c in trainer.callbacks]
    assert kinds == [
        "EarlyStopping", "Checkpointer", "DoctorVerdict", "ProgressBar", "Callback"
    ] and made == [1]  # fmt: skip
    stopper, checkpointer, _, progress = trainer.callbacks[:4]
    assert stopper.patience == 4 and stopper.restore_best and stopper.min_delta == 0.0
    assert checkpointer.directory == tmp_path / "checkpoints"
    assert (checkpointer.every, checkpointer.save_every_s) == (10, 1.0)
    assert progress.enabled is False
    assert (tmp_path / "model" / "spec.json").is_file()  # tracking off: the bundle on disk
    assert job.checkpoints == tmp_path / "checkpoints"
    assert b.Job(tmp_path, [], {}, tmp_path, "k", checkpoint_dir=Path("x")).checkpoints == Path("x")
    plain = b.build_trainer(_cfg(), b.build(_cfg()), b.Job(tmp_path, [], {}, tmp_path, "k"))
    assert [type(c).__name__ for c in plain.callbacks] == [
        "Checkpointer", "DoctorVerdict", "ProgressBar"
    ]  # fmt: skip
    assert b._progress(True) is True and b._progress(False) is False


def test_helpers_flatten_raw_rows_git_commit_and_tags(tmp_path):
    assert b.flatten({"model": {"hidden": [16], "init": "he"}, "seed": 1}) == {
        "model.hidden": [16], "model.init": "he", "seed": 1,
    }  # fmt: skip
    assert b.flatten({}) == {}
    built = b.build(_cfg())
    s = built.splits
    rows = b.raw_rows(s, 3)
    np.testing.assert_allclose(rows, s.X_train[:3].astype(np.float64) * s.scale + s.mean)
    assert rows.dtype == np.float64 and rows.shape == (3, 2)
    unscaled = b.build(_cfg(dataset=MoonsSpec(n_samples=60, standardize=False))).splits
    np.testing.assert_array_equal(b.raw_rows(unscaled, 2), unscaled.X_train[:2])
    job = b.Job(tmp_path, ["optimizer.lr=0.1", "model=deep"], {}, tmp_path, "key1")
    tags = b.run_tags(_cfg(tags={"team": "x"}), built, job)
    assert tags["overrides"] == "optimizer.lr=0.1 model=deep" and tags["task"] == "binary"
    assert tags["dataset"] == "moons" and tags["team"] == "x"
    assert tags["nnexp.deterministic"] == "false" and "key1" in tags.values()
    bare = b.run_tags(_cfg(), built, b.Job(tmp_path, [], {}, tmp_path, "k"))
    assert bare["overrides"] == "(none)" and "team" not in bare


def test_git_state_names_the_commit_branch_remote_and_dirt_of_the_project(tmp_path):
    from nnexp.tracking.context import git_state

    assert git_state(tmp_path) == {}  # not a repository
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], check=True)
    assert git_state(repo) == {}  # no commit yet
    (repo / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_state(repo) == {
        "mlflow.source.git.commit": head.strip(),
        "mlflow.source.git.branch": "trunk",
        "mlflow.source.git.dirty": "false",
    }
    (repo / "new.txt").write_text("untracked files do not make it dirty (as in MLflow)")
    assert git_state(repo)["mlflow.source.git.dirty"] == "false"
    (repo / "a.txt").write_text("changed")
    assert git_state(repo)["mlflow.source.git.dirty"] == "true"
    remote = "https://user:secret@example.com/team/repo.git"
    subprocess.run([*git, "remote", "add", "origin", remote], check=True)
    url = git_state(repo)["mlflow.source.git.repoURL"]
    assert url == "https://example.com/team/repo.git"  # credentials stripped
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    assert "mlflow.source.git.branch" not in git_state(repo)
    assert git_state(tmp_path / "missing") == {}


# --- found by the mutation run -----------------------------------------------------------------


def test_build_wires_the_splits_schedule_and_dtype_through():
    built = b.build(_cfg())
    s, d = built.splits, built.data
    assert d.X_train is s.X_train and d.X_val is s.X_val and d.X_test is s.X_test
    assert d.X_train.dtype == np.float32  # trainer.dtype's default, not NumPy's float64
    assert built.schedule.base_lr == 0.1 and built.schedule(7) == 0.1
    wide = b.build(_cfg(trainer=TrainerConfig(dtype="float64")))
    assert wide.data.X_train.dtype == np.float64


def test_each_regression_target_is_scaled_by_its_own_std_and_a_constant_one_by_1(tmp_path):
    from nnexp.data import FileSpec

    rng = np.random.default_rng(0)
    y = np.column_stack([rng.standard_normal(40) * 3 + 1, np.full(40, 2.0)])
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((40, 2)), y=y)
    built = b.build(_cfg(dataset=FileSpec(path=str(tmp_path / "d.npz"), task="regression")))
    y_train = built.splits.y_train
    np.testing.assert_allclose(built.y_scale, [y_train[:, 0].std(), 1.0], rtol=1e-6)
    np.testing.assert_allclose(built.y_mean, y_train.mean(axis=0), rtol=1e-6)
    assert np.isfinite(built.data.y_train).all() and not built.data.y_train[:, 1].any()


def test_the_trainer_gets_what_was_built_and_the_bundle_its_classes(tmp_path):
    import json

    built = b.build(_cfg())
    trainer = b.build_trainer(_cfg(), built, b.Job(tmp_path, [], {}, tmp_path, "k"))
    assert trainer.model is built.model and trainer.loss is built.loss
    assert trainer.optimizer is built.optimizer and trainer.schedule is built.schedule
    assert trainer.data is built.data
    spec = json.loads((tmp_path / "model" / "spec.json").read_text())
    assert spec["classes"] == ["0", "1"] and spec["task"] == "binary"
    assert spec["loss"] == "sigmoid_bce" and spec["mlp"] == built.mlp_kwargs


def test_a_tracked_run_gets_a_tracker_with_the_runs_settings(tmp_path):
    import nnexp
    from nnexp.train.callbacks import EveryNEpochs
    from nnexp.train.diagnosis import DoctorVerdict

    cfg = _cfg(
        tracking=TrackingConfig(
            enabled=True, experiment="exp", run_name="r1", uri="sqlite:///x.db",
            flush_every_s=3.0, retry_every_s=7.0,
        ),
        trainer=TrainerConfig(epochs=2, batch_size=16, progress=False, log_every=3),
    )  # fmt: skip
    built = b.build(cfg)
    job = b.Job(
        tmp_path, ["optimizer.lr=0.1"], {"optimizer": {"lr": 0.1}}, tmp_path, "key",
        resume_run_id="abc",
    )  # fmt: skip
    trainer = b.build_trainer(cfg, built, job)
    every = trainer.callbacks[-2]  # then the doctor's verdict
    assert isinstance(every, EveryNEpochs) and every.n == 3
    tracker = every.inner
    assert (tracker.uri, tracker.experiment, tracker.run_name) == ("sqlite:///x.db", "exp", "r1")
    assert tracker.params == {"optimizer.lr": 0.1}
    assert tracker.tags["overrides"] == "optimizer.lr=0.1"
    assert tracker.tags["nnexp.version"] == nnexp.__version__
    assert tracker.run_dir == tmp_path and tracker.checkpoint_dir == tmp_path / "checkpoints"
    assert (tracker.flush_every_s, tracker.retry_every_s, tracker.log_every) == (3.0, 7.0, 3)
    assert tracker.resume_run_id == "abc" and tracker.parent_run_id is None
    np.testing.assert_allclose(tracker.input_example, b.raw_rows(built.splits, 5))
    assert tracker.plot_worker is True  # a single run, not a sweep's job
    assert not (tmp_path / "model").exists()  # the tracker writes the bundle, at the end
    assert tracker.project_dir == tmp_path and tracker.tags["n_classes"] == "2"
    assert tracker.n_params == 2 * 4 + 4 + 4 * 1 + 1  # moons, one hidden layer of 4
    record, s = tracker.dataset, built.splits
    assert (record.name, record.task) == ("moons", "binary")
    assert {k: tuple(map(id, v)) for k, v in record.splits.items()} == {
        "training": (id(s.X_train), id(s.y_train)),
        "validation": (id(s.X_val), id(s.y_val)),
        "test": (id(s.X_test), id(s.y_test)),
    }
    assert (tracker.files.register_as, tracker.files.checkpoint_keep) == (None, 3)  # defaults
    sent: list[dict] = []
    tracker.send_tags = sent.append  # the doctor's verdict tags this run, through its tracker
    tracker.link.run_id = "abc"
    (doctor,) = [cb for cb in trainer.callbacks if isinstance(cb, DoctorVerdict)]
    doctor.report([])
    assert sent == [{"doctor.findings": "none", "doctor.failing": "none"}]
    other = b.build_trainer(
        replace(cfg, tracking=replace(cfg.tracking, register_as="moons-mlp"),
                trainer=replace(cfg.trainer, checkpoint_keep=0)),
        built, job,
    )  # fmt: skip
    files = other.callbacks[-2].inner.files
    assert (files.register_as, files.checkpoint_keep) == ("moons-mlp", None)  # 0 keeps all


def test_debug_options_overfit_rows_and_limit_batches_reach_the_run():
    from nnexp.data import MoonsSpec

    small = TrainerConfig(
        epochs=2, batch_size=8, progress=False, overfit_batches=2, limit_batches=3
    )
    cfg = _cfg(dataset=MoonsSpec(n_samples=200), trainer=small)
    assert b.overfit_rows(cfg) == 16 and b.overfit_rows(_cfg()) is None
    built, full = b.build(cfg), b.build(_cfg(dataset=MoonsSpec(n_samples=200)))
    np.testing.assert_array_equal(built.data.X_train, full.data.X_train[:16])
    np.testing.assert_array_equal(built.data.y_train, full.data.y_train[:16])
    assert len(full.data.X_train) > 16 and built.data.X_val.shape == full.data.X_val.shape
    assert (
        b.train_settings(cfg).limit_batches == 3 and b.train_settings(_cfg()).limit_batches is None
    )


def test_the_checkpointer_keeps_what_checkpoint_keep_says_and_0_keeps_all(tmp_path):
    from nnexp.train import Checkpointer

    def keep(value: int) -> int | None:
        cfg = _cfg(
            trainer=TrainerConfig(epochs=2, batch_size=16, progress=False, checkpoint_keep=value)
        )
        trainer = b.build_trainer(cfg, b.build(cfg), b.Job(tmp_path, [], {}, tmp_path, "k"))
        (checkpointer,) = [c for c in trainer.callbacks if isinstance(c, Checkpointer)]
        return checkpointer.keep

    assert (keep(2), keep(0)) == (2, None)


def test_the_doctors_tags_go_to_the_trackers_run_and_a_sweepless_run_keeps_its_name(tmp_path):
    built = b.build(_cfg())
    sent = []
    tracker = type("Tracker", (), {"run_id": "r1", "send_tags": lambda self, t: sent.append(t)})()
    verdict = b.doctor_verdict(built, b.Job(tmp_path, [], {}, tmp_path, "k"), tracker)
    verdict.report([])
    assert sent == [{"doctor.findings": "none", "doctor.failing": "none"}]
    untracked = b.doctor_verdict(built, b.Job(tmp_path, [], {}, tmp_path, "k"))
    untracked.report([])  # no tracker: nothing to send, and no error
    cfg = _cfg(tracking=TrackingConfig(enabled=True, uri="sqlite:///x.db"))
    tracker = b.build_tracker(cfg, b.build(cfg), b.Job(tmp_path, [], {}, tmp_path, "k"))
    assert tracker.run_name is None and tracker.dataset.source == "sklearn.datasets.make_moons"
