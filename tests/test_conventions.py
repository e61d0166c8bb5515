"""The conventions a lightning-hydra-template user brings: one root `seed`, the `debug` group,
early stopping as a trainer callback key (its old spelling kept), `extras.print_config`.
In-process through the CLI's own `run` (`test_option_effects.run_cli`), except where the
printed output or the command line itself is the point."""

from __future__ import annotations

import numpy as np
import pytest
import test_option_effects as effects
from hydra.core.hydra_config import HydraConfig
from test_option_effects import conf_of

import nnexp.train
from nnexp import cli as nnexp_cli
from nnexp.config import ConfigError
from nnexp.train import Trainer


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """`test_option_effects.run_cli`: the CLI's `run` in this process, tracking off."""
    return effects.run_cli.__wrapped__(tmp_path, monkeypatch)


def _weights(trainer):
    return [p.value.copy() for p in trainer.params]


def _metrics(trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in trainer.history]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --- seed ----------------------------------------------------------------------------------------


def test_root_seed_is_the_default_of_the_trainer_and_data_seeds():
    conf = conf_of("seed=7")
    assert (conf.seed, conf.trainer.seed, conf.dataset.seed) == (7, 7, 7)
    conf = conf_of("seed=7", "trainer.seed=3")  # a seed set itself wins
    assert (conf.trainer.seed, conf.dataset.seed) == (3, 7)
    conf = conf_of("seed=7", "dataset.seed=5")
    assert (conf.trainer.seed, conf.dataset.seed) == (7, 5)
    assert (conf_of().trainer.seed, conf_of().dataset.seed) == (0, 0)


def test_root_seed_out_of_range_names_the_root_key():
    with pytest.raises(ConfigError, match=r"^seed=-1: must be in \[0, 4294967295\]$"):
        conf_of("seed=-1")


def test_root_seed_reproduces_a_run_and_another_seed_changes_weights_and_data(run_cli):
    a, b = run_cli("seed=1"), run_cli("seed=1")
    assert _same(a.initial, b.initial) and _same(_weights(a), _weights(b))
    assert _metrics(a) == _metrics(b)  # identical metrics, epoch by epoch
    c = run_cli("seed=2")
    assert not _same(a.initial, c.initial)  # the initialization follows it
    assert not np.array_equal(a.data.X_train, c.data.X_train)  # and so do the data
    # the same as seed=1, the two seeds set themselves
    d = run_cli("seed=2", "trainer.seed=1", "dataset.seed=1")
    assert _same(a.initial, d.initial) and _same(_weights(a), _weights(d))
    assert np.array_equal(a.data.X_train, d.data.X_train)


# --- early stopping: a trainer callback key, and its older spelling ---------------------------

# Full-batch steps, and an improvement counts from 0.01 on: the validation loss stalls early.
STOPPABLE = ("trainer.epochs=300", "trainer.batch_size=1000", "regularization.min_delta=0.01")


def test_early_stopping_by_either_spelling_trains_the_same(run_cli):
    new = run_cli(*STOPPABLE, "trainer.early_stopping.patience=4")
    old = run_cli(*STOPPABLE, "regularization=early_stopping", "regularization.patience=4")
    assert new.stop_reason.startswith("early stopping: no val/loss (lower is better) improvement")
    assert new.epoch < 300 and new.epoch == old.epoch and new.stop_reason == old.stop_reason
    assert _same(_weights(new), _weights(old)) and new.restored == old.restored
    assert _metrics(new) == _metrics(old)
    unstopped = run_cli(*STOPPABLE)
    assert unstopped.epoch == 300 and not unstopped.stop_reason


def test_early_stopping_keys_win_over_the_alias_and_combine_with_a_regularizer(run_cli):
    conf = conf_of(
        "regularization=early_stopping",
        "regularization.patience=4",
        "regularization.min_delta=0.5",
        "trainer.early_stopping.patience=9",
        "trainer.early_stopping.restore_best=false",
    )
    stopping = conf.early_stopping()
    assert (stopping.patience, stopping.min_delta, stopping.restore_best) == (9, 0.5, False)
    assert conf_of().early_stopping() is None
    assert conf_of("trainer.early_stopping.patience=2").early_stopping().restore_best is True
    # the point of a callback key: early stopping with L2, which the group could not give
    both = run_cli(*STOPPABLE, "regularization=l2", "trainer.early_stopping.patience=4")
    assert both.settings.l2 > 0 and both.stop_reason.startswith("early stopping")


def test_early_stopping_settings_without_patience_are_refused():
    with pytest.raises(
        ConfigError, match=r"^trainer.early_stopping.min_delta=0.1: early stopping is off"
    ):
        conf_of("trainer.early_stopping.min_delta=0.1")
    with pytest.raises(ConfigError, match=r"^trainer.early_stopping.patience=0: must be >= 1$"):
        conf_of("trainer.early_stopping.patience=0")


# --- the debug group and the trainer keys it needs ------------------------------------------


