"""Exact behaviour, in-process, of what keeps a run's state: the run lock (one writer per
checkpoint directory; a killed writer's lock can be taken over), the checkpointer's files and
its in-memory copy between writes, early stopping's counters and when it restores, and the
trainer's callback plumbing (who hears each batch, what a failing `on_exception` does).

Written for the mutation run (`make mutate`, tests/mutants.md): these paths were reached only by
the tests that run the CLI in a subprocess, where mutmut cannot see a mutant."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnexp import timing
from nnexp.data import Splits
from nnexp.nn import MSE, SGD, Parameter, mlp
from nnexp.nn.schedules import Constant
from nnexp.objective import Objective
from nnexp.train import Callback, Checkpointer, EarlyStopping, Trainer, TrainSettings
from nnexp.train.checkpoint import (
    CheckpointError,
    append_history,
    load_checkpoint,
    load_history,
    save_checkpoint,
    trainer_state,
)
from nnexp.train.run_lock import LOCK, check_unlocked, lock, unlock
from nnexp.train.trainer import Statistics

HOST = socket.gethostname()


def _data() -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 2)).astype(np.float32)
    y = (X @ np.array([1.0, -1.0], dtype=np.float32)).astype(np.float32)
    return Splits(X[:32], y[:32], X[32:40], y[32:40], X[40:], y[40:], task="regression")


def _trainer(epochs: int = 3, callbacks=()) -> Trainer:
    model = mlp(2, [3], 1, activation="tanh", seed=0)
    return Trainer(
        model, MSE(), SGD(list(model.parameters()), lr=0.05), Constant(0.05), _data(),
        TrainSettings(epochs=epochs, batch_size=8, stats=()), callbacks,
    )  # fmt: skip


# --- the run lock --------------------------------------------------------------------------------


def test_lock_names_this_process_creating_missing_parents_and_unlock_removes_it(tmp_path):
    directory = tmp_path / "a" / "b" / "checkpoints"
    lock(directory)
    assert json.loads((directory / LOCK).read_text()) == {"host": HOST, "pid": os.getpid()}
    check_unlocked(directory)  # our own lock never blocks us
    unlock(directory)
    assert not (directory / LOCK).exists()


def test_unlock_without_a_lock_or_with_an_unreadable_one_is_quiet(tmp_path):
    unlock(tmp_path / "missing")  # no directory, no lock: nothing to do
    (tmp_path / LOCK).write_text("{not json")
    unlock(tmp_path)
    assert (tmp_path / LOCK).exists()  # not ours to remove
    check_unlocked(tmp_path)  # unreadable: nobody to protect


def _write_lock(directory: Path, host: str, pid: int) -> None:
    (directory / LOCK).write_text(json.dumps({"host": host, "pid": pid}))


def test_a_live_writer_on_this_host_blocks_and_a_killed_one_does_not(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_lock(tmp_path, HOST, writer.pid)
        expected = (
            f"checkpoints {tmp_path}: still being written by process {writer.pid} on {HOST}; "
            f"stop it first (or, if that pid is not an nnexp run, delete {tmp_path / LOCK})"
        )
        with pytest.raises(CheckpointError) as err:
            lock(tmp_path)
        assert str(err.value) == expected
        with pytest.raises(CheckpointError):
            check_unlocked(tmp_path)
        with pytest.raises(subprocess.TimeoutExpired):  # asked if it lives (signal 0): alive
            writer.wait(timeout=0.5)
        unlock(tmp_path)  # another process's lock stays
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == writer.pid
    finally:
        writer.kill()
        writer.wait()
    check_unlocked(tmp_path)  # the writer is gone: the run can be resumed
    lock(tmp_path)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_neither_blocks_nor_is_removed(tmp_path):
    _write_lock(tmp_path, HOST + "-elsewhere", os.getppid())  # a live pid, on another host
    check_unlocked(tmp_path)
    unlock(tmp_path)
    assert (tmp_path / LOCK).exists()
    _write_lock(tmp_path, HOST, os.getppid())  # this host, a live pid that is not ours
    unlock(tmp_path)
    assert (tmp_path / LOCK).exists()


# --- the checkpointer ----------------------------------------------------------------------------


def test_epoch_files_every_n_epochs_last_best_history_and_the_lock_released(tmp_path):
    checkpointer = Checkpointer(tmp_path, every=2)
    _trainer(epochs=5, callbacks=[checkpointer]).fit()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "best.npz", "epoch_0002.npz", "epoch_0004.npz", "history.jsonl", "last.npz"
    ]  # fmt: skip
    assert int(load_checkpoint(tmp_path / "epoch_0004.npz")["epoch"]) == 4
    assert int(load_checkpoint(tmp_path / "last.npz")["epoch"]) == 5


def test_keep_bounds_the_epoch_files_to_the_newest_and_spares_later_ones(tmp_path):
    (tmp_path / "epoch_0009.npz").write_bytes(b"a later epoch of an earlier attempt")
    (tmp_path / "EPOCH_0001.NPZ").write_bytes(b"not a checkpoint name")
    _trainer(epochs=6, callbacks=[Checkpointer(tmp_path, every=1, keep=3)]).fit()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "EPOCH_0001.NPZ", "best.npz", "epoch_0005.npz", "epoch_0006.npz", "epoch_0009.npz",
        "history.jsonl", "last.npz",
    ]  # fmt: skip
    every = tmp_path / "all"
    _trainer(epochs=3, callbacks=[Checkpointer(every, every=1)]).fit()  # keep=None: all
    assert sorted(p.name for p in every.glob("epoch_*")) == [
        "epoch_0001.npz", "epoch_0002.npz", "epoch_0003.npz"
    ]  # fmt: skip


def test_a_mixed_precision_runs_loss_scaler_is_checkpointed_and_restored(tmp_path):
    from nnexp.train.checkpoint import restore

    def mixed() -> Trainer:
        model = mlp(2, [3], 1, activation="tanh", seed=0)
        return Trainer(
            model, MSE(), SGD(list(model.parameters()), lr=0.05), Constant(0.05), _data(),
            TrainSettings(epochs=2, batch_size=8, stats=(), precision="mixed"),
        )  # fmt: skip

    trained = mixed()
    trained.fit()
    trained.scaler.skip()  # a state no fresh scaler has: halved once, no clean steps
    trained.scaler.clean()
    state = trainer_state(trained)
    assert float(state["callback/loss_scaler/clean_steps"]) == 1.0
    fresh = mixed()
    restore(fresh, state)
    want, got = trained.scaler, fresh.scaler
    assert want.skipped_steps >= 1 and want.clean_steps == 1 and want.scale < 2.0**16
    assert (got.scale, got.clean_steps, got.skipped_steps) == (
        want.scale, want.clean_steps, want.skipped_steps
    )  # fmt: skip
    assert type(got.scale) is float


def test_an_objective_the_metrics_lack_writes_no_best(tmp_path):
    trainer = _trainer(epochs=2)
    checkpointer = Checkpointer(tmp_path, objective=Objective("val/acc", "max"))
    checkpointer.on_fit_start(trainer)
    checkpointer.on_epoch_end(trainer, 1, {"val/loss": 0.5})
    assert (tmp_path / "last.npz").is_file() and not (tmp_path / "best.npz").exists()
    assert checkpointer.best == -math.inf


def test_between_writes_the_checkpoint_holds_a_copy_of_the_epochs_weights(tmp_path):
    trainer = _trainer(epochs=3)
    checkpointer = Checkpointer(tmp_path, save_every_s=3600.0)
    checkpointer.on_fit_start(trainer)
    checkpointer.on_epoch_end(trainer, 1, {"val/loss": 0.5})  # the first epoch: written
    weights = trainer.params[0].value
    kept = weights.copy()
    trainer.epoch = 2
    checkpointer.on_epoch_end(trainer, 2, {"val/loss": 0.4})  # not due: held in memory
    assert int(load_checkpoint(tmp_path / "last.npz")["epoch"]) == 0
    weights += 1.0  # the next epoch trains the live arrays
    before = timing.totals.get("checkpoints", 0.0)
    checkpointer.on_exception(trainer, RuntimeError("crash"))  # writes what it holds
    state = load_checkpoint(tmp_path / "last.npz")
    np.testing.assert_array_equal(state[f"param/{trainer.params[0].name}"], kept)
    assert int(state["epoch"]) == 2 and not (tmp_path / LOCK).exists()
    checkpointer.on_fit_start(trainer)
    checkpointer.on_fit_end(trainer, {})
    assert timing.totals["checkpoints"] > before  # the writes are charged to their phase
    assert not (tmp_path / LOCK).exists()


# --- early stopping ------------------------------------------------------------------------------


def _fake_trainer(epochs: int) -> SimpleNamespace:
    param = Parameter("dense_0/W", np.zeros(2))
    model = SimpleNamespace(buffers=lambda: {})
    settings = SimpleNamespace(epochs=epochs)
    return SimpleNamespace(
        params=[param], model=model, settings=settings, should_stop=False, restored=None,
        stop_reason="",
    )  # fmt: skip


def test_patience_counts_from_zero_even_when_no_epoch_ever_improves():
    trainer = _fake_trainer(epochs=10)
    stopper = EarlyStopping(patience=2)
    assert (stopper.best_epoch, stopper.bad_epochs) == (0, 0)
    assert set(stopper.state_dict()) == {"best", "best_epoch", "bad_epochs"}
    stopper.on_epoch_end(trainer, 1, {"val/loss": math.nan})
    assert not trainer.should_stop
    stopper.on_epoch_end(trainer, 2, {"val/loss": math.nan})
    assert trainer.should_stop
    assert trainer.stop_reason.endswith("improvement for 2 epochs (best inf at epoch 0)")
    assert trainer.restored is None  # nothing to restore


def test_the_best_weights_come_back_only_at_the_last_epoch():
    trainer = _fake_trainer(epochs=3)
    weights = trainer.params[0].value
    stopper = EarlyStopping(patience=5, restore_best=True)
    weights[...] = 1.0
    stopper.on_epoch_end(trainer, 1, {"val/loss": 0.5, "train/loss": 0.6})
    weights[...] = 2.0
    stopper.on_epoch_end(trainer, 2, {"val/loss": 0.9, "train/loss": 0.4})
    np.testing.assert_array_equal(weights, 2.0)  # not the last epoch: training goes on
    assert trainer.restored is None
    weights[...] = 3.0
    stopper.on_epoch_end(trainer, 3, {"val/loss": 0.8, "train/loss": 0.3})
    np.testing.assert_array_equal(weights, 1.0)  # the last epoch: epoch 1 restored
    assert trainer.restored == (1, {"val/loss": 0.5, "train/loss": 0.6})


# --- the trainer's callback plumbing -------------------------------------------------------------


def test_only_the_callbacks_that_listen_to_batches_hear_every_step():
    class Counter(Callback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_batch_end(self, trainer, step, loss):
            self.steps.append(step)

    counter = Counter()
    _trainer(epochs=2, callbacks=[Callback(), counter]).fit()
    assert counter.steps == list(range(1, 9))  # 32 rows / 8 per batch x 2 epochs


def test_a_failing_on_exception_is_reported_and_the_original_error_raised(capsys):
    seen = []

    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            raise KeyError("boom")

    class Broken(Callback):
        def on_exception(self, trainer, exc):
            raise RuntimeError("cannot clean up")

    class Listener(Callback):
        def on_exception(self, trainer, exc):
            seen.append((trainer, exc))

    trainer = _trainer(callbacks=[Stop(), Broken(), Listener()])
    with pytest.raises(KeyError, match="boom"):
        trainer.fit()
    assert len(seen) == 1 and seen[0][0] is trainer and isinstance(seen[0][1], KeyError)
    out = capsys.readouterr().out
    assert "warning: Broken.on_exception failed: RuntimeError('cannot clean up')" in out


def test_by_default_last_is_written_every_epoch_and_no_epoch_files(tmp_path):
    trainer = _trainer(epochs=3)
    checkpointer = Checkpointer(tmp_path)
    assert (checkpointer.every, checkpointer.save_every_s) == (0, 0.0)
    checkpointer.on_fit_start(trainer)
    for epoch in (1, 2):
        trainer.epoch = epoch
        checkpointer.on_epoch_end(trainer, epoch, {"val/loss": 1.0 / epoch})
        assert int(load_checkpoint(tmp_path / "last.npz")["epoch"]) == epoch
    assert not list(tmp_path.glob("epoch_*.npz"))
    assert int(load_checkpoint(tmp_path / "best.npz")["epoch"]) == 2


def test_history_goes_into_a_new_nested_directory_and_reads_back_from_epoch_1(tmp_path):
    directory = tmp_path / "new" / "checkpoints"
    for epoch in (0, 1, 2, 3):
        append_history(directory, epoch, {"val/loss": float(epoch)})
    assert load_history(directory, 2) == [{"val/loss": 1.0}, {"val/loss": 2.0}]


def test_a_trainer_state_holds_the_format_meta_and_every_parameter(tmp_path):
    trainer = _trainer()
    state = trainer_state(trainer)
    assert {"format", "meta", "epoch"} <= set(state)
    assert {f"param/{p.name}" for p in trainer.params} <= set(state)
    save_checkpoint(tmp_path / "c.npz", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left


def test_statistics_count_the_gradient_norms_time_unless_clipping_alone_wants_them():
    trainer = _trainer()
    counted = Statistics(trainer.params, [])
    norms = counted.grad_norms()
    assert len(norms) == len(trainer.params) and counted.seconds > 0
    for_clipping = Statistics(trainer.params, [])
    for_clipping.grad_norms(counted=False)
    assert for_clipping.seconds == 0.0
    weights = Statistics(trainer.params, [])
    weights.weight_norms()  # every other statistic is counted, by default
    assert weights.seconds > 0


def test_the_trainer_counts_the_gradient_norms_of_a_sampled_step_only():
    trainer = _trainer(epochs=1)
    trainer.fit()  # gradients to measure
    trainer.settings.clip_norm = 100.0
    trainer.statistics.seconds = 0.0
    assert len(trainer._clip(1, sample=False)) == len(trainer.params)  # clipping wants them
    assert trainer.statistics.seconds == 0.0
    trainer._clip(2, sample=True)
    assert trainer.statistics.seconds > 0


def test_keep_2_keeps_last_and_the_newest_epoch_file(tmp_path):
    _trainer(epochs=3, callbacks=[Checkpointer(tmp_path, every=1, keep=2)]).fit()
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        "best.npz", "epoch_0003.npz", "last.npz"
    ]  # fmt: skip


def test_keep_1_never_writes_an_epoch_file_it_would_delete(tmp_path, monkeypatch):
    from nnexp.train import checkpointer

    written: list[str] = []
    real = checkpointer.save_checkpoint

    def spy(path, state):
        written.append(Path(path).name)
        return real(path, state)

    monkeypatch.setattr(checkpointer, "save_checkpoint", spy)
    _trainer(epochs=2, callbacks=[Checkpointer(tmp_path, every=1, keep=1)]).fit()
    assert not [name for name in written if name.startswith("epoch_")]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["best.npz", "last.npz"]


class _LastOnDisk(Callback):
    """After the checkpointer, at each epoch's end: the epoch that last.npz holds."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.epochs = directory, []

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        self.epochs.append(int(load_checkpoint(self.directory / "last.npz")["epoch"]))


