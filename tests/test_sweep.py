"""Sweeps end to end: the real CLI in a subprocess (`-m`), a real sqlite store (or a real
`mlflow server`), tiny data, 2 epochs. Each sweep is one parent run with every job nested under
it, tagged with the sweep id and its job; failing jobs fail alone; the report lands on the parent.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import yaml
from conftest import mlflow_server

TINY = ("trainer.epochs=2", "dataset.n_samples=200", "trainer.checkpoint_every=0")
GRID = ("model.init=xavier,he", "optimizer.lr=0.05,0.2")


def sweep_of(client, experiment: str = "nnexp"):
    """(parent, children) of the only sweep in `experiment`; every run there must be one."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r is not parent]
    assert all(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in children)
    return parent, sorted(children, key=lambda r: int(r.data.tags["sweep.job"]))


def same_value(param: str, override: str) -> bool:
    """A param as MLflow stores it (``0.05``) is the override's value (``0.05``, ``5e-2``)."""
    try:
        return float(param) == float(override)
    except ValueError:
        return param == override


def assert_grid_sweep(client, proc, values: dict[str, list[str]]) -> None:
    """One FINISHED parent, one FINISHED child per grid point with its params and tags, nothing
    lost or misfiled, and the parent's summary and report."""
    parent, children = sweep_of(client)
    combos = list(itertools.product(*values.values()))
    assert len(children) == len(combos)
    assert parent.info.status == "FINISHED"
    sweep_id = parent.data.tags["sweep.id"]
    seen = set()
    for job, run in enumerate(children):
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED", tags.get("error")
        assert tags["sweep.id"] == sweep_id
        assert tags["sweep.job"] == str(job)
        swept = json.loads(tags["sweep.params"])
        assert list(swept) == list(values)
        for key, value in swept.items():
            assert same_value(params[key], value)
            assert f"{key}={value}" in tags["overrides"].split()
        assert params["trainer.epochs"] == "2"
        assert {"val/loss", "val/acc", "grad_norm/dense_0/W/mean"} <= set(run.data.metrics)
        seen.add(tuple(swept.values()))
    assert seen == set(combos)
    # Nothing landed in MLflow's Default experiment (the race the callback prevents).
    assert client.search_runs(["0"]) == []

    best = min(children, key=lambda r: r.data.metrics["val/loss"])
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["sweep/best_objective"] == pytest.approx(
        best.data.metrics["val/loss"]
    )
    assert parent.data.metrics["sweep/jobs_finished"] == len(combos)
    assert parent.data.metrics["sweep/jobs_failed"] == 0
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/val_loss.png", "report/heatmap.png"} <= report
    # The table printed at the end lists every run.
    for run in children:
        assert run.info.run_name in proc.stdout
    assert f"sweep {sweep_id}" in proc.stdout


def test_grid_sweep_nests_every_job_under_one_parent(cli, tmp_path):
    proc = cli.ok("-m", *GRID, *TINY)
    assert_grid_sweep(
        cli.client(), proc, {"model.init": ["xavier", "he"], "optimizer.lr": ["0.05", "0.2"]}
    )
    (info,) = tmp_path.glob("multirun/*/*/nnexp_sweep.json")  # how jobs found their parent
    parent, _ = sweep_of(cli.client())
    assert json.loads(info.read_text())["parent_run_id"] == parent.info.run_id


