"""Shared helpers: run the real CLI in a subprocess against a temporary sqlite MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, timeout: float = 180) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (a free port) serving `backend_uri`, artifacts over
    HTTP into `artifacts`; yields its URL, stops it (its own process group) afterwards."""
    import urllib.request

    port = free_port()
    env = cli_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
    log = artifacts.parent / f"mlflow-server-{port}.log"
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts)]
    args += ["--workers", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"mlflow server exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not up:\n{log.read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(autouse=True)
def _reset_mlflow_global_uri():
    """Tests that call `mlflow.set_tracking_uri` would leak their store into the next test of
    the same worker (model URIs then resolve against the wrong store): reset it after each."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
