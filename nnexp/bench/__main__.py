"""`python -m nnexp.bench`: see `nnexp.bench`."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import nnexp.bench
from nnexp.bench.contenders import contenders
from nnexp.bench.problems import large_problem, small_problem
from nnexp.bench.runs import default_run, sweep_speedup
from nnexp.bench.watching import peak_memory, time_tracking
from nnexp.train.blas import describe_blas

SECTIONS = ["large", "small", "tracking", "memory", "default-run", "sweep"]


def table(rows: list[tuple[str, float, float]], base: float, base_name: str) -> str:
    lines = [f"{'':24s} {'s/epoch':>10s} {'vs ' + base_name:>12s} {'train acc':>10s}"]
    for name, seconds, acc in rows:
        lines.append(f"{name:24s} {seconds:10.4f} {seconds / base:11.2f}x {acc:10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.bench",
        description=nnexp.bench.__doc__,
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
