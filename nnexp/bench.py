"""`python -m nnexp.bench`: how fast nnexp trains an MLP, against the bound and the neighbours.

In one process and on the same data it times median seconds per epoch of
  nnexp           the real Trainer (statistics off / all statistics on every step)
  gemm            the bare matrix products of one epoch's forward and backward passes: the bound
  sklearn         scikit-learn's MLPClassifier, same architecture, solver, lr, batch and dtype
  torch           PyTorch CPU, if it happens to be installed
and reports each one's final training accuracy (equal speed must mean equal work), the ratios,
and the BLAS library, kernel and threads it ran with. Then:
  tracking        the same epochs with all statistics every step and MLflow metrics on (a
                  throwaway sqlite store) against everything off: the cost of watching
  memory          peak memory of the large run against the float32 data plus the model
  default run     `python -m nnexp` in a subprocess, on an existing store: wall time and where
                  it goes (imports, store, data, training, artifacts, model logging)
  sweep           16 small jobs with hydra/launcher=joblib against the basic launcher
`--quick` shrinks everything (CI runs it so the benchmark cannot rot); `--log URI` records the
numbers as an MLflow run (experiment ``nnexp-bench``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnexp.train.blas import describe_blas
from nnexp.train.callbacks import Callback


@dataclass
class Problem:
    name: str
    X: np.ndarray
    y: np.ndarray
    hidden: list[int]
    n_classes: int
    batch: int
    epochs: int


def large_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_classification

    n, d = (2000, 64) if quick else (60000, 784)
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=min(d, 50), n_classes=10, random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    hidden = [32, 16] if quick else [256, 128]
    return Problem("large", X, y, hidden, 10, 128, 2 if quick else 3)


def small_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    return Problem("small", X, y, [16], 2, 32, 5 if quick else 100)


def median_epoch(run_epoch: Callable[[], None], epochs: int) -> float:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the contenders ------------------------------------------------------------------------------


class EpochClock(Callback):
    """Notes when each epoch ends. Put last: an epoch's time is then everything the loop does
    for it, validation and the other callbacks (tracking) included."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_fit_start(self, trainer) -> None:
        self.stamps = [time.perf_counter()]

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        self.stamps.append(time.perf_counter())

    def median(self) -> float:
        return statistics.median(b - a for a, b in itertools.pairwise(self.stamps))


def make_trainer(p: Problem, optimizer: str, lr: float, stats: bool, callbacks=()):
    from nnexp.nn import OPTIMIZERS, SCHEDULES, SoftmaxCrossEntropy, mlp
    from nnexp.train import Data, Trainer, TrainSettings

    model = mlp(p.X.shape[1], p.hidden, p.n_classes, activation="relu", dtype=p.X.dtype)
    empty = p.X[:0]
    data = Data(p.X, p.y, p.X[:256], p.y[:256], empty, p.y[:0], classification=True)
    settings = TrainSettings(
        epochs=p.epochs,
        batch_size=p.batch,
        stats=("grad_norm", "update_ratio", "activations") if stats else (),
    )
    opt = OPTIMIZERS.lookup(optimizer)(list(model.parameters()), lr=lr)
    schedule = SCHEDULES.lookup("constant")(lr)
    loss = SoftmaxCrossEntropy()
    return Trainer(model, loss, opt, schedule, data, settings, list(callbacks))


def time_nnexp(p: Problem, optimizer: str, lr: float, stats: bool, callbacks=()) -> tuple:
    """Median seconds per epoch, final training accuracy, and the seconds per epoch that the
    statistics took (measured inside the loop)."""
    clock = EpochClock()
    trainer = make_trainer(p, optimizer, lr, stats, [*callbacks, clock])
    trainer.fit()
    acc = float(np.mean(trainer.loss.predict(trainer.predict_logits(p.X)) == p.y))
    return clock.median(), acc, trainer.stats_seconds / trainer.epoch


def time_gemm(p: Problem) -> tuple:
    """The products one epoch cannot avoid: forward x@W per layer, backward h.T@d per layer and
    d@W.T for all but the first layer — with the trainer's shapes and dtype, nothing else."""
    rng = np.random.default_rng(0)
    widths = [p.X.shape[1], *p.hidden, p.n_classes]
    W = [rng.standard_normal((a, b)).astype(p.X.dtype) for a, b in itertools.pairwise(widths)]
    n = len(p.X)

    def epoch():
        for start in range(0, n, p.batch):
            h = [p.X[start : start + p.batch]]
            for w in W:
                h.append(h[-1] @ w)
            d = h[-1]
            for i in range(len(W) - 1, -1, -1):
                h[i].T @ d
                if i:
                    d = d @ W[i].T

    return median_epoch(epoch, max(2, p.epochs)), float("nan")


def time_sklearn(p: Problem, optimizer: str, lr: float) -> tuple:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=p.hidden,
        solver=optimizer,
        learning_rate_init=lr,
        batch_size=p.batch,
        max_iter=p.epochs,
        alpha=0.0,
        momentum=0.0,
        nesterovs_momentum=False,
        tol=0.0,
        n_iter_no_change=p.epochs + 1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(p.X, p.y)
        seconds = (time.perf_counter() - start) / p.epochs
    return seconds, float(clf.score(p.X, p.y))


