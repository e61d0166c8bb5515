"""Checkpoints: atomic writes, refusal of truncated, corrupted, pickled and mismatched files
(each error naming the file and the mismatch), and an exact round trip of the training state
(weights, Adam, plateau schedule, dropout and shuffling RNGs, batch norm, early stopping)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import SGD, Adam, SigmoidBCE, mlp
from nnexp.nn.schedules import Constant, ReduceOnPlateau
from nnexp.train import (
    Callback,
    Checkpointer,
    CheckpointError,
    EarlyStopping,
    Trainer,
    TrainSettings,
    load_checkpoint,
    load_history,
    restore,
    save_checkpoint,
    trainer_state,
)
from nnexp.train import checkpoint as ckpt_module


def _data(seed: int = 0, n: int = 200) -> Splits:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    return Splits(X[:120], y[:120], X[120:160], y[120:160], X[160:], y[160:], task="binary")


def _trainer(
    tmp_path: Path,
    *,
    hidden=(8,),
    dtype="float32",
    optimizer="adam",
    epochs: int = 6,
    patience: int = 100,
) -> Trainer:
    model = mlp(3, list(hidden), 1, dropout=0.2, batch_norm=True, dtype=dtype, seed=3)
    params = list(model.parameters())
    opt = Adam(params, lr=0.01) if optimizer == "adam" else SGD(params, lr=0.1)
    schedule = ReduceOnPlateau(0.01, patience=1) if optimizer == "adam" else Constant(0.1)
    settings = TrainSettings(epochs=epochs, batch_size=16, seed=5)
    callbacks = [EarlyStopping(patience=patience), Checkpointer(tmp_path, every=2)]
    return Trainer(model, SigmoidBCE(), opt, schedule, _data(), settings, callbacks)


def _state_of(tmp_path: Path, **kwargs) -> dict[str, np.ndarray]:
    trainer = _trainer(tmp_path, epochs=2, **kwargs)
    trainer.fit()
    return trainer_state(trainer)


class _Killed(Exception):
    pass


class _KillAfter(Callback):
    """Dies at the end of epoch `n`, after the checkpoint is written (a SIGKILL in-process)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.n:
            raise _Killed


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("patience", [2, 100], ids=["early-stopped", "all-epochs"])
def test_restoring_a_checkpoint_continues_bit_for_bit(tmp_path, patience):
    """Train 6 epochs in one go, or 3, then restore last.npz into a fresh trainer and train on:
    the same weights, buffers, optimizer state and metrics, bit for bit."""
    full = _trainer(tmp_path / "full", patience=patience)
    full_final = full.fit()
    first = _trainer(tmp_path / "split", patience=patience)
    first.callbacks.append(_KillAfter(3))
    with pytest.raises(_Killed):
        first.fit()
    second = _trainer(tmp_path / "split", patience=patience)
    restore(second, load_checkpoint(tmp_path / "split/last.npz"), "last.npz")
    second.history = load_history(tmp_path / "split", second.epoch)
    assert second.epoch == first.epoch
    second_final = second.fit()
    a, b = trainer_state(full), trainer_state(second)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    drop = ("time/epoch_s",)
    strip = [{k: v for k, v in row.items() if k not in drop} for row in full.history]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in second.history]
    assert {k: v for k, v in full_final.items() if k not in drop} == {
        k: v for k, v in second_final.items() if k not in drop
    }
    if patience == 2:
        assert full.should_stop and second.epoch == full.epoch < 6


def test_history_skips_epochs_past_the_checkpoint_and_torn_lines(tmp_path):
    rows = [
        '{"epoch": 1, "metrics": {"a": 1.0}}',
        '{"epoch": 2, "metrics": {"a": 2.0}}',
        '{"epoch": 3, "metrics": {"a": 3.0}}',  # written after the last checkpoint (epoch 2)
        '{"epoch": 2, "metrics": {"a": 22.0}}',  # a resumed run wrote epoch 2 again
        '{"epoch": 3, "metr',  # torn by a crash
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(rows))
    assert load_history(tmp_path, 2) == [{"a": 1.0}, {"a": 22.0}]


