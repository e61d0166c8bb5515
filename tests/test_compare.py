"""`python -m nnexp.compare`: the report of a sweep from the tracking store alone — the table,
the PNG plots and one self-contained HTML page — on a real 2×2 sweep with two diverged jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli, cli_env

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Cli:
    """A 2×2 sweep (init × lr) whose lr=1e6 jobs diverge; its Hydra output dir is removed, so
    the report can only come from the store."""
    cli = Cli(tmp_path_factory.mktemp("compare"))
    cli.ok("-m", "model.init=xavier,he", "optimizer.lr=0.1,1e6", "trainer.epochs=2")
    shutil.rmtree(cli.workdir / "multirun")
    return cli


def compare(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnexp.compare", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def parent_of(cli: Cli):
    (parent,) = [r for r in cli.runs() if r.data.tags.get("sweep.role") == "parent"]
    return parent


@pytest.mark.slow
def test_report_of_the_latest_sweep_from_the_store_alone(swept):
    proc = compare(swept.workdir, "--out", "report")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("0 ", "1 ", "2 ", "3 "))]
    assert len(rows) == 4
    assert sum("diverged" in row for row in rows) == 2
    assert sum("finished" in row for row in rows) == 2
    assert all(("lr=1e+06" in row) == ("diverged" in row) for row in rows)
    assert "val/loss final" in proc.stdout and "val/acc best" in proc.stdout
    out = swept.workdir / "report"
    for name in ("val_loss.png", "heatmap.png", "grad_norms.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img alt="[a-z_]+" src="data:image/png;base64,', page)) == 3
    assert not re.search(r'(src|href)="(https?:|//|/)', page)  # nothing to fetch: self-contained
    assert page.count('<tr class="diverged"') == 2
    assert page.count('<tr class="best"') == 1


@pytest.mark.slow
def test_sweep_chosen_by_id_or_parent_run_id_and_by_uri(swept, tmp_path):
    parent = parent_of(swept)
    sweep_id = parent.data.tags["sweep.id"]
    for which in (sweep_id, parent.info.run_id):
        proc = compare(
            tmp_path, "--uri", swept.uri, "--sweep", which, "--experiment", "nnexp", "--out", "r"
        )
        assert proc.returncode == 0, proc.stderr
        assert f"sweep {sweep_id} (parent run {parent.info.run_id})" in proc.stdout
    proc = compare(tmp_path, "--uri", swept.uri, "--runs", "0,3", "--out", "r")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sweep", "nope"), "no sweep 'nope' in any experiment"),
        (("--experiment", "nope"), "no MLflow experiment 'nope'"),
        (("--runs", "99"), "--runs 99: no such run"),
    ],
)
def test_what_is_not_there_is_one_clear_error(swept, args, message):
    proc = compare(swept.workdir, *args, "--out", "unused")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_store_is_an_error_and_creates_none(tmp_path):
    proc = compare(tmp_path)
    assert proc.returncode == 2
    assert "no MLflow store at sqlite:///mlflow.db" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