def time_torch(p: Problem, optimizer: str, lr: float) -> tuple | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    dtype = torch.float32 if p.X.dtype == np.float32 else torch.float64
    widths = [p.X.shape[1], *p.hidden, p.n_classes]
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    X, y = torch.from_numpy(p.X), torch.from_numpy(p.y.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        order = torch.randperm(len(X))
        for start in range(0, len(X), p.batch):
            idx = order[start : start + p.batch]
            opt.zero_grad()
            loss_fn(net(X[idx]), y[idx]).backward()
            opt.step()

    seconds = median_epoch(epoch, p.epochs)
    with torch.no_grad():
        acc = float((net(X).argmax(1) == y).double().mean())
    return seconds, acc


def contenders(p: Problem, optimizer: str, lr: float, rounds: int) -> list[tuple]:
    """(name, seconds per epoch, train accuracy) of each contender: the median over `rounds`
    rounds that run every contender once, so a slow spell of a shared machine hits them all."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(rounds):
        measured = {
            "gemm bound": time_gemm(p),
            "nnexp": time_nnexp(p, optimizer, lr, stats=False),
            "nnexp + all stats": time_nnexp(p, optimizer, lr, stats=True),
            f"sklearn MLP ({optimizer})": time_sklearn(p, optimizer, lr),
            f"torch ({optimizer})": time_torch(p, optimizer, lr),
        }
        for name, result in measured.items():
            if result is not None:
                runs.setdefault(name, []).append(result[:2])
    return [
        (name, statistics.median(s for s, _ in results), results[-1][1])
        for name, results in runs.items()
    ]


# --- the cost of watching -------------------------------------------------------------------------


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
            tracker = metrics_tracker(
                uri=f"sqlite:///{store}",
                experiment="nnexp-bench",
                run_name=f"tracking overhead ({p.name})",
                params={},
                tags={},
                run_dir=tmp,
                checkpoint_dir=Path(tmp) / "checkpoints",
                write_bundle=lambda directory: directory,
                input_example=p.X[:1],
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


def metrics_tracker(**kwargs: object):
    """`MlflowTracker` with only its metrics: no config, checkpoints, plots or model to upload
    (those are paid once per run, and the default-run breakdown shows them)."""
    from nnexp.tracking import MlflowTracker

    class MetricsOnly(MlflowTracker):
        def _log_config(self, hydra_path: str = "hydra") -> None:
            pass

        def _send_checkpoints(self) -> None:
            pass

        def _send_plots(self, history) -> None:
            pass

        def _send_model(self, step: int) -> None:
            pass

    return MetricsOnly(**kwargs)


# --- memory -------------------------------------------------------------------------------------


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


# --- whole runs, in subprocesses -----------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # ./mlflow.db
    return env | {"PYTHONWARNINGS": "ignore"} | extra


def default_run(workdir: Path, quick: bool) -> tuple[float, dict[str, float]]:
    """`python -m nnexp` twice in `workdir`: the first creates the store, the second is timed
    and reports its phases (nnexp.timing)."""
    cmd = [sys.executable, "-m", "nnexp", "trainer.progress=false"]
    if quick:
        cmd.append("trainer.epochs=3")
    timings = workdir / "timings.json"
    _run(cmd, workdir, _env())
    wall = _run(cmd, workdir, _env(NNEXP_TIMINGS=str(timings)))
    return wall, json.loads(timings.read_text())


def sweep_speedup(workdir: Path, quick: bool) -> dict[str, float]:
    """The same small-problem sweep with the basic launcher (jobs one after the other, in this
    process) and with joblib (2 workers, one BLAS thread each: jobs x threads = cores)."""
    jobs, epochs = (4, 3) if quick else (16, 100)
    cmd = [
        sys.executable, "-m", "nnexp", "-m", f"trainer.seed=range({jobs})",
        f"trainer.epochs={epochs}", "trainer.progress=false",
        "tracking.experiment=nnexp-bench-sweep",
    ]  # fmt: skip
    basic = _run([*cmd, "hydra.sweep.dir=multirun/basic"], workdir, _env())
    joblib = _run(
        [
            *cmd,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweep.dir=multirun/joblib",
        ],
        workdir,
        _env(),
    )
    return {
        "jobs": jobs,
        "basic_s": basic,
        "joblib_s": joblib,
        "speedup": basic / joblib,
        "headroom": parallel_headroom(quick),
    }


def parallel_headroom(quick: bool) -> float:
    """What 2 processes can gain on this machine at best: the throughput of the same pure-Python
    loop in 2 processes at once against 1 alone (2.0 on 2 idle cores; less where the cores are
    shared with other tenants). A sweep's speedup is bounded by it."""
    loops = 2_000_000 if quick else 20_000_000
    code = f"for i in range({loops}): pass"

    def run(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    return statistics.median(2 * run(1) / run(2) for _ in range(1 if quick else 3))


# --- the report -------------------------------------------------------------------------------


def table(rows: list[tuple[str, float, float]], base: float, base_name: str) -> str:
    lines = [f"{'':24s} {'s/epoch':>10s} {'vs ' + base_name:>12s} {'train acc':>10s}"]
    for name, seconds, acc in rows:
        lines.append(f"{name:24s} {seconds:10.4f} {seconds / base:11.2f}x {acc:10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=SECTIONS,
        help="run only these sections (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds of the contenders, medians reported (default 3, quick 1)",
    )
    parser.add_argument("--log", metavar="URI", help="record the results as an MLflow run")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    dtype = np.dtype(args.dtype)
    results: dict[str, float] = {}
    print(f"BLAS: {describe_blas()}")
    print(f"dtype: {dtype}, numpy {np.__version__}, {os.cpu_count()} cores\n")

    problems = {
        "large": large_problem(args.quick, dtype),
        "small": small_problem(args.quick, dtype),
    }
    settings = {"large": (("sgd", 0.1), ("adam", 1e-3)), "small": (("sgd", 0.1),)}
    for name in ("large", "small"):
        if name not in args.only:
            continue
        p = problems[name]
        arch = "-".join(map(str, [p.X.shape[1], *p.hidden, p.n_classes]))
        print(f"== {p.name}: {p.X.shape[0]} x {p.X.shape[1]}, MLP {arch}, batch {p.batch}")
        for optimizer, lr in settings[name]:
            rows = contenders(p, optimizer, lr, args.rounds)
            gemm, ours, sk = rows[0][1], rows[1][1], rows[3][1]
            print(f"-- {optimizer} lr={lr} (median of {args.rounds} interleaved rounds)")
            print(table(rows, ours, "nnexp"))
            print(f"nnexp/gemm = {ours / gemm:.2f}x   nnexp/sklearn = {ours / sk:.2f}x\n")
            results |= {
                f"{name}.{optimizer}.nnexp_s": ours,
                f"{name}.{optimizer}.vs_gemm": ours / gemm,
                f"{name}.{optimizer}.vs_sklearn": ours / sk,
            }

    with tempfile.TemporaryDirectory(prefix="nnexp-bench-") as tmp:
        workdir = Path(tmp)
        if "tracking" in args.only:
            print("== tracking: all statistics every step + MLflow metrics (sqlite) vs all off")
            for name in ("large", "small"):
                t = time_tracking(problems[name], "sgd", 0.1, workdir / "tracking.db", args.rounds)
                print(
                    f"{name:6s} off {t['off_s'] * 1e3:8.2f} ms/epoch, on {t['on_s'] * 1e3:8.2f}: "
                    f"on - off {t['marginal_ms']:7.2f} ms/epoch = {t['ratio']:.3f}x;  clocked "
                    f"in stats + tracker {t['measured_ms']:6.2f} ms/epoch = "
                    f"{t['measured_ratio']:.3f}x"
                )
                results |= {f"tracking.{name}.{k}": v for k, v in t.items()}
            print()
        if "memory" in args.only:
            m = peak_memory(problems["large"])
            print(
                f"== memory (large, 1 epoch): data {m['data_mb']:.1f} MiB, peak {m['peak_mb']:.1f} "
                f"MiB = {m['ratio']:.3f}x (data + model)\n"
            )
            results |= {f"memory.{k}": v for k, v in m.items()}
        if "default-run" in args.only:
            wall, phases = default_run(workdir, args.quick)
            print(f"== default run (python -m nnexp, existing store): {wall:.2f} s wall")
            for phase, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
                print(f"  {phase:36s} {seconds:6.2f} s")
            rest = wall - sum(phases.values())
            print(f"  {'python start-up, exit, unmeasured':36s} {rest:6.2f} s\n")
            results["default_run.wall_s"] = wall
        if "sweep" in args.only:
            sw = sweep_speedup(workdir, args.quick)
            print(
                f"== sweep of {sw['jobs']} small jobs: basic {sw['basic_s']:.1f} s, joblib "
                f"(2 jobs x 1 BLAS thread) {sw['joblib_s']:.1f} s = {sw['speedup']:.2f}x faster; "
                f"2 processes can gain at most {sw['headroom']:.2f}x here (a CPU loop, 1 vs 2 "
                "at once)\n"
            )
            results |= {f"sweep.{k}": v for k, v in sw.items()}
    if args.log:
        log_results(args.log, results, quick=args.quick, dtype=str(dtype))


SECTIONS = ["large", "small", "tracking", "memory", "default-run", "sweep"]


def log_results(uri: str, results: dict[str, float], **params: object) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("nnexp-bench")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("nnexp-bench")
    )
    run = client.create_run(experiment_id, run_name="bench")
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in results.items()],
        params=[Param(k, str(v)) for k, v in (params | {"blas": describe_blas()}).items()],
        synchronous=True,
    )
    client.set_terminated(run.info.run_id)
    print(f"logged to {uri}: run {run.info.run_id}")


if __name__ == "__main__":
    main()
