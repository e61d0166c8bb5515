"""`trainer.resume=last trainer.epochs=N` after a finished run of fewer epochs extends that
run — the same MLflow run, continued from its last checkpoint — and ends where an
uninterrupted N-epoch run ends, bit for bit; where that cannot hold it is refused."""

from __future__ import annotations

import numpy as np
import pytest

from nnexp.train import load_checkpoint

SMALL = (
    "dataset.n_samples=200",
    "trainer.stats=[]",
    "trainer.progress=false",
    "trainer.deterministic=true",
    "trainer.checkpoint_every=5",
)


def _params(path):
    state = load_checkpoint(path)
    return {k: v for k, v in state.items() if k.startswith(("param/", "optim/"))}


@pytest.mark.slow  # four real CLI runs
def test_resume_last_with_more_epochs_extends_the_finished_run_bit_for_bit(cli, tmp_path):
    cli.ok(*SMALL, "trainer.epochs=20")
    (run,) = cli.runs()
    proc = cli.ok(*SMALL, "trainer.epochs=30", "trainer.resume=last")
    assert f"extending {run.info.run_id} from epoch 20 to 30" in proc.stdout + proc.stderr
    (extended,) = cli.runs()  # the same run, not a new one
    assert extended.info.run_id == run.info.run_id and extended.info.status == "FINISHED"
    assert extended.data.metrics["epochs_run"] == 30
    client = cli.client()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(1, 31))
    assert "trainer.epochs: 20 -> 30" in extended.data.tags["nnexp.resume.changed_params"]
    # an uninterrupted 30-epoch run ends with the same weights and optimizer state
    whole = type(cli)(tmp_path / "whole")
    whole.workdir.mkdir()
    whole.ok(*SMALL, "trainer.epochs=30")
    a = _params(cli.workdir / "outputs/run/checkpoints/last.npz")
    b = _params(whole.workdir / "outputs/run/checkpoints/last.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert extended.data.metrics["val/loss"] == whole.runs()[0].data.metrics["val/loss"]
    # the same command again: that run is the job's now, and finished
    again = cli.ok(*SMALL, "trainer.epochs=30", "trainer.resume=last")
    assert "FINISHED: skipped" in again.stdout + again.stderr and len(cli.runs()) == 1


@pytest.mark.slow  # two real CLI runs
def test_extending_a_run_whose_schedule_spans_its_length_is_refused(cli):
    cli.ok(*SMALL, "schedule=cosine", "trainer.epochs=20")
    proc = cli(*SMALL, "schedule=cosine", "trainer.epochs=30", "trainer.resume=last")
    assert proc.returncode == 2, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    (line,) = [x for x in lines if x.startswith("nnexp: error:")]
    assert "Cosine schedule spans 20 epochs, this run's 30" in line
    assert "schedule.total=20" in line