# --- atomic writes --------------------------------------------------------------------------


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    state = _state_of(tmp_path / "run")
    path = save_checkpoint(tmp_path / "last.npz", state)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, state)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz", "run"]  # no temp file
    assert int(load_checkpoint(path)["epoch"]) == 2


# --- refused files --------------------------------------------------------------------------


def test_truncated_and_corrupted_files_are_refused_naming_the_file(tmp_path):
    good = save_checkpoint(tmp_path / "good.npz", _state_of(tmp_path / "run"))
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "text.npz": b"epoch,1\n",
    }
    # Corrupted in place: flip bytes inside the first array's data (the zip CRC catches it).
    with zipfile.ZipFile(good) as z:
        info = z.infolist()[1]
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 140
    flipped = bytearray(data)
    flipped[offset : offset + 8] = bytes(b ^ 0xFF for b in flipped[offset : offset + 8])
    cases["flipped.npz"] = bytes(flipped)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        message = str(err.value)
        assert str(tmp_path / name) in message, message
        assert any(w in message for w in ("truncated", "corrupted", "not an .npz")), message
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.npz")


class _Payload:
    """Unpickling this creates the file `marker` (calls ``open(marker, "w")``): proof that
    code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_pickle_cannot_execute_code(tmp_path):
    marker = tmp_path / "pwned"
    state = _state_of(tmp_path / "run")
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    # 1. an object array inside an otherwise valid checkpoint
    crafted = tmp_path / "crafted.npz"
    np.savez(crafted, **(state | {"param/dense_0/W": payload}))
    # 2. a bare pickle under an .npz name
    bare = tmp_path / "bare.npz"
    bare.write_bytes(pickle.dumps(_Payload(marker)))
    # 3. a zip whose member is a pickle (an .npy header declaring an object array)
    raw = tmp_path / "raw.npz"
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=True)
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("epoch.npy", buffer.getvalue())
    for path, message in [
        (crafted, "pickled Python objects"),
        (bare, r"not an nnexp checkpoint \(an .npz archive\): a Python pickle \(refused"),
        (raw, "pickled Python objects"),
    ]:
        with pytest.raises(CheckpointError, match=message) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value)
    assert not marker.exists()  # nothing was unpickled
    # the same payload does run when unpickled: the test would notice if it were loaded
    with np.load(crafted, allow_pickle=True) as f:
        f["param/dense_0/W"]
    assert marker.exists()


def test_an_npz_that_is_not_a_checkpoint_is_refused(tmp_path):
    np.savez(tmp_path / "data.npz", X=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an nnexp training checkpoint"):
        load_checkpoint(tmp_path / "data.npz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": (16,)}, r"other architecture: module 0 is dense 3x8 in the checkpoint, dense"),
        ({"hidden": (8, 8)}, r"other architecture: module 3 is dense 8x1 in the checkpoint, dens"),
        ({"dtype": "float64"}, r"other dtype: the checkpoint is float32, this run uses float64"),
        ({"optimizer": "sgd"}, r"other optimizer: the checkpoint was trained with Adam, this run"),
    ],
    ids=["wider", "deeper", "dtype", "optimizer"],
)
def test_a_mismatched_checkpoint_is_refused_and_nothing_changes(tmp_path, kwargs, message):
    path = save_checkpoint(tmp_path / "last.npz", _state_of(tmp_path / "a"))
    other = _trainer(tmp_path / "b", **kwargs)
    before = {k: v.copy() for k, v in trainer_state(other).items() if k.startswith("param/")}
    with pytest.raises(CheckpointError, match=message) as err:
        restore(other, load_checkpoint(path), f"checkpoint {path}")
    assert str(path) in str(err.value)
    after = trainer_state(other)
    assert all(np.array_equal(v, after[k]) for k, v in before.items())
    assert other.epoch == 0


def test_cli_refuses_a_corrupted_resume_checkpoint_in_one_line(cli, tmp_path):
    bad = tmp_path / "last.npz"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    proc = cli("trainer.resume=last.npz", "tracking.enabled=false")
    assert proc.returncode == 2, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
    assert f"checkpoint {bad}" in line and "truncated" in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs/run/checkpoints").exists()  # refused before training