@pytest.mark.slow
def test_joblib_sweep_from_an_empty_store_loses_no_run(cli, tmp_path):
    """Two worker processes, a store that does not exist yet: the callback creates the schema
    and the experiment before the workers start, so no job races on migrations or lands in
    Default."""
    assert not (tmp_path / "mlflow.db").exists()
    proc = cli.ok("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *GRID, *TINY)
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    assert_grid_sweep(
        cli.client(), proc, {"model.init": ["xavier", "he"], "optimizer.lr": ["0.05", "0.2"]}
    )


@pytest.mark.slow
def test_submitit_local_launcher(cli):
    proc = cli.ok("-m", "hydra/launcher=submitit_local", "model.init=xavier,he", *TINY)
    assert "Submitit 'local'" in proc.stdout + proc.stderr
    assert_grid_sweep(cli.client(), proc, {"model.init": ["xavier", "he"]})


@pytest.mark.slow
def test_a_diverging_job_fails_alone_and_the_sweep_goes_on(cli):
    proc = cli.ok("-m", "optimizer.lr=0.1,1e6", *TINY)
    parent, (good, bad) = sweep_of(cli.client())
    assert good.info.status == "FINISHED"
    assert bad.info.status == "FAILED"
    assert bad.data.tags["diverged"] == "true"
    assert "NonFiniteError" in bad.data.tags["error"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.best_run_id"] == good.info.run_id
    assert parent.data.metrics["sweep/jobs_finished"] == 1
    assert parent.data.metrics["sweep/jobs_failed"] == 1
    assert parent.data.metrics["sweep/jobs_diverged"] == 1
    # the sweep's table marks the job (its own last line says where it went)
    assert any("diverged" in line for line in proc.stdout.splitlines() if "lr=1e+06" in line)


@pytest.mark.slow
def test_optuna_study_logs_each_trial_as_a_nested_run(cli, tmp_path):
    proc = cli.ok("-m", "hparams_search=lr_init_optuna", "hydra.sweeper.n_trials=3", *TINY)
    parent, trials = sweep_of(cli.client())
    assert len(trials) == 3
    assert parent.info.status == "FINISHED"
    for run in trials:
        assert run.info.status == "FINISHED"
        params = json.loads(run.data.tags["sweep.params"])
        assert set(params) == {"optimizer.lr", "model.init", "model.hidden"}
        assert 1e-4 <= float(params["optimizer.lr"]) <= 1.0
        assert float(run.data.params["optimizer.lr"]) == float(params["optimizer.lr"])
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    best_value = yaml.safe_load(results.read_text())["best_value"]
    assert parent.data.metrics["sweep/best_objective"] == pytest.approx(best_value)
    assert "Best value" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_optuna_ranks_a_diverged_trial_by_the_sentinel(cli, tmp_path):
    """The grid sampler runs both values: the diverged trial returns 1e9 instead of raising,
    so Optuna completes the study (max_failure_rate is 0) and picks the other."""
    cli.ok(
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=choice(0.1,1e6)",
        *TINY,
    )
    parent, trials = sweep_of(cli.client())
    assert sorted(r.info.status for r in trials) == ["FAILED", "FINISHED"]
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(results.read_text())
    assert results["best_params"]["optimizer.lr"] == 0.1
    assert math.isfinite(results["best_value"]) and results["best_value"] < 1e9
    assert parent.data.metrics["sweep/jobs_diverged"] == 1


def test_an_invalid_swept_value_fails_its_job_only(cli):
    proc = cli.ok("-m", "model.init=bogus,he", "trainer.epochs=1", "dataset.n_samples=200")
    parent, (bad, good) = sweep_of(cli.client())
    assert bad.info.status == "FAILED"
    assert "model.init='bogus'" in bad.data.tags["error"]
    assert good.info.status == "FINISHED"
    assert parent.data.metrics["sweep/jobs_failed"] == 1
    assert "nnexp: error: model.init='bogus'" in proc.stderr


def test_a_shared_config_error_fails_before_any_job(cli, tmp_path):
    proc = cli("-m", "optimizer.lr=-1", "model.init=xavier,he", "trainer.epochs=1")
    assert proc.returncode == 2
    assert "optimizer.lr=-1.0: must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no parent, no job
    assert not list(tmp_path.glob("multirun/*/*/0"))


@pytest.mark.slow
def test_sweep_logs_to_a_real_mlflow_server(cli, tmp_path):
    """Jobs in two worker processes log over HTTP; artifacts (and the report) travel through
    the server into its --artifacts-destination."""
    artifacts = tmp_path / "server-artifacts"
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", artifacts) as url:
        cli.uri = url
        proc = cli.ok("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *GRID, *TINY)
        assert_grid_sweep(
            cli.client(), proc, {"model.init": ["xavier", "he"], "optimizer.lr": ["0.05", "0.2"]}
        )
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    assert list(artifacts.rglob("report.html"))
    assert len(list(artifacts.rglob("config.yaml"))) >= 4


def test_the_sweep_file_protocol(tmp_path):
    from nnexp.tracking.sweep import SweepInfo, job_params, read_sweep_file, write_sweep_file

    info = SweepInfo("s1", "p1", "nnexp", "1", "sqlite:///x.db", ["optimizer.lr", "model"])
    assert read_sweep_file(tmp_path) is None
    write_sweep_file(tmp_path / "sweep", info)
    assert read_sweep_file(tmp_path / "sweep") == info
    overrides = ["optimizer.lr=0.1", "model=deep", "trainer.epochs=2", "+extra=1"]
    assert job_params(overrides, info.swept) == {"optimizer.lr": "0.1", "model": "deep"}


@pytest.mark.parametrize(
    ("value", "shown"), [("0.1", "0.1"), ("0.00012046852412030328", "0.0001205"), ("he", "he")]
)
def test_short_value(value, shown):
    from nnexp.names import short_value

    assert short_value(value) == shown


def test_swept_keys_reads_sweep_overrides_and_sweeper_params():
    from omegaconf import OmegaConf

    from nnexp.tracking.sweep import swept_keys

    config = OmegaConf.create(
        {
            "hydra": {
                "overrides": {"task": ["model.init=he,xavier", "trainer.epochs=2", "model=a,b"]},
                "sweeper": {"params": {"optimizer.lr": "tag(log, interval(1e-4, 1))"}},
            }
        }
    )
    assert swept_keys(config) == ["model.init", "model", "optimizer.lr"]


def test_an_appended_group_in_sweeper_params_is_found_in_each_job():
    """`+experiment/init_sweep: a,b` (arms of experiments/) is the job override
    `+experiment/init_sweep=a`: the key without its prefix, and a short run name."""
    from omegaconf import OmegaConf

    from nnexp.tracking.sweep import SweepInfo, SweepJob, job_params, swept_keys

    config = OmegaConf.create(
        {
            "hydra": {
                "overrides": {"task": ["experiment=init_sweep"]},
                "sweeper": {"params": {"+experiment/init_sweep": "he,xavier", "model.x": "1,2"}},
            }
        }
    )
    swept = swept_keys(config)
    assert swept == ["experiment/init_sweep", "model.x"]
    params = job_params(["+experiment/init_sweep=he", "model.x=2", "experiment=init_sweep"], swept)
    assert params == {"experiment/init_sweep": "he", "model.x": "2"}
    info = SweepInfo("id", "parent", "exp", "0", "sqlite://", swept)
    assert SweepJob(info, 3, params).run_name == "#03 init_sweep=he x=2"


@pytest.mark.slow
def test_an_interrupted_sweep_ends_its_parent_failed(cli, tmp_path):
    """Ctrl-C mid-job stops Hydra before on_multirun_end: the parent must not stay RUNNING."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import cli_env

    args = [sys.executable, "-m", "nnexp", "-m", "optimizer.lr=0.05,0.1", "trainer.epochs=5000"]
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen(
            [*args, "dataset.n_samples=2000", f"tracking.uri={cli.uri}"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob("multirun/*/*/0/checkpoints/last.npz")):  # job 0 trains
            assert proc.poll() is None, (tmp_path / "out").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    parent, (job,) = sweep_of(cli.client())
    assert job.info.status == "KILLED"
    assert parent.info.status == "FAILED"
    assert "stopped before all jobs returned" in parent.data.tags["error"]
    assert parent.data.metrics["sweep/jobs_total"] == 1


@pytest.mark.slow
def test_warmed_joblib_workers_are_the_ones_the_launcher_then_uses():
    """`nnexp.hydra_callbacks.WarmJoblibWorkers` only pays off if joblib reuses its executor
    for the launcher's own `Parallel` call: with the settings Hydra composes for
    hydra/launcher=joblib, the jobs run in the processes that did the warm-up."""
    import os

    from hydra import compose, initialize_config_module
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    from nnexp.config import register_configs
    from nnexp.hydra_callbacks import _warm, joblib_settings

    register_configs()
    with initialize_config_module("nnexp.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            return_hydra_config=True,
        )
    try:
        warmed = set(_warm(joblib_settings(cfg.hydra.launcher)))
        assert len(warmed) >= 1 and os.getpid() not in warmed
        # What Hydra's launcher does with the same config (hydra_joblib_launcher._core.launch).
        jobs = Parallel(**joblib_settings(cfg.hydra.launcher))(
            delayed(os.getpid)() for _ in range(6)
        )
        assert set(jobs) <= warmed, (jobs, warmed)
    finally:
        get_reusable_executor().shutdown(wait=True, kill_workers=True)