@pytest.fixture
def run_debug(tmp_path, monkeypatch):
    """Like run_cli, without its small BASE (a debug config sets the epochs itself)."""
    monkeypatch.chdir(tmp_path)
    captured: list = []

    class Spy(Trainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            captured.append(self)

    monkeypatch.setattr(nnexp.train, "Trainer", Spy)

    def run(*overrides: str):
        cfg = effects.compose_cfg("trainer.progress=false", *overrides)
        cfg.hydra.runtime.output_dir = str(tmp_path / f"run{len(captured)}")
        HydraConfig.instance().set_config(cfg)
        nnexp_cli.run(effects._without_hydra(cfg))
        return captured.pop()

    return run


def test_limit_batches_trains_on_the_first_n_batches_of_each_epoch(run_cli):
    full = run_cli("trainer.batch_size=10", "trainer.epochs=3")
    limited = run_cli("trainer.batch_size=10", "trainer.epochs=3", "trainer.limit_batches=2")
    assert (full.global_step, limited.global_step) == (3 * 6, 3 * 2)  # 60 rows: 6 batches
    assert limited.epoch == 3 and not _same(_weights(full), _weights(limited))
    # more than there are: all of them
    assert run_cli("trainer.batch_size=10", "trainer.limit_batches=99").global_step == 2 * 6


def test_overfit_batches_trains_on_a_fixed_subset_of_the_training_split(run_cli):
    full = run_cli("trainer.batch_size=8")
    fixed = run_cli("trainer.batch_size=8", "trainer.overfit_batches=2")
    assert len(fixed.data.X_train) == 16 and fixed.global_step == 2 * 2
    np.testing.assert_array_equal(fixed.data.X_train, full.data.X_train[:16])
    np.testing.assert_array_equal(fixed.data.y_train, full.data.y_train[:16])
    np.testing.assert_array_equal(fixed.data.X_val, full.data.X_val)  # validation untouched


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [("limit_batches", 0, "must be >= 1"), ("overfit_batches", -1, "must be >= 1")],
)
def test_debug_trainer_keys_have_bounds(key, value, rule):
    with pytest.raises(ConfigError, match=rf"^trainer.{key}={value}: {rule}$"):
        conf_of(f"trainer.{key}={value}")


def test_debug_overfit_drives_the_training_loss_to_zero(run_debug):
    adam = ("optimizer=adam", "optimizer.lr=0.01")
    overfit = run_debug("debug=overfit", *adam)
    assert len(overfit.data.X_train) == 32 and overfit.epoch == 1000
    assert overfit.settings.l2 == 0 and not overfit.stop_reason
    assert overfit.history[-1]["train/loss"] < 0.01 and overfit.history[-1]["train/acc"] == 1
    # all 600 noisy training rows for as many steps: far from zero
    whole = run_debug(*adam, "trainer.epochs=53", "trainer.batch_size=1000")
    assert whole.history[-1]["train/loss"] > 0.05
    # no regularization from the config files; the command line still decides
    conf = conf_of("debug=overfit")
    assert conf.regularization.name == "none" and conf.early_stopping() is None
    conf = conf_of("regularization=l2", "debug=overfit")
    assert conf.regularization.l2 == 0.001


def test_debug_limit_and_fast_compose_what_they_promise():
    limit = conf_of("debug=limit")
    assert (limit.trainer.epochs, limit.trainer.limit_batches) == (3, 5)
    fast = conf_of("debug=fast", "trainer.epochs=4")  # the command line still wins
    assert (fast.trainer.epochs, fast.trainer.limit_batches, fast.tracking.experiment) == (
        4,
        2,
        "debug",
    )
    assert conf_of().trainer.limit_batches is None  # debug: none by default


@pytest.mark.slow  # a real CLI run into a new store: 5-25 s on the shared 2 cores
def test_debug_fast_is_a_tracked_smoke_run_in_seconds(cli):
    cli.ok("debug=fast")
    (run,) = cli.runs("debug")
    assert run.info.status == "FINISHED" and cli.runs("nnexp") == []
    client = cli.client()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert run.data.params["trainer.limit_batches"] == "2"
    assert run.data.metrics["epochs_run"] == 2


# --- local/ configs --------------------------------------------------------------------------


def test_a_local_config_changes_the_composed_config_and_its_absence_is_fine(tmp_path):
    """`local/default.yaml` on the config search path — conf/local/ of a source checkout
    (git-ignored), or the directory of `--config-dir` — is merged after the groups and the
    experiment, before `debug` and the command line."""
    import subprocess
    import sys

    from conftest import cli_env

    def job(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "nnexp", *args, "--cfg", "job"],
            cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "epochs: 100" in job()  # no local config anywhere: the defaults
    mine = tmp_path / "mine" / "local"
    mine.mkdir(parents=True)
    (mine / "default.yaml").write_text(
        "# @package _global_\ntrainer:\n  epochs: 7\n  batch_size: 8\ntracking:\n  uri: sqlite:///here.db\n"
    )
    local = job("--config-dir", "mine")
    assert "epochs: 7" in local and "batch_size: 8" in local and "sqlite:///here.db" in local
    both = job("--config-dir", "mine", "debug=limit", "trainer.batch_size=4")
    assert "epochs: 3" in both and "batch_size: 4" in both  # debug, then the command line win


# --- extras.print_config ---------------------------------------------------------------------


def test_print_config_prints_the_resolved_config_as_a_tree_and_keeps_it(run_cli, capsys):
    trainer = run_cli("extras.print_config=true", "seed=5", "optimizer.lr=0.25")
    out = capsys.readouterr().out
    tree = out[: out.index("nnexp:")] if "nnexp:" in out else out
    assert tree.startswith("config\n")
    branches = [line.split()[-1] for line in tree.splitlines() if line[:4] in ("├── ", "└── ")]
    assert branches[:7] == [
        "model", "optimizer", "schedule", "dataset", "regularization", "trainer", "tracking",
    ]  # fmt: skip
    assert "lr: 0.25" in tree and "seed: 5" in tree and "${seed}" not in tree  # resolved
    assert (trainer.run_dir / "config_tree.txt").read_text() == tree
    run_cli("seed=5")  # off by default: `make run` stays short
    assert "├── model" not in capsys.readouterr().out
