"""The speed measures change nothing but speed: the packed parameter vector updates exactly as
per-parameter updates do, throttled checkpoints still leave the last completed epoch on disk,
the plot worker draws what in-process drawing draws, timing phases add up, and the benchmark
runs (shrunken) end to end."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env

from nnexp.data import Splits
from nnexp.nn import OPTIMIZERS, SCHEDULES, SoftmaxCrossEntropy, flat_view, mlp, pack
from nnexp.train import Callback, Checkpointer, Trainer, TrainSettings, load_checkpoint


def _data(n: int = 160, dtype=np.float32) -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 4)).astype(dtype)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return Splits(X[:120], y[:120], X[120:], y[120:], X[:0], y[:0], task="multiclass")


def _unpacked(model):
    """The same model with each parameter in an array of its own (as before packing)."""
    for p in model.parameters():
        p.value, p.grad = p.value.copy(), p.grad.copy()
    return model


OPTIMIZER_CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}),
    ("adam", {}),
    ("adamw", {"weight_decay": 0.1}),
]


@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZER_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("chunk", [None, 32], ids=["one-chunk", "chunked"])
def test_packed_training_is_bit_for_bit_the_per_parameter_one(
    name, kwargs, dtype, chunk, monkeypatch
):
    if chunk:  # the 139 parameters updated in 5 chunks, as a large model's are
        monkeypatch.setattr("nnexp.nn.optim.CHUNK", chunk)
    results = []
    for packed in (True, False):
        model = mlp(4, [8, 8], 3, dtype=dtype, seed=1, dropout=0.1)
        if not packed:
            _unpacked(model)
        params = list(model.parameters())
        assert (flat_view([p.value for p in params]) is not None) == packed
        optimizer = OPTIMIZERS.lookup(name)(params, lr=0.01, **kwargs)
        if packed:
            assert len(optimizer._groups) == (5 if chunk else 1)
        settings = TrainSettings(epochs=3, batch_size=16, l2=1e-3, clip_norm=1.0)
        trainer = Trainer(
            model,
            SoftmaxCrossEntropy(),
            optimizer,
            SCHEDULES.lookup("constant")(0.01),
            _data(dtype=np.dtype(dtype)),
            settings,
        )
        trainer.fit()
        results.append((trainer, optimizer))
    (a, opt_a), (b, opt_b) = results
    for pa, pb in zip(a.params, b.params, strict=True):
        assert pa.value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(pa.value, pb.value, err_msg=pa.name)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)
    assert [h["train/loss"] for h in a.history] == [h["train/loss"] for h in b.history]


def test_pack_makes_views_and_refuses_mixed_dtypes():
    model = mlp(3, [5], 2, seed=0)
    params = list(model.parameters())
    values = flat_view([p.value for p in params])
    assert values is not None and values.size == sum(p.value.size for p in params)
    values[:] = 1.0  # writes through to every parameter
    assert all((p.value == 1.0).all() for p in params)
    assert flat_view([p.value for p in params[1:]]) is None  # not the whole buffer
    mixed = mlp(3, [5], 2, seed=0)
    mixed.modules[0].W.value = mixed.modules[0].W.value.astype(np.float64)
    with pytest.raises(ValueError, match="several dtypes"):
        pack(list(mixed.parameters()))


class _FailAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            raise RuntimeError("boom")


def _checkpointed(tmp_path: Path, epochs: int, callbacks=()) -> Trainer:
    model = mlp(4, [8], 3, seed=0)
    params = list(model.parameters())
    return Trainer(
        model,
        SoftmaxCrossEntropy(),
        OPTIMIZERS.lookup("adam")(params, lr=0.01),
        SCHEDULES.lookup("constant")(0.01),
        _data(),
        TrainSettings(epochs=epochs, batch_size=16),
        [Checkpointer(tmp_path, save_every_s=3600), *callbacks],
    )


def test_throttled_checkpoints_write_the_first_and_the_last_epoch(tmp_path):
    class Peek(Callback):
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_epoch_end(self, trainer, epoch, metrics):
            self.seen.append(int(load_checkpoint(tmp_path / "last.npz")["epoch"]))

    peek = Peek()
    trainer = _checkpointed(tmp_path, 4, [peek])
    trainer.fit()
    assert peek.seen == [1, 1, 1, 1]  # the first epoch is written, then nothing for an hour
    state = load_checkpoint(tmp_path / "last.npz")  # ... until training ends
    assert int(state["epoch"]) == 4
    for p in trainer.params:
        np.testing.assert_array_equal(state[f"param/{p.name}"], p.value)


def test_a_failing_run_leaves_its_last_completed_epoch(tmp_path):
    trainer = _checkpointed(tmp_path, 6, [_FailAt(3)])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit()
    # The failure came after epoch 3's checkpointer: epoch 3 is complete and on disk.
    assert int(load_checkpoint(tmp_path / "last.npz")["epoch"]) == 3
    assert int(load_checkpoint(tmp_path / "best.npz")["epoch"]) <= 3


def test_timing_phases_are_exclusive_and_add_up():
    from nnexp import timing

    timing.totals.clear()
    with timing.phase("outer"):
        time.sleep(0.05)
        with timing.phase("inner"):
            time.sleep(0.1)
    assert timing.totals["inner"] == pytest.approx(0.1, abs=0.05)
    assert timing.totals["outer"] == pytest.approx(0.05, abs=0.04)


@pytest.mark.parametrize("single_run", [True, False])
def test_startup_objects_are_set_aside_and_the_collector_turned_back_on(single_run):
    import gc
    import weakref

    from nnexp.__main__ import SetAsideStartupObjects

    class Node:
        other: Node

    def garbage_cycle() -> weakref.ref:
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    frozen = gc.get_freeze_count()
    try:
        gc.disable()  # as `python -m nnexp` starts
        startup = garbage_cycle()
        SetAsideStartupObjects(single_run).on_fit_start(None)
        assert gc.isenabled()
        gc.collect()
        if single_run:  # set aside, not collected: no full pass at start-up, nor later
            assert gc.get_freeze_count() > frozen and startup() is not None
        else:  # a multirun's jobs must not leave frozen objects behind: collected as usual
            assert gc.get_freeze_count() == frozen and startup() is None
        before = gc.get_freeze_count()
        SetAsideStartupObjects(single_run).on_fit_start(None)  # collector on: nothing to do
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
        gc.enable()


def test_plot_worker_draws_what_in_process_drawing_draws(tmp_path):
    from nnexp.tracking.plot_worker import PlotWorker
    from nnexp.tracking.plots import make_plots

    history = [
        {"train/loss": 1 / e, "val/loss": 1.1 / e, "train/acc": 0.5, "val/acc": math.nan}
        | {"grad_norm/dense_0/W/mean": 0.1 * e, "grad_norm/dense_1/W/mean": 0.2}
        for e in range(1, 6)
    ]
    worker = PlotWorker()
    worker.send(history, tmp_path / "worker")
    made = worker.result()
    expected = make_plots(history, tmp_path / "here")
    assert made is not None and [p.name for p in made] == [p.name for p in expected]
    assert all(p.stat().st_size > 1000 for p in made)

    dead = PlotWorker()
    dead.stop()
    dead.send(history, tmp_path / "dead")
    assert dead.result() is None  # the caller draws in-process instead


@pytest.mark.slow
def test_the_benchmark_runs_shrunken(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp.bench", "--quick", "--log", f"sqlite:///{tmp_path}/b.db"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for needle in (
        "BLAS: ",
        "nnexp/gemm = ",
        "nnexp/sklearn = ",
        "== tracking",
        "clocked in stats + tracker",
        "== memory",
        "== default run",
        "tracking: model",
        "== sweep of 4 small jobs",
        "logged to sqlite:///",
    ):
        assert needle in out, needle