def test_save_every_0_writes_every_epoch_even_when_the_clock_has_not_moved(tmp_path, monkeypatch):
    from nnexp.train import checkpointer

    monkeypatch.setattr(checkpointer.time, "monotonic", lambda: 100.0)  # a coarse clock
    on_disk = _LastOnDisk(tmp_path)
    _trainer(epochs=3, callbacks=[Checkpointer(tmp_path, save_every_s=0.0), on_disk]).fit()
    assert on_disk.epochs == [1, 2, 3]


def test_the_checkpointers_time_is_the_checkpoints_phase(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "totals", {})
    checkpointer = Checkpointer(tmp_path)
    trainer = _trainer(epochs=1, callbacks=[checkpointer])
    trainer.fit()
    assert "checkpoints" in timing.totals
    timing.totals.clear()
    checkpointer.on_epoch_end(trainer, 1, {"val/loss": 1.0})
    assert list(timing.totals) == ["checkpoints"]


def test_a_restored_run_keeps_the_last_epochs_other_metrics():
    stopper = EarlyStopping(patience=1, restore_best=True)
    trainer = _trainer(epochs=30, callbacks=[stopper])
    trainer.optimizer.lr = 0.05
    result = trainer.fit()
    assert "time/epoch_s" in result and result["best/epoch"] == stopper.best_epoch


def test_non_finite_test_metrics_after_the_first_epoch_name_epoch_1():
    data = _data()
    data.X_test[0] = np.nan
    model = mlp(2, [3], 1, activation="tanh", seed=0)
    trainer = Trainer(
        model, MSE(), SGD(list(model.parameters()), lr=0.05), Constant(0.05), data,
        TrainSettings(epochs=1, batch_size=8, stats=()),
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 1, "):
        trainer.fit()


def test_a_checkpoint_creates_its_missing_directories_and_leaves_no_temporary_file(tmp_path):
    from nnexp.train.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "a" / "b" / "epoch_0001.npz", {"x": np.arange(3.0)})
    assert path == tmp_path / "a" / "b" / "epoch_0001.npz" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_0001.npz"]
