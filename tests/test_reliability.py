"""The exit-code contract, from the outside (issue 17): every user error — a bad command line
(Hydra's own errors included), data, a checkpoint, a resume target, the file system — is exit 2
with one `nnexp: error:` line; a tracking store that cannot be used is exit 4 within seconds;
single runs started together on a new sqlite store all finish. And the checkpoint format's
refusals: a wrong RNG state, bytes that are not an archive, other layers, a resume past the
configured epochs, files that honour the umask."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env

from nnexp.data import Splits
from nnexp.nn import Adam, SigmoidBCE, mlp
from nnexp.nn.schedules import Constant
from nnexp.train import (
    CheckpointError,
    Trainer,
    TrainSettings,
    load_checkpoint,
    restore,
    save_checkpoint,
    trainer_state,
)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
    return line


def _nnexp(workdir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """`python -m nnexp ARGS` in `workdir`, as they are (the `cli` fixture adds its store and
    run directory after them)."""
    return subprocess.run(
        [sys.executable, "-m", "nnexp", "hydra.run.dir=outputs/run", *args], cwd=workdir,
        env=cli_env(), capture_output=True, text=True, timeout=120, **kwargs,
    )  # fmt: skip


# --- a bad command line: exit 2, one line naming the key ----------------------------------------

COMMAND_LINES = [
    (["model=nosuch"], "model/nosuch", "deep, shallow"),
    (["optimizer.lr=["], "optimizer.lr=[", "cannot parse"),
    (["trainer.epochs=abc"], "trainer.epochs=abc", "Integer"),
    (["model.hidden=[16,abc]"], "model.hidden", "Integer"),
    (["optimizer.beta2=0.9"], "optimizer.beta2", "SGDConfig has: lr, momentum"),
    (["nonexistent.key=1"], "nonexistent", "Config has:"),
    (["+foo=bar"], "foo='bar': unknown key", "the config has: dataset"),
    (["+model.nosuch=1"], "model.nosuch=1: unknown key", "model has: activation"),
    (["++trainer.nosuch=3"], "trainer.nosuch=3: unknown key", "trainer has:"),
    (["trainer.deterministic=2"], "trainer.deterministic=2", "must be true or false"),
    (["regularization.restore_best=yes"], "regularization.restore_best", "true or false"),
    (["optimizer=adam", "optimizer.eps=inf"], "optimizer.eps=inf", "finite"),
    (["schedule=plateau", "schedule.min_lr=-1"], "schedule.min_lr=-1.0", ">= 0"),
    (["trainer.objective=val/nosuch"], "trainer.objective='val/nosuch'", "objective_mode"),
    (["=3"], "=3", ""),
]


@pytest.mark.parametrize(
    ("overrides", "names", "says"), COMMAND_LINES, ids=[" ".join(c[0]) for c in COMMAND_LINES]
)
def test_a_bad_command_line_is_exit_2_in_one_line(cli, overrides, names, says):
    proc = cli(*overrides, "trainer.epochs=1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc)
    assert names in line and says in line, line
    assert "HYDRA_FULL_ERROR" not in proc.stderr
    assert not cli.runs()  # refused before any run was created


def test_hydra_full_error_still_gives_the_full_trace(cli):
    os.environ["HYDRA_FULL_ERROR"] = "1"  # (cli_env copies the environment)
    try:
        proc = _nnexp(cli.workdir, "model=nosuch")
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
    assert proc.returncode == 1 and "Traceback" in proc.stderr


# --- a tracking store that cannot be used: exit 4 within seconds --------------------------------


@contextlib.contextmanager
def _read_only_dir(tmp_path: Path):
    """A directory this process cannot write to (root ignores permissions: a read-only tmpfs)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def _store_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "notes.db").write_text("not a database\n")
    (tmp_path / "adir.db").mkdir()
    return {
        "missing directory": (f"sqlite:///{tmp_path}/nope/m.db", "does not exist"),
        "not a database": (f"sqlite:///{tmp_path}/notes.db", "not a sqlite database"),
        "a directory": (f"sqlite:///{tmp_path}/adir.db", "is not a file"),
        "unknown scheme": ("bogus://x", "unknown scheme 'bogus'"),
        "ftp": ("ftp://host/x", "unknown scheme 'ftp'"),
    }


