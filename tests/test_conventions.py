"""The conventions a lightning-hydra-template user brings: one root `seed`, the `debug` group,
early stopping as a trainer callback key (its old spelling kept), `extras.print_config`.
In-process through the CLI's own `run` (`test_option_effects.run_cli`), except where the
printed output or the command line itself is the point."""

from __future__ import annotations

import numpy as np
import pytest
import test_option_effects as effects
from test_option_effects import conf_of

from nnexp.config import ConfigError


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
