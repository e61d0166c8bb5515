"""Shared helpers: run the real CLI in a subprocess against a temporary sqlite MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.pop("MLFLOW_TRACKING_URI", None)
    # As in an activated venv: MLflow starts tools of its own (uvicorn, gunicorn) by name.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    # Tests run two at a time (xdist -n 2) on 2 cores: one BLAS thread each.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


class Cli:
    """`python -m nnexp` in `workdir`, tracking into `workdir/mlflow.db`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.uri = f"sqlite:///{workdir / 'mlflow.db'}"

    def __call__(self, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "nnexp", *overrides, f"tracking.uri={self.uri}"]
        if "-m" not in overrides and "--multirun" not in overrides:
            args.append("hydra.run.dir=outputs/run")
        return subprocess.run(
            args, cwd=self.workdir, env=cli_env(), capture_output=True, text=True, timeout=timeout
        )

    def ok(self, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = self(*overrides, timeout=timeout)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)

    def runs(self, experiment: str = "nnexp"):
        if not (self.workdir / "mlflow.db").exists():
            return []  # nothing was ever tracked (and opening it would create the store)
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return Cli(tmp_path)
