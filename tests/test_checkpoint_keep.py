"""`trainer.checkpoint_keep`: a long run leaves a bounded number of checkpoint files, on disk
and in the MLflow store, and a resumed run still finds (and continues from) the newest."""

from __future__ import annotations

import pytest

from nnexp.train import load_checkpoint
from nnexp.train.checkpointer import stale_epoch_checkpoints

# One step per epoch on 60 rows, no statistics, metrics every 100 epochs: 3000 epochs in seconds.
FAST_EPOCHS = (
    "dataset.n_samples=100",
    "trainer.batch_size=1000",
    "trainer.stats=[]",
    "trainer.progress=false",
)


def _npz(names):
    return sorted(n.rpartition("/")[2] for n in names if n.endswith(".npz"))


def test_stale_epoch_files_are_all_but_the_newest_k_minus_1():
    names = ["epoch_0010.npz", "last.npz", "epoch_0030.npz", "best.npz", "epoch_0020.npz"]
    assert stale_epoch_checkpoints(names, 3) == ["epoch_0010.npz"]
    assert stale_epoch_checkpoints(names, 2) == ["epoch_0010.npz", "epoch_0020.npz"]
    assert stale_epoch_checkpoints(names, 1) == [
        "epoch_0010.npz",
        "epoch_0020.npz",
        "epoch_0030.npz",
    ]
    assert stale_epoch_checkpoints(names, 4) == []
    assert stale_epoch_checkpoints(names, None) == []
    # artifact paths too; a run resumed at epoch 20 leaves its first attempt's epoch 30 alone
    paths = [f"checkpoints/{n}" for n in names]
    assert stale_epoch_checkpoints(paths, 2, upto=20) == ["checkpoints/epoch_0010.npz"]


@pytest.mark.slow  # a 3000-epoch run through the real CLI: ~15 s on the shared 2 cores
def test_a_3000_epoch_run_keeps_k_plus_1_checkpoints_locally_and_in_the_store(cli):
    cli.ok(*FAST_EPOCHS, "trainer.epochs=3000", "trainer.log_every=100")
    local = cli.workdir / "outputs/run/checkpoints"
    # the default K = 3: last, the two newest epoch files (every 10 epochs), best
    expected = ["best.npz", "epoch_2990.npz", "epoch_3000.npz", "last.npz"]
    assert _npz(p.name for p in local.iterdir()) == expected
    (run,) = cli.runs()
    uploaded = cli.client().list_artifacts(run.info.run_id, "checkpoints")
    assert _npz(a.path for a in uploaded) == expected
    assert int(load_checkpoint(local / "last.npz")["epoch"]) == 3000


@pytest.mark.slow  # two real CLI runs
def test_a_resumed_run_prunes_what_it_had_uploaded_and_resumes_from_the_newest(cli):
    common = (*FAST_EPOCHS, "trainer.checkpoint_every=5", "trainer.checkpoint_keep=2")
    cli.ok(*common, "trainer.epochs=30")
    (run,) = cli.runs()
    client = cli.client()
    listed = lambda: _npz(a.path for a in client.list_artifacts(run.info.run_id, "checkpoints"))  # noqa: E731
    assert listed() == ["best.npz", "epoch_0030.npz", "last.npz"]
    # Continue the same run (its directory records it) to epoch 42: epoch 30's file, uploaded
    # by the first process, goes from the store as it does from the disk.
    proc = cli.ok(*common, "trainer.epochs=42", "trainer.resume=outputs/run/checkpoints")
    assert "resuming from" in proc.stdout + proc.stderr  # (nnexp's lines go through logging)
    (again,) = cli.runs()
    assert again.info.run_id == run.info.run_id
    assert listed() == ["best.npz", "epoch_0040.npz", "last.npz"]
    local = cli.workdir / "outputs/run/checkpoints"
    assert _npz(p.name for p in local.iterdir()) == ["best.npz", "epoch_0040.npz", "last.npz"]
    assert int(load_checkpoint(local / "last.npz")["epoch"]) == 42
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(1, 43))
