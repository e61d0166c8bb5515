"""Tracking-server faults, against a real ``mlflow server`` on 127.0.0.1 started and stopped by
the tests (sqlite backend and artifacts in tmp_path):

- server down at start: one clear error line within seconds, before any training;
- server gone mid-run: training finishes, metrics and the rest are spooled locally, the user is
  told where and how to upload them; `python -m nnexp.tracking.offline` uploads them later and
  the run is complete (every epoch's metrics, checkpoints, model and its registered version,
  FINISHED);
- server back mid-run: the tracker uploads the spool itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MlflowServer, cli_env

EPOCHS = 30
# ~0.3 s an epoch: the server can be stopped (and restarted) while the run trains.
SLOW = (
    "dataset.n_samples=4000",
    "model.hidden=[64,64]",
    f"trainer.epochs={EPOCHS}",
    "trainer.batch_size=16",
    "tracking.flush_every_s=0",
)


@pytest.fixture
def server(tmp_path) -> MlflowServer:
    """A server (sqlite store and artifacts under tmp_path/server) that the test starts, stops
    and restarts on the same port; stopped at the end."""
    root = tmp_path / "server"
    root.mkdir()
    srv = MlflowServer(
        f"sqlite:///{root / 'server.db'}", root / "artifacts", log=root / "server.log", cwd=root
    )
    yield srv
    srv.stop()


def _nnexp(workdir: Path, uri: str, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "nnexp", *overrides, f"tracking.uri={uri}"]
    args.append("hydra.run.dir=outputs/run")
    workdir.mkdir(exist_ok=True)
    return subprocess.Popen(
        args,
        cwd=workdir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_epochs(server: MlflowServer, n: int, proc: subprocess.Popen, timeout: float = 240):
    """Wait until the run on `server` has `n` epochs of val/loss; return its id."""
    client = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        exp = client.get_experiment_by_name("nnexp")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val/loss")) >= n:
            return runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError("the run did not log in time")


def _upload(spool: Path) -> subprocess.CompletedProcess:
    """`python -m nnexp.tracking.offline <spool>`: what the user is told to run."""
    return subprocess.run(
        [sys.executable, "-m", "nnexp.tracking.offline", str(spool)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_complete(server: MlflowServer, run_id: str, epochs: int = EPOCHS) -> None:
    client = server.client()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "val/loss", "val/acc", "grad_norm/global/mean"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert steps == list(range(1, epochs + 1)), key
    assert {"test/acc", "test/loss"} <= run.data.metrics.keys()
    artifacts = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/last.npz", "checkpoints/best.npz"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} >= {"plots/curves.png"}
    assert run.data.tags["model_uri"].startswith("models:/")


def _versions(server: MlflowServer, name: str) -> list[tuple[int, str]]:
    found = server.client().search_model_versions(f"name='{name}'")
    return sorted((int(v.version), v.run_id) for v in found)


def test_server_down_at_start_is_a_clear_error_within_seconds(server, tmp_path):
    server.start()
    server.stop()  # it was there; now nothing listens on its port
    started = time.monotonic()
    proc = _nnexp(tmp_path / "work", server.uri)
    _, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 4
    (line,) = [ln for ln in err.splitlines() if ln.startswith("nnexp: error:")]
    assert f"MLflow tracking server {server.uri} is unreachable" in line
    assert "tracking.enabled=false" in line and "Traceback" not in err
    assert elapsed < 20, elapsed  # MLflow's default retries took 246 s here
    assert not (tmp_path / "work/outputs/run/checkpoints").exists()  # no training


def test_server_gone_mid_run_keeps_everything_and_uploads_later(server, tmp_path):
    server.start()
    proc = _nnexp(
        tmp_path / "work", server.uri, *SLOW, "tracking.retry_every_s=1000",
        "tracking.register_as=spooled",
    )  # fmt: skip
    run_id = _wait_for_epochs(server, 3, proc)
    server.stop()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err  # training went on
    assert f"nnexp: {EPOCHS} epochs" in out
    spool = tmp_path / "work/outputs/run/mlflow-offline"
    assert f"python -m nnexp.tracking.offline {spool}" in err  # the user is told how
    assert (spool / "metrics.jsonl").stat().st_size > 0
    assert (tmp_path / "work/outputs/run/checkpoints/last.npz").is_file()

    server.start()  # the same store, back
    assert server.client().get_run(run_id).info.status == "RUNNING"
    upload = _upload(spool)
    assert upload.returncode == 0, upload.stderr
    assert "uploaded" in upload.stdout
    _assert_complete(server, run_id)
    # the spooled model is registered as it is uploaded, once
    assert _versions(server, "spooled") == [(1, run_id)]
    # Uploading again sends nothing twice.
    again = _upload(spool)
    assert "uploaded 0 metric points, 0 operations" in again.stdout
    _assert_complete(server, run_id)
    assert _versions(server, "spooled") == [(1, run_id)]


@pytest.mark.slow
def test_server_back_mid_run_gets_the_spool_from_the_tracker(server, tmp_path):
    server.start()
    # 1200 epochs (~60 s, after the fast path; 300 took 60-90 s before it): the server restarts
    # (up to 25 s measured on a busy machine) while the run still trains.
    proc = _nnexp(
        tmp_path / "work", server.uri, *SLOW, "trainer.epochs=1200", "tracking.retry_every_s=1"
    )
    run_id = _wait_for_epochs(server, 2, proc)
    server.stop()
    time.sleep(2)  # a few epochs go to the spool
    assert proc.poll() is None
    server.start()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "answers again" in err and "nnexp.tracking.offline" not in err
    _assert_complete(server, run_id, epochs=1200)
