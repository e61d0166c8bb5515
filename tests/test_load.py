"""Load: a 32-job sweep with the joblib launcher (2 workers) against one sqlite store and against
a local `mlflow server` loses no run and no metric point (counted). The store and the
experiment are created once by the sweep callback (`nnexp.hydra_callbacks`, on_multirun_start)
before the jobs start: parallel jobs on a *new* sqlite store raced on its schema migration."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import MlflowServer, cli_env

from nnexp.names import N_PARAMS

LRS = ("0.01", "0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "1.0")
INITS = ("he", "xavier", "normal", "uniform")
EPOCHS = 3
SWEEP = (
    "-m",
    f"optimizer.lr={','.join(LRS)}",
    f"model.init={','.join(INITS)}",
    f"trainer.epochs={EPOCHS}",
    "dataset.n_samples=200",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
)


def _count(client) -> None:
    exp = client.get_experiment_by_name("nnexp")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    jobs = [r for r in runs if "nnexp.resume_key" in r.data.tags]
    assert len(jobs) == len(LRS) * len(INITS)  # no run lost
    assert len({r.data.tags["nnexp.resume_key"] for r in jobs}) == 32  # 32 distinct jobs
    assert all(r.info.status == "FINISHED" for r in jobs)
    assert all(r.info.experiment_id == exp.experiment_id for r in jobs)
    default = client.get_experiment_by_name("Default")
    if default is not None:  # nothing landed in MLflow's Default experiment
        assert not client.search_runs([default.experiment_id])
    for run in jobs:  # every metric of every epoch
        once = ("epochs_run", N_PARAMS)  # logged once, not per epoch
        keys = [k for k in run.data.metrics if not k.startswith("test/") and k not in once]
        assert len(keys) > 20
        for key in keys:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (run.info.run_id, key, steps)


@pytest.mark.slow
def test_32_jobs_with_joblib_against_one_sqlite_store(cli):
    cli.ok(*SWEEP, timeout=1200)
    _count(cli.client())


@pytest.mark.slow
def test_32_jobs_with_joblib_against_an_mlflow_server(cli, tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    server = MlflowServer(f"sqlite:///{root / 'server.db'}", root / "artifacts", cwd=root).start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nnexp", *SWEEP, f"tracking.uri={server.uri}"],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _count(server.client())
    finally:
        server.stop()
