"""Resume and determinism, through the real CLI and a real sqlite MLflow store.

- A run killed with SIGKILL mid-epoch and resumed with ``trainer.resume=last`` ends with the
  weights, optimizer state and metrics of the uninterrupted run, bit for bit, in the same MLflow
  run, whose metric history has every epoch once; launched again, it is skipped.
- ``trainer.resume=runs:/RUN_ID`` continues a run interrupted with Ctrl-C, from the uploaded
  checkpoint when the local one is gone; a path continues a run too.
- Same config and seed → identical weights and metrics, run to run, and in a sweep whatever
  the launcher and the job order. A re-launched sweep skips its FINISHED jobs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import Cli, cli_env

from nnexp.train import load_checkpoint

# Dropout (its RNG), Adam (its moments and step count), a plateau schedule (its state) and
# shuffling: everything a resume must restore. ~0.3 s an epoch: slow enough to kill mid-epoch.
LONG = (
    "dataset.n_samples=4000",
    "model.hidden=[64,64]",
    "regularization=dropout",
    "optimizer=adam",
    "schedule=plateau",
    "schedule.patience=1",
    "trainer.epochs=14",
    "trainer.batch_size=16",
    "trainer.checkpoint_every=5",
)
# A checkpoint every epoch: the kill lands just after one, whatever the speed of the machine
# (at the default of one every second, a fast machine may be past its last epoch by then); and
# 40 epochs, so that a test process starved for seconds on a loaded machine (seen at a load of
# 10 on 2 cores: the run had finished its 14 epochs when the kill came) still kills mid-run.
KILLABLE = (*LONG, "trainer.checkpoint_every_s=0", "trainer.epochs=40")
COMPARED = ("param/", "buffer/", "optim/", "schedule/", "rng", "dropout_rng/", "epoch")


def _start(cli: Cli, *overrides: str, run_dir: str = "outputs/run") -> subprocess.Popen:
    args = [sys.executable, "-m", "nnexp", *overrides, f"tracking.uri={cli.uri}"]
    args.append(f"hydra.run.dir={run_dir}")
    return subprocess.Popen(
        args,
        cwd=cli.workdir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """Ctrl-C reaches the run as it would in a terminal, even when the tests themselves run
    with SIGINT ignored (a shell's background job, `nohup`): Python keeps an inherited
    SIG_IGN, and the run would then never see the test's SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _epoch_of(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["epoch"])
    except Exception:  # not written yet
        return 0


def _kill_mid_epoch(proc: subprocess.Popen, last: Path, after_epoch: int) -> int:
    """SIGKILL `proc` a fraction of an epoch after its checkpoint reaches `after_epoch`."""
    deadline = time.monotonic() + 240
    while _epoch_of(last) < after_epoch:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    time.sleep(0.12)  # into the next epoch (~0.3 s), not at its end
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return _epoch_of(last)


def _same_state(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    keys = [k for k in sa if k.startswith(COMPARED)]
    assert keys and keys == [k for k in sb if k.startswith(COMPARED)]
    for key in keys:
        assert sa[key].dtype == sb[key].dtype and np.array_equal(sa[key], sb[key]), key


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_sigkill_mid_epoch_then_resume_last_is_bit_for_bit_the_uninterrupted_run(tmp_path):
    whole, killed = Cli(tmp_path / "whole"), Cli(tmp_path / "killed")
    for c in (whole, killed):
        c.workdir.mkdir()
    reference = _start(whole, *KILLABLE)  # runs alongside the one that gets killed

    proc = _start(killed, *KILLABLE)
    last = killed.workdir / "outputs/run/checkpoints/last.npz"
    epoch = _kill_mid_epoch(proc, last, after_epoch=3)
    assert 3 <= epoch < 40
    (run,) = killed.runs()
    assert run.info.status == "RUNNING"  # SIGKILL: nobody could end it

    # Resume from a different Hydra directory: the run continues where its checkpoints are.
    resumed = _start(killed, *KILLABLE, "trainer.resume=last", run_dir="outputs/resumed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert f"resuming {run.info.run_id}" in out.decode()  # a note: INFO, on stdout
    _, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref.decode()

    _same_state(whole.workdir / "outputs/run/checkpoints/last.npz", last)
    (done,) = killed.runs()  # the same run, reopened: no second run
    assert done.info.run_id == run.info.run_id and done.info.status == "FINISHED"
    assert done.data.tags["nnexp.resumed_from_epoch"] == str(epoch)
    (ref_run,) = whole.runs()
    for key in ("train/loss", "val/loss", "val/acc", "lr", "grad_norm/global/mean"):
        expected = _history(whole.client(), ref_run.info.run_id, key)
        assert _history(killed.client(), run.info.run_id, key) == expected, key
        assert [s for s, _ in expected] == list(range(1, 41))  # every epoch once
    for key in ("test/acc", "test/loss", "val/loss"):
        assert done.data.metrics[key] == ref_run.data.metrics[key]
    assert done.data.tags["model_uri"]

    # Launched again: the run of this job is FINISHED, nothing to do.
    again = killed.ok(*KILLABLE, "trainer.resume=last")
    assert "skipped" in again.stdout
    assert [r.info.run_id for r in killed.runs()] == [run.info.run_id]


def test_resume_from_an_mlflow_run_and_from_a_path(cli, tmp_path):
    import shutil

    # Many epochs and a checkpoint every epoch: Ctrl-C lands early in training, whatever the
    # speed of the machine.
    short = (*LONG[:-2], "trainer.epochs=400", "trainer.checkpoint_every_s=0")
    proc = _start(cli, *short)
    last = tmp_path / "outputs/run/checkpoints/last.npz"
    deadline = time.monotonic() + 240
    while _epoch_of(last) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the run ends KILLED, checkpoints uploaded
    proc.communicate(timeout=120)
    (run,) = cli.runs()
    assert run.info.status == "KILLED"
    epoch = _epoch_of(last)
    # The local checkpoints are gone (another machine): the uploaded last.npz is used.
    shutil.rmtree(tmp_path / "outputs/run")
    proc = cli.ok(
        *short,
        "trainer.epochs=3" if epoch < 3 else f"trainer.epochs={epoch + 1}",
        f"trainer.resume=runs:/{run.info.run_id}",
    )
    assert "from its artifact checkpoints/last.npz" in proc.stdout
    (done,) = cli.runs()
    assert done.info.status == "FINISHED" and done.info.run_id == run.info.run_id
    steps = [m.step for m in cli.client().get_metric_history(run.info.run_id, "val/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == max(3, epoch + 1)
    assert "trainer.epochs: 400 ->" in done.data.tags["nnexp.resume.changed_params"]

    # A path: the new Hydra dir's checkpoints continue the run recorded next to them.
    path = tmp_path / "outputs/run/checkpoints/last.npz"
    assert _epoch_of(path) == max(3, epoch + 1)
    cli.ok(*short, f"trainer.epochs={max(3, epoch + 1) + 1}", f"trainer.resume={path}")
    (done,) = cli.runs()
    assert done.info.status == "FINISHED"
    assert (
        cli.client().get_metric_history(run.info.run_id, "val/loss")[-1].step
        == max(3, epoch + 1) + 1
    )


def test_resume_errors_are_one_clear_line(cli, tmp_path):
    cases = [
        (["trainer.resume=nope.npz"], "trainer.resume=", "no such checkpoint"),
        (["trainer.resume=last", "tracking.enabled=false"], "trainer.resume=last", "needs MLflow"),
        (["trainer.resume=runs:/0123456789abcdef"], "runs:/0123456789abcdef", "no such MLflow run"),
    ]
    for overrides, *needles in cases:
        proc = cli(*overrides)
        assert proc.returncode == 2, proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
        assert all(n in line for n in needles), line
        assert "Traceback" not in proc.stderr


# --- determinism ---------------------------------------------------------------------------


def test_same_config_and_seed_give_identical_weights_and_metrics(cli, tmp_path):
    config = ("regularization=dropout", "optimizer=adam", "trainer.epochs=5", "model=deep")
    for run_dir in ("outputs/a", "outputs/b"):
        proc = _start(cli, *config, "tracking.enabled=false", run_dir=run_dir)
        assert proc.wait(timeout=300) == 0
    _same_state(
        tmp_path / "outputs/a/checkpoints/last.npz", tmp_path / "outputs/b/checkpoints/last.npz"
    )

    def history(d: str) -> list[dict]:
        rows = [json.loads(x) for x in (tmp_path / d / "checkpoints/history.jsonl").open()]
        return [{k: v for k, v in r["metrics"].items() if not k.startswith("time/")} for r in rows]

    assert history("outputs/a") == history("outputs/b") and len(history("outputs/a")) == 5


def _sweep_states(cli: Cli, sweep_dir: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for job in sorted((cli.workdir / sweep_dir).iterdir()):
        if (job / ".hydra/overrides.yaml").is_file():
            lr = next(
                o
                for o in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
                if o.startswith("optimizer.lr=")
            )
            out[lr] = load_checkpoint(job / "checkpoints/last.npz")
    return out


@pytest.mark.slow
def test_a_sweep_is_deterministic_whatever_the_launcher_and_job_order(cli):
    config = ("regularization=dropout", "trainer.epochs=3", "tracking.enabled=false")
    cli.ok("-m", "optimizer.lr=0.05,0.1,0.2,0.4", *config, "hydra.sweep.dir=basic")
    cli.ok(
        "-m",
        "optimizer.lr=0.4,0.2,0.1,0.05",
        *config,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=joblib",
    )
    basic, joblib = _sweep_states(cli, "basic"), _sweep_states(cli, "joblib")
    assert len(basic) == 4 and basic.keys() == joblib.keys()
    for lr, state in basic.items():
        for key, value in state.items():
            if key.startswith(COMPARED):
                assert np.array_equal(value, joblib[lr][key]), (lr, key)


@pytest.mark.slow
def test_a_relaunched_sweep_skips_finished_jobs_and_resumes_the_killed_one(cli, tmp_path):
    common = (
        "dataset.n_samples=4000",
        "regularization=dropout",
        "trainer.epochs=12",
        "trainer.batch_size=16",
    )
    cli.ok("-m", "optimizer.lr=0.05,0.1", *common)
    # Job runs only: the sweep's parent run (nnexp.tracking.sweep) has no resume key.
    first = {r.info.run_id: r for r in cli.runs() if "nnexp.resume_key" in r.data.tags}
    assert len(first) == 2
    # The third job of the sweep ran alone and was killed.
    proc = _start(cli, "optimizer.lr=0.2", *common, run_dir="outputs/third")
    _kill_mid_epoch(proc, tmp_path / "outputs/third/checkpoints/last.npz", after_epoch=2)

    cli.ok("-m", "optimizer.lr=0.05,0.1,0.2", *common, "trainer.resume=last")
    runs = {r.info.run_id: r for r in cli.runs() if "nnexp.resume_key" in r.data.tags}
    assert len(runs) == 3  # no new run: two skipped, one resumed
    for run_id, run in first.items():
        assert runs[run_id].info.end_time == run.info.end_time  # untouched
    (third,) = [r for i, r in runs.items() if i not in first]
    assert third.info.status == "FINISHED"
    steps = [m.step for m in cli.client().get_metric_history(third.info.run_id, "val/loss")]
    assert steps == list(range(1, 13))
