"""A run says where it went and carries MLflow's own metadata (issue 18): the last line names the
run, experiment, store, output directory and the command that opens it; nnexp's lines are in
Hydra's job log; MLflow's context tags, the dataset input and the parameter count; the user's
tags; params are the hyperparameters only; a sweep's parent carries the best job's values.
Through the real CLI against a sqlite store (conftest.Cli)."""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import cli_env

LINE = re.compile(
    r"^nnexp: run (?P<name>\S+) \((?P<id>[0-9a-f]{32})\) in experiment 'nnexp' of (?P<uri>\S+); "
    r"outputs in (?P<out>\S+); open: mlflow ui --backend-store-uri (?P<cmd_uri>\S+), then "
    r"http://127\.0\.0\.1:5000/#/experiments/(?P<eid>\d+)/runs/(?P<rid>[0-9a-f]{32})$"
)
SMALL = ("trainer.epochs=2", "dataset.n_samples=100")


def _git_project(path: Path) -> str:
    """`path` as a git repository with one commit and an uncommitted change; returns HEAD."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "notes.txt").write_text("v1")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)
    (path / "notes.txt").write_text("v2, not committed")
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def test_a_run_ends_with_one_line_that_says_where_it_went(cli, tmp_path):
    head = _git_project(tmp_path)
    proc = cli.ok(*SMALL, "+tags.team=x")
    last = proc.stdout.strip().splitlines()[-1]
    match = LINE.match(last)
    assert match, last
    (run,) = cli.runs()
    assert match["id"] == match["rid"] == run.info.run_id
    assert match["name"] == run.info.run_name and match["eid"] == run.info.experiment_id
    # The printed store is absolute: the command works from any directory.
    assert match["uri"] == match["cmd_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    elsewhere = subprocess.run(
        [sys.executable, "-c", f"from mlflow import MlflowClient; "
         f"print(MlflowClient({match['uri']!r}).get_run({run.info.run_id!r}).info.status)"],
        cwd=Path("/"), env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert elsewhere.stdout.strip() == "FINISHED", elsewhere.stderr
    assert match["out"] == "outputs/run" and (tmp_path / match["out"] / "checkpoints").is_dir()

    # The job log holds nnexp's lines; the terminal shows them without log decorations.
    log = (tmp_path / "outputs/run/cli.log").read_text()
    assert last in log and "nnexp: 2 epochs:" in log and "nnexp: doctor:" in log
    assert all(line.startswith("nnexp: ") for line in proc.stdout.splitlines()), proc.stdout

    # MLflow's context tags, as mlflow.start_run sets them: the runs table's User, Source,
    # Version; git is asked about the directory the run started in.
    tags = run.data.tags
    assert tags["mlflow.user"] == getpass.getuser()
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"].endswith(os.path.join("nnexp", "__main__.py"))
    assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.source.git.dirty"] == "true"
    assert "git.commit" not in tags  # the tag of nnexp's own it replaces
    assert tags["team"] == "x"  # +tags.team=x: the filter tags.team = "x" finds it

    # Params: the hyperparameters; bookkeeping stays in config.yaml.
    params = run.data.params
    assert params["optimizer.lr"] == "0.1" and params["trainer.epochs"] == "2"
    assert params["model.hidden"] == "[16]" and params["dataset.n_samples"] == "100"
    assert params["seed"] == params["trainer.seed"] == params["dataset.seed"] == "0"
    bookkeeping = ("tracking.", "tags", "trainer.progress", "trainer.resume", "trainer.log_every")
    assert not [k for k in params if k.startswith(bookkeeping)], sorted(params)
    assert run.data.metrics["model/n_params"] == 2 * 16 + 16 + 16 * 1 + 1

    # The dataset as MLflow inputs: one per split, with its source, digest, shapes and task.
    inputs = {i.tags[0].value: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "test"}
    train = inputs["training"]
    assert train.dataset.name == "moons" and len(train.dataset.digest) >= 8
    assert train.dataset.source_type == "code"
    assert json.loads(train.dataset.source)["tags"]["mlflow.source.name"] == (
        "sklearn.datasets.make_moons"
    )
    assert json.loads(train.dataset.profile)["features_shape"] == [60, 2]  # 60 % of 100 rows
    assert {t.key: t.value for t in train.tags} == {
        "mlflow.data.context": "training",
        "task": "binary",
    }
    assert inputs["training"].dataset.digest != inputs["test"].dataset.digest


def test_list_tags_a_file_dataset_and_an_untracked_run(cli, tmp_path):
    rows = ["x1,x2,label"] + [f"{i % 7},{i % 5},{'yes' if i % 2 else 'no'}" for i in range(40)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    file_args = ("dataset=file", "dataset.path=data.csv", "dataset.target=label")
    cli.ok("trainer.epochs=1", *file_args, "tags=[dev,baseline]")
    (run,) = cli.runs()
    assert run.data.tags["dev"] == run.data.tags["baseline"] == "true"
    (train,) = [i for i in run.inputs.dataset_inputs if i.tags[0].value == "training"]
    assert train.dataset.source_type == "local"  # the file itself, by its path
    assert json.loads(train.dataset.source)["uri"] == str(tmp_path / "data.csv")
    assert train.dataset.name == "file"

    off = cli.ok("trainer.epochs=1", "tracking.enabled=false")
    assert off.stdout.strip().splitlines()[-1] == (
        "nnexp: not tracked (tracking.enabled=false): nothing in MLflow; outputs in outputs/run"
    )
    assert len(cli.runs()) == 1


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("tags=dev", "tags='dev': must be a list of names (tags=[dev,baseline]) or a mapping"),
        ("+tags.mlflow.user=me", "tags='mlflow.user': nnexp or MLflow sets this tag itself"),
        ("tags=[task]", "tags='task': nnexp or MLflow sets this tag itself"),
        ("tags=['a#b']", "tags='a#b': names may only contain letters, digits"),
        ("tags={team: [a]}", "tags.team=['a']: must be a string, number or boolean"),
        ("tags.team=x", "Could not override 'tags.team': Key 'team' is not in struct; add a tag"),
    ],
)
def test_a_bad_tag_is_one_line_exit_2_before_anything_is_written(cli, tmp_path, tags, message):
    proc = cli(*SMALL, tags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
    assert message in line, line
    assert not (tmp_path / "mlflow.db").exists()  # no store, no run, no data loaded


def test_help_shows_nnexp_its_groups_and_a_line_per_key(cli, tmp_path):
    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "nnexp", *args], cwd=tmp_path, env=cli_env(),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    text = run("--help")
    assert text.startswith("nnexp: neural networks in NumPy")
    assert "powered by Hydra" not in text and "schema/" not in text
    groups = dict(re.findall(r"^  (\S+)=\S+\s+options: (.+)$", text, re.M))
    assert groups["model"] == "deep, shallow, sigmoid_deep, wide"
    assert {"dataset", "optimizer", "schedule", "regularization", "experiment"} <= set(groups)
    assert re.search(r"^  model=shallow\s+options:", text, re.M)  # the chosen option
    keys = dict(re.findall(r"^  ([a-z0-9_.]+)=(\S*)", text, re.M))
    config = yaml.safe_load(run("--cfg", "job"))
    assert set(keys) >= set(_dotted(config)), set(_dotted(config)) - set(keys)
    assert keys["optimizer.lr"] == "0.1" and keys["trainer.epochs"] == "100"
    assert re.search(r"^  trainer\.epochs=100\s+>= 1$", text, re.M)
    assert re.search(r"^  model\.activation=relu\s+one of: .*leaky_relu", text, re.M)
    # The keys are those of the composed config: an override shows its values.
    deep = run("--help", "model=deep", "optimizer=adam")
    assert "  model.hidden=[32,32,32,32,32]" in deep and "  optimizer.beta2=0.999" in deep


def _dotted(node, prefix: str = "") -> dict:
    if isinstance(node, dict) and node:
        out: dict = {}
        for key, value in node.items():
            out |= _dotted(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: node}


def test_a_sweep_parent_carries_the_best_values_and_says_where_it_went(cli, tmp_path):
    proc = cli.ok(
        "-m", *SMALL, "optimizer.lr=0.1,1e6", "model.init=he,bogus", "tags=[swept]",
        "hydra.sweep.dir=multirun/s",
    )  # fmt: skip
    runs = cli.runs()
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r is not parent]
    best = next(r for r in children if r.info.status == "FINISHED")
    # The swept keys' best values as params (columns beside the jobs'), the objective a metric.
    assert parent.data.params == {"optimizer.lr": "0.1", "model.init": "he"}
    assert parent.data.metrics["sweep/best_objective"] == best.data.metrics["val/loss"]
    assert parent.data.tags["swept"] == "true" and best.data.tags["swept"] == "true"
    assert parent.data.tags["mlflow.user"] == getpass.getuser()
    # The count line adds up to the jobs: 1 finished, 2 failed (bogus init), 1 diverged.
    assert "nnexp: sweep " in proc.stdout
    assert ": 4 jobs: 1 finished, 2 failed, 1 diverged; best val/loss=" in proc.stdout
    # Each job's compact line, and the sweep's own where-line last.
    for job in (r for r in children if r.info.status == "FINISHED"):
        name = job.data.tags["mlflow.runName"]
        assert f"nnexp: {name}: run {job.info.run_id}; outputs in multirun/s/" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"nnexp: sweep {parent.data.tags['sweep.id']}: parent run ")
    assert f"({parent.info.run_id}) in experiment 'nnexp' of sqlite:///{tmp_path}" in last
    assert last.endswith(f"/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}")


# --- in-process: the callbacks' order ------------------------------------------------------------


def _tracked(tmp_path: Path, **trainer):
    from conftest import small_config

    from nnexp import build as b
    from nnexp.config import TrackingConfig, TrainerConfig

    cfg = small_config(
        trainer=TrainerConfig(**({"epochs": 3, "batch_size": 16, "progress": False} | trainer)),
        tracking=TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
    )
    job = b.Job(tmp_path / "run", [], {}, tmp_path, "k")
    return b.build_trainer(cfg, b.build(cfg), job), job


def test_the_progress_bar_times_the_training_not_mlflows_start_up(tmp_path, monkeypatch, capsys):
    import time

    from nnexp.tracking import MlflowTracker

    start = MlflowTracker.on_fit_start

    def slow_start(self, trainer):
        time.sleep(1.5)  # importing MLflow and opening its store, on a slow day
        start(self, trainer)

    monkeypatch.setattr(MlflowTracker, "on_fit_start", slow_start)
    trainer, _ = _tracked(tmp_path, progress=True)
    trainer.fit()
    shown = capsys.readouterr().err
    # tqdm shows "N epoch/s", or "N s/epoch" when slower than one a second
    (elapsed, rate, unit) = re.findall(r"3/3 \[(\d\d:\d\d)<[^,]*,\s*([\d.]+)(\S+)\b", shown)[-1]
    assert elapsed == "00:00", shown  # three small epochs take milliseconds
    assert unit == "epoch/s" and float(rate) > 3 / 1.5, shown


def test_the_doctors_tag_goes_through_the_spool_when_the_store_is_away(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from nnexp.names import SPOOL_DIR, TAG_DOCTOR_FINDINGS
    from nnexp.tracking.offline import Spool

    def away_for_the_verdict(method):
        def call(self, *args, **kwargs):
            text = repr(args) + repr(kwargs)
            if TAG_DOCTOR_FINDINGS in text:
                raise ConnectionError("the tracking server went away")
            return method(self, *args, **kwargs)

        return call

    for name in ("log_batch", "set_tag"):
        monkeypatch.setattr(MlflowClient, name, away_for_the_verdict(getattr(MlflowClient, name)))
    trainer, job = _tracked(tmp_path)
    trainer.fit()
    tracker = next(c.inner for c in trainer.callbacks if hasattr(c, "inner"))
    monkeypatch.undo()  # the server is back
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and TAG_DOCTOR_FINDINGS not in run.data.tags
    spool = Spool(job.run_dir / SPOOL_DIR)
    ops = [json.loads(line) for line in spool.ops_file.read_text().splitlines()]
    (verdict,) = [op["tags"] for op in ops if op["op"] == "tags"]
    assert set(verdict) == {TAG_DOCTOR_FINDINGS, "doctor.failing"}  # one batch
    spool.upload(client)
    tags = client.get_run(tracker.run_id).data.tags
    assert tags[TAG_DOCTOR_FINDINGS] == verdict[TAG_DOCTOR_FINDINGS] != ""


def test_the_open_command_names_the_same_store_from_anywhere(tmp_path, monkeypatch):
    from nnexp.tracking.where import RunPlace, portable_uri

    monkeypatch.chdir(tmp_path)
    assert portable_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert portable_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert portable_uri("mlruns") == str(tmp_path / "mlruns")
    assert portable_uri("file:mlruns") == (tmp_path / "mlruns").as_uri()
    assert portable_uri("postgresql://u:pw@db/m") == "postgresql://u:***@db/m"
    place = RunPlace("r1", "name", "exp", "7", "http://tracking:5000/", Path("out"))
    assert place.open_command() == "http://tracking:5000/#/experiments/7/runs/r1"
    assert place.line() == (
        "run name (r1) in experiment 'exp' of http://tracking:5000/; outputs in out; "
        "open: http://tracking:5000/#/experiments/7/runs/r1"
    )
    spaced = RunPlace("r1", "n", "e", "1", "sqlite:///my runs/m.db", Path("o"))
    assert spaced.open_command().startswith(
        f"mlflow ui --backend-store-uri 'sqlite:///{tmp_path}/my runs/m.db', then "
    )  # quoted for the shell
