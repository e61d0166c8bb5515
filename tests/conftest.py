"""Shared helpers: run the real CLI in a subprocess against a temporary sqlite MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm import tqdm

# In-process progress bars share a thread lock, not tqdm's default multiprocessing one: mutmut
# forks every mutant's test run from one process, so that semaphore is shared by all the forks,
# and one killed while holding it hung every later bar (each recorded as a "timeout").
tqdm.set_lock(threading.RLock())


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
    """A TCP port on 127.0.0.1 that nothing listens on (the OS's pick)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1:`port` (default: a free one) serving `backend_uri`,
    artifacts over HTTP into `artifacts`, output appended to `log`. In its own process group
    (it starts uvicorn workers): `stop` ends that group. It can be stopped and started again on
    the same port and store, as a server that goes away and comes back."""

    def __init__(
        self,
        backend_uri: str,
        artifacts: Path,
        *,
        port: int | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.backend_uri, self.artifacts, self.cwd = backend_uri, artifacts, cwd
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = log or artifacts.parent / f"mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> MlflowServer:
        """Start it and wait until /health answers 200 (AssertionError if it exits or not)."""
        import urllib.request

        env = cli_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners
        args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--workers", "1"]
        args += ["--backend-store-uri", self.backend_uri]
        args += ["--artifacts-destination", str(self.artifacts)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=self.cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"mlflow server exited:\n{self._log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not up:\n{self._log_tail()}"
            time.sleep(0.3)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM its process group (SIGKILL after `timeout` s); nothing if not running."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this server started
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, timeout: float = 180) -> Iterator[str]:
    """`MlflowServer` on a free port for the block: yields its URL, stops it afterwards."""
    server = MlflowServer(backend_uri, artifacts)
    try:
        yield server.start(timeout).uri
    finally:
        server.stop()


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


def small_config(**parts):
    """A small run's config built in Python, no Hydra (moons, 60 rows, one hidden layer of 4,
    2 epochs, tracking off); `parts` replace whole groups."""
    from nnexp.config import (
        Config,
        ModelConfig,
        RegularizationConfig,
        ScheduleConfig,
        SGDConfig,
        TrackingConfig,
        TrainerConfig,
    )  # fmt: skip
    from nnexp.data import MoonsSpec

    defaults = dict(
        model=ModelConfig(hidden=[4]),
        optimizer=SGDConfig(lr=0.1),
        schedule=ScheduleConfig(),
        dataset=MoonsSpec(n_samples=60),
        regularization=RegularizationConfig(),
        trainer=TrainerConfig(epochs=2, batch_size=16, progress=False),
        tracking=TrackingConfig(enabled=False),
    )
    return Config(**(defaults | parts))


def model_rows(model, rows):
    """Rows as a logged nnexp model takes them: a DataFrame whose columns are the names of its
    signature's inputs (the dataset's feature names; MLflow refuses unnamed arrays)."""
    import numpy as np
    import pandas as pd

    names = model.metadata.get_input_schema().input_names()
    return pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=names)


# --- a sweep held in memory, for the report's figures (test_compare.py, test_plots.py) --------


class MemoryStore:
    """The client calls the report's figures make (a metric's history), over histories held
    in memory: {(run_id, key): [value per epoch]}."""

    tracking_uri = "sqlite:///mlflow.db"

    def __init__(self, histories: dict[tuple[str, str], list[float]]) -> None:
        self.histories = histories

    def get_metric_history(self, run_id: str, key: str) -> list:
        from types import SimpleNamespace

        values = self.histories.get((run_id, key), [])
        return [SimpleNamespace(step=i + 1, value=v) for i, v in enumerate(values)]


def memory_sweep(runs: list, histories: dict[tuple[str, str], list[float]], swept: list[str]):
    """A val/loss sweep of `runs` (RunRecords) whose histories are `histories`."""
    from nnexp.report.collect import Sweep

    return Sweep(
        sweep_id="s",
        parent_run_id="p",
        name="sweep",
        experiment_id="0",
        objective="val/loss",
        swept=swept,
        runs=runs,
        client=MemoryStore(histories),
    )


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Every matplotlib Figure saved while the test runs (the report's functions return paths:
    the figure is caught as it is written)."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def spy(fig, *args, **kwargs):
        figures.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures
