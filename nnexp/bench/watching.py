"""The cost of watching: statistics and MLflow metrics on against off; peak memory."""

from __future__ import annotations

import statistics
import tempfile
import tracemalloc
from pathlib import Path

from nnexp.bench.contenders import make_trainer, time_nnexp
from nnexp.bench.problems import Problem
from nnexp.tracking import MlflowTracker


def time_tracking(p: Problem, optimizer: str, lr: float, store: Path, rounds: int) -> dict:
    """Median epoch with everything off, and with every statistic sampled every step plus the
    MLflow metrics of each epoch (buffered, flushed every 2 s and at the end) on a sqlite store;
    off and on alternate for `rounds` rounds. The cost per epoch, the final flush included, two
    ways: `marginal_ms` = on - off (noisy on a shared machine), `measured_ms` = the time spent
    in the statistics and the tracking callback, clocked where it is spent."""
    from nnexp import timing

    offs, ons, marginals, direct = [], [], [], []
    for _ in range(rounds):
        off = time_nnexp(p, optimizer, lr, stats=False)[0]
        with tempfile.TemporaryDirectory(prefix="nnexp-bench-") as tmp:
            tracker = MlflowTracker(
                uri=f"sqlite:///{store}",
                experiment="nnexp-bench",
                run_name=f"tracking overhead ({p.name})",
                params={},
                tags={},
                run_dir=tmp,
                checkpoint_dir=Path(tmp) / "checkpoints",
                write_bundle=lambda directory: directory,
                input_example=p.X[:1],
                artifacts=False,  # per-epoch cost only: uploads are paid once per run
            )
            # Opening the store and creating the run happen before the first epoch starts (the
            # clock starts after them): paid once per run, not per epoch.
            keys = ("tracking: metrics", "tracking: metrics, final flush")
            before = [timing.totals.get(key, 0.0) for key in keys]
            on, _, stats_s = time_nnexp(p, optimizer, lr, stats=True, callbacks=[tracker])
            during, final = (
                timing.totals.get(k, 0.0) - b for k, b in zip(keys, before, strict=True)
            )
        offs.append(off)
        ons.append(on)
        # The final flush happens after the last epoch: it is charged to the epochs here.
        marginals.append(on - off + final / p.epochs)
        direct.append(stats_s + (during + final) / p.epochs)
    off, marginal = statistics.median(offs), statistics.median(marginals)
    measured = statistics.median(direct)
    return {
        "off_s": off,
        "on_s": statistics.median(ons),
        "ratio": (off + marginal) / off,
        "marginal_ms": marginal * 1e3,
        "measured_ms": measured * 1e3,
        "measured_ratio": (off + measured) / off,
    }


def peak_memory(p: Problem) -> dict[str, float]:
    """Peak of everything allocated while one epoch trains (tracemalloc sees NumPy's buffers),
    plus the data that was already there, against the float32 data plus the model."""
    tracemalloc.start()
    try:
        trainer = make_trainer(p, "sgd", 0.1, stats=True)
        trainer.settings.epochs = 1
        trainer.fit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = p.X.nbytes + p.y.nbytes
    model = sum(param.value.nbytes for param in trainer.params)
    return {
        "data_mb": data / 2**20,
        "peak_mb": (data + peak) / 2**20,
        "ratio": (data + peak) / (data + model),
    }
