"""Whole runs in subprocesses: the default run's wall time and phases, a 16-job sweep."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


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