def test_an_unusable_store_is_exit_4_within_seconds(cli, tmp_path):
    cases = _store_cases(tmp_path)
    with _read_only_dir(tmp_path) as ro:
        cases["read-only directory"] = (f"sqlite:///{ro}/m.db", "is not writable")
        for name, (uri, says) in cases.items():
            start = time.monotonic()
            proc = _nnexp(tmp_path, "trainer.epochs=1", f"tracking.uri={uri}")
            took = time.monotonic() - start
            assert proc.returncode == 4, (name, proc.stderr)
            line = _one_error_line(proc)
            assert uri in line and says in line, (name, line)
            assert took < 10, (name, took)
    assert not (tmp_path / "outputs/run/checkpoints").exists()  # nothing trained


@pytest.mark.slow
def test_single_runs_started_together_on_a_new_store_all_finish(tmp_path):
    """8 runs at once on a new sqlite file, 5 times: without the lock they raced on the schema
    migrations (`table _alembic_tmp_... already exists`) and left the store unusable."""
    from mlflow import MlflowClient

    env = cli_env()  # one BLAS thread per child
    for trial in range(5):
        work = tmp_path / f"trial{trial}"
        work.mkdir()
        uri = f"sqlite:///{work}/mlflow.db"
        args = [sys.executable, "-m", "nnexp", "trainer.epochs=3", f"tracking.uri={uri}"]
        procs = [
            subprocess.Popen(
                [*args, f"trainer.seed={i}", f"hydra.run.dir=run{i}"],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, (trial, errors)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("nnexp")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 8, trial
        client.create_experiment(f"still-usable-{trial}")  # the store still works


# --- the file system --------------------------------------------------------------------------


def _csv(path: Path, rows: int = 40) -> Path:
    rng = np.random.default_rng(0)
    lines = [f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in rng.normal(size=(rows, 2))]
    path.write_text("a,b,label\n" + "\n".join(lines) + "\n")
    return path


def test_a_fifo_or_a_tiny_file_as_dataset_path_is_refused(cli, tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    _csv(tmp_path / "nine.csv", rows=9)
    for name, says in [("pipe.csv", "not a regular file"), ("nine.csv", "at least 10")]:
        proc = cli("dataset=file", f"dataset.path={name}", "dataset.target=label", timeout=60)
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc)
        assert f"dataset.path='{tmp_path / name}'" in line and says in line, line


def test_an_unreadable_data_file_is_exit_2(tmp_path, monkeypatch):
    """Through the CLI as a user without permission; root reads anything, so as root the
    file system's refusal is simulated in-process."""
    _csv(tmp_path / "secret.csv").chmod(0o000)
    if os.geteuid() != 0:
        args = ["dataset=file", "dataset.path=secret.csv", "dataset.target=label"]
        proc = _nnexp(tmp_path, *args, "tracking.enabled=false")
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc)
    else:
        from nnexp.cli import EXIT_CODES
        from nnexp.data import DatasetError, FileSpec, validate_spec

        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self.name == "secret.csv":
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
        with pytest.raises(DatasetError) as err:
            validate_spec(FileSpec(path=str(tmp_path / "secret.csv"), target="label"))
        assert EXIT_CODES[DatasetError] == 2
        line = str(err.value)
    assert "dataset.path=" in line and "cannot be read (Permission denied)" in line, line


def test_an_output_directory_that_cannot_be_created_is_exit_2(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = _nnexp(tmp_path, "trainer.epochs=1", "tracking.enabled=false", "hydra.run.dir=afile/r")
    assert proc.returncode == 2, proc.stderr
    assert "afile" in _one_error_line(proc)


def test_a_full_disk_is_exit_2_and_keeps_what_was_recorded(tmp_path):
    """A 4 MB file system for the run's directory (a tmpfs: needs root); the store is beside."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        proc = _nnexp(
            tmp_path, "hydra.run.dir=disk/run", "model.hidden=[256,256]", "optimizer=adam",
            "trainer.epochs=40", "trainer.checkpoint_every=1", "trainer.checkpoint_every_s=0",
            "trainer.checkpoint_keep=0",  # every epoch file stays: the disk fills up
            f"tracking.uri={uri}",
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc)
        assert "No space left on device" in line and str(disk) in line, line
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("nnexp").experiment_id])
        assert run.info.status == "FAILED" and "No space left" in run.data.tags["error"]
        last = disk / "run/checkpoints/last.npz"
        assert int(load_checkpoint(last)["epoch"]) >= 1  # the last good one, whole
        assert run.data.metrics["train/loss"] > 0  # the epochs recorded before stay
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- checkpoints --------------------------------------------------------------------------------


def _trainer(activation: str = "relu", epochs: int = 2, hidden=(8,)) -> Trainer:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    data = Splits(X[:50], y[:50], X[50:65], y[50:65], X[65:], y[65:], task="binary")
    model = mlp(3, list(hidden), 1, activation=activation, dropout=0.1, seed=1)
    opt = Adam(list(model.parameters()), lr=0.01)
    settings = TrainSettings(epochs=epochs, batch_size=16, seed=2, stats=())
    return Trainer(model, SigmoidBCE(), opt, Constant(0.01), data, settings)


def _saved(tmp_path: Path, **kwargs) -> Path:
    trainer = _trainer(**kwargs)
    trainer.fit()
    return save_checkpoint(tmp_path / "last.npz", trainer_state(trainer))


def test_another_activation_is_refused_naming_it(tmp_path):
    path = _saved(tmp_path, activation="tanh")
    with pytest.raises(CheckpointError, match="module 1 is tanh in the checkpoint, relu in this"):
        restore(_trainer("relu"), load_checkpoint(path), f"checkpoint {path}")
    restore(_trainer("tanh"), load_checkpoint(path))  # the same one loads


def test_a_checkpoint_without_its_metadata_still_loads(tmp_path):
    """Written before ``meta`` existed: checked by its arrays alone, as then."""
    state = dict(load_checkpoint(_saved(tmp_path)))
    del state["meta"]
    trainer = _trainer()
    restore(trainer, state)
    assert trainer.epoch == 2


def test_a_wrong_rng_state_is_a_clear_error_and_changes_nothing(tmp_path):
    state = dict(load_checkpoint(_saved(tmp_path)))
    mt = np.random.MT19937(0).state
    mt["state"]["key"] = mt["state"]["key"].tolist()
    for bad in [mt, {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}]:
        state["rng"] = np.array(json.dumps(bad))
        trainer = _trainer()
        before = trainer.rng.bit_generator.state
        with pytest.raises(CheckpointError, match=r"ckpt: rng is not a PCG64 state \("):
            restore(trainer, state, "ckpt")
        assert trainer.rng.bit_generator.state == before and trainer.epoch == 0


def test_random_bytes_are_not_a_checkpoint_and_not_a_pickle(tmp_path):
    path = tmp_path / "last.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096).replace(b"\x80", b"\x81"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert f"checkpoint {path}: not an nnexp checkpoint" in str(err.value)
    assert "pickle" not in str(err.value)


def test_resuming_past_the_configured_epochs_says_so(tmp_path):
    path = _saved(tmp_path, epochs=3)
    with pytest.raises(CheckpointError, match=r"is at epoch 3, past trainer\.epochs=2: nothing"):
        restore(_trainer(epochs=2), load_checkpoint(path), "ckpt")
    restore(_trainer(epochs=3), load_checkpoint(path), "ckpt")  # equal: nothing left, no error


def test_resuming_past_the_configured_epochs_through_the_cli_is_exit_2(cli, tmp_path):
    cli.ok("trainer.epochs=3", "tracking.enabled=false")
    proc = cli("trainer.epochs=2", "tracking.enabled=false", "trainer.resume=outputs/run")
    assert proc.returncode == 2, proc.stderr
    assert "is at epoch 3, past trainer.epochs=2" in _one_error_line(proc)


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_checkpoints_honour_the_umask(tmp_path, umask, mode):
    path = tmp_path / "last.npz"
    code = (
        "import sys, numpy as np; from nnexp.train import save_checkpoint; "
        "save_checkpoint(sys.argv[1], {'epoch': np.asarray(1)})"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path)], check=True, env=cli_env(),
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert path.stat().st_mode & 0o777 == mode
