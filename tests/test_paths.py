"""`paths`: a run, a sweep and a report started in a sub-directory of a project land in the
project's store, outputs/, multirun/ and report-<id>/ — nothing scatters into the sub-directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

from nnexp.tracking.paths import default_store_uri, project_root


def test_the_root_is_the_nearest_directory_with_a_store_or_git(tmp_path, monkeypatch):
    monkeypatch.delenv("NNEXP_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    assert project_root(deep) == deep  # no marker up to the filesystem root: where it starts
    (tmp_path / "proj" / ".git").mkdir()
    assert project_root(deep) == tmp_path / "proj"
    (tmp_path / "proj" / "a" / "mlflow.db").write_bytes(b"")  # a store nearer: it wins
    assert project_root(deep) == tmp_path / "proj" / "a"
    assert default_store_uri(deep) == f"sqlite:///{tmp_path / 'proj' / 'a' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_store_uri(deep) == "http://127.0.0.1:5000"
    monkeypatch.setenv("NNEXP_ROOT", str(tmp_path))
    assert project_root(deep) == tmp_path


def test_the_home_directory_is_never_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("NNEXP_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # a home under git (dotfiles) with a stray store
    (tmp_path / ".git").mkdir()
    (tmp_path / "mlflow.db").write_bytes(b"")
    work = tmp_path / "work"
    work.mkdir()
    assert project_root(work) == work


def _nnexp(cwd: Path, *args: str, module: str = "nnexp") -> subprocess.CompletedProcess:
    env = cli_env()
    env.pop("NNEXP_ROOT", None)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow  # a run, a 2-job sweep and a report through the real CLI
def test_runs_sweeps_and_reports_from_a_sub_directory_land_in_the_project(tmp_path):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)  # a project (the marker is all that counts)
    here = project / "src" / "notebooks"
    here.mkdir(parents=True)
    tiny = ("dataset.n_samples=100", "trainer.epochs=2", "trainer.stats=[]")
    _nnexp(here, *tiny)
    _nnexp(here, "-m", *tiny, "optimizer.lr=0.1,0.2")
    _nnexp(here, module="nnexp.compare")
    assert list(here.iterdir()) == []  # nothing where the user stands
    assert (project / "mlflow.db").is_file()
    (run_dir,) = (project / "outputs").glob("*/*")  # outputs/<date>/<time>
    assert (run_dir / "checkpoints" / "last.npz").is_file()
    assert len(list((project / "multirun").glob("*/*/[01]"))) == 2  # the sweep's two jobs
    (report,) = project.glob("report-*")
    assert (report / "report.html").is_file()
    assert {p.name for p in (project / "mlruns").iterdir()} >= {"1"}  # artifacts beside the store
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nnexp").experiment_id])
    assert len(runs) == 4  # the run, the sweep's parent and its two jobs
    assert all(r.info.artifact_uri.startswith(str(project / "mlruns")) for r in runs)
