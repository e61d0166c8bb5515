"""Every refusal of nnexp.train.checkpoint, in-process and word for word.

The resume tests (tests/test_resume*.py) see these messages through the CLI, in a subprocess
that mutation testing cannot see into; here each rule is met on both sides, with the message it
gives in full, so that a changed condition, key or message fails a test `make mutate` runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from nnexp.data import Splits
from nnexp.nn import SGD, Adam, SigmoidBCE, mlp
from nnexp.nn.schedules import Constant, Cosine
from nnexp.train import (
    CheckpointError,
    EarlyStopping,
    Trainer,
    TrainSettings,
    load_checkpoint,
    restore,
    save_checkpoint,
    trainer_state,
)
from nnexp.train import checkpoint as ckpt


def _splits() -> Splits:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return Splits(X[:48], y[:48], X[48:64], y[48:64], X[64:], y[64:], task="binary")


def _trainer(
    *, hidden=(4,), epochs: int = 2, optimizer: str = "sgd", schedule=None, restore_best=False
) -> Trainer:
    model = mlp(3, list(hidden), 1, dropout=0.1, batch_norm=True, seed=3)
    params = list(model.parameters())
    opt = SGD(params, lr=0.1) if optimizer == "sgd" else Adam(params, lr=0.01)
    settings = TrainSettings(epochs=epochs, batch_size=16, seed=5)
    stopping = EarlyStopping(patience=100, restore_best=restore_best)
    return Trainer(
        model, SigmoidBCE(), opt, schedule or Constant(0.1), _splits(), settings, [stopping]
    )


def _trained(**kwargs) -> dict[str, np.ndarray]:
    trainer = _trainer(**kwargs)
    trainer.fit()
    return trainer_state(trainer)


def _refused(path: Path, state: dict[str, np.ndarray]) -> str:
    np.savez(path, **state)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    return str(err.value)


def _restore_refused(trainer: Trainer, state: dict, source: str = "ckpt.npz") -> str:
    with pytest.raises(CheckpointError) as err:
        restore(trainer, state, source)
    return str(err.value)


# --- what is not an nnexp checkpoint file -------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "empty"),
        (b"epoch,1\n", "of unknown content"),
        (b"\x80\x04\x95", "a Python pickle (refused: loading one can run code)"),
        (b"\x93NUMPY\x01\x00", "a single .npy array"),
    ],
    ids=["empty", "text", "pickle", "npy"],
)
def test_what_is_not_an_npz_archive_is_named_by_its_first_bytes(tmp_path, content, what):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"checkpoint {path}: not an nnexp checkpoint (an .npz archive): {what}"


def test_an_archive_with_an_object_array_is_refused_in_full_words(tmp_path):
    state = _trained() | {"param/dense_0/W": np.array([None, 1], dtype=object)}
    path = tmp_path / "objects.npz"
    np.savez(path, **state)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"checkpoint {path}: refused, it contains pickled Python objects "
        "(nnexp checkpoints hold plain arrays only)"
    )


def test_an_archive_member_that_is_not_an_array_is_corrupted(tmp_path):
    import zipfile

    path = tmp_path / "bad_member.npz"
    with zipfile.ZipFile(path, "w") as archive:
        header = b"{'x': 1}  \n"  # an .npy header without descr, fortran_order, shape
        archive.writestr(
            "epoch.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
        )
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert (
        message.startswith(f"checkpoint {path}: corrupted (")
        and "Header does not contain" in message
    )


def test_a_file_that_cannot_be_read_names_the_reason(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04")

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"checkpoint {path}: cannot be read (Input/output error)"


# --- an .npz that is not a complete checkpoint --------------------------------------------------


def test_a_missing_key_or_no_parameters_is_not_a_training_checkpoint(tmp_path):
    state = _trained()
    no_rng = {k: v for k, v in state.items() if k != "rng"}
    first = sorted(no_rng)[:5]
    assert _refused(tmp_path / "a.npz", no_rng) == (
        f"checkpoint {tmp_path / 'a.npz'}: not an nnexp training checkpoint "
        f"(missing ['rng']; has {first})"
    )
    no_params = {k: v for k, v in state.items() if not k.startswith("param/")}
    assert _refused(tmp_path / "b.npz", no_params) == (
        f"checkpoint {tmp_path / 'b.npz'}: not an nnexp training checkpoint "
        f"(missing ['param/*']; has {sorted(no_params)[:5]})"
    )


def test_a_newer_format_is_refused_and_an_older_file_without_one_loads(tmp_path):
    state = _trained()
    assert _refused(tmp_path / "new.npz", state | {"format": np.asarray(2)}) == (
        f"checkpoint {tmp_path / 'new.npz'}: format 2 is newer than this nnexp reads (1)"
    )
    old = save_checkpoint(tmp_path / "old.npz", {k: v for k, v in state.items() if k != "format"})
    assert int(load_checkpoint(old)["epoch"]) == 2


@pytest.mark.parametrize("key", ["epoch", "global_step"])
@pytest.mark.parametrize(
    "value", [np.asarray([1, 2]), np.asarray(1.0), np.asarray(-1)], ids=["shape", "float", "neg"]
)
def test_a_step_count_that_is_not_one_is_refused(tmp_path, key, value):
    path = tmp_path / "steps.npz"
    assert _refused(path, _trained() | {key: value}) == (
        f"checkpoint {path}: {key} is not a step count"
    )


@pytest.mark.parametrize("key", ["rng", "stopped", "meta", "dropout_rng/dropout_0"])
def test_each_json_entry_must_be_json(tmp_path, key):
    state = _trained()
    assert key in state
    path = tmp_path / "json.npz"
    assert _refused(path, state | {key: np.array("{not json")}) == (
        f"checkpoint {path}: {key} is not valid JSON"
    )


# --- a checkpoint of another run ----------------------------------------------------------------


def test_the_default_source_names_the_checkpoint():
    state = _trained()
    with pytest.raises(CheckpointError) as err:
        restore(_trainer(hidden=(5,)), state)
    assert str(err.value).startswith("checkpoint: other architecture: module 0 is dense 3x4 ")


def test_a_deeper_or_shallower_checkpoint_names_the_first_module_that_differs():
    deep = _trainer(hidden=(4, 4))
    layers = ckpt.trained_with(deep)["layers"]
    shallow_layers = ckpt.trained_with(_trainer())["layers"]
    assert layers[: len(shallow_layers) - 1] == shallow_layers[:-1]
    message = _restore_refused(deep, _trained())
    i = len(shallow_layers) - 1  # the shallow net's output layer, a hidden layer of the deep one
    assert message == (
        f"ckpt.npz: other architecture: module {i} is {shallow_layers[i]} in the checkpoint, "
        f"{layers[i]} in this run (checkpoint: {', '.join(shallow_layers)}; change model.* back)"
    )
    # The checkpoint longer than the run, agreeing up to the run's end: the run has "nothing".
    state = _trained()
    meta = json.loads(str(state["meta"]))
    longer = [*shallow_layers, "dense 1x1"]
    message = _restore_refused(
        _trainer(), state | {"meta": np.array(json.dumps(meta | {"layers": longer}))}
    )
    n = len(shallow_layers)
    assert message == (
        f"ckpt.npz: other architecture: module {n} is dense 1x1 in the checkpoint, nothing in "
        f"this run (checkpoint: {', '.join(longer)}; change model.* back)"
    )
    # A meta without layers: the checkpoint has "nothing" where the run has its first module.
    message = _restore_refused(
        _trainer(),
        state | {"meta": np.array(json.dumps({k: v for k, v in meta.items() if k != "layers"}))},
    )
    assert message == (
        f"ckpt.npz: other architecture: module 0 is nothing in the checkpoint, "
        f"{shallow_layers[0]} in this run (checkpoint: ; change model.* back)"
    )


def test_another_optimizer_is_refused_and_a_meta_without_one_is_not():
    state = _trained()
    message = _restore_refused(_trainer(optimizer="adam"), state)
    assert message == (
        "ckpt.npz: other optimizer: the checkpoint was trained with SGD, this run uses Adam "
        "(optimizer=...)"
    )
    meta = json.loads(str(state["meta"]))
    del meta["optimizer"]
    trainer = _trainer()
    restore(trainer, state | {"meta": np.array(json.dumps(meta))}, "ckpt.npz")
    assert trainer.epoch == 2


# --- continuing what the checkpoint trained -----------------------------------------------------


def test_a_schedule_that_spans_the_run_cannot_be_stretched():
    state = _trained(schedule=Cosine(0.1, total=2))
    message = _restore_refused(_trainer(epochs=4, schedule=Cosine(0.1, total=4)), state)
    assert message == (
        "ckpt.npz: its Cosine schedule spans 2 epochs, this run's 4 (trainer.epochs=4): "
        "continuing it would change the learning rate of the epochs it trained. Set "
        "schedule.total=2 to keep its schedule (later epochs at schedule.min_lr), or start a "
        "new run"
    )
    trainer = _trainer(epochs=4, schedule=Cosine(0.1, total=2))  # its total kept: continues
    restore(trainer, state, "ckpt.npz")
    assert trainer.epoch == 2


def _best_at_1_of_2(restore_best: bool = True) -> dict[str, np.ndarray]:
    """A finished 2-epoch run whose early stopping kept epoch 1 as its best."""
    state = _trained(restore_best=restore_best)
    state["callback/early_stopping/best_epoch"] = np.asarray(1)
    return state


def test_a_finished_run_that_put_its_best_epoch_back_cannot_be_extended():
    state = _best_at_1_of_2()
    assert "callback/early_stopping/value/0" in state
    message = _restore_refused(_trainer(epochs=4, restore_best=True), state)
    assert message == (
        "ckpt.npz: the run ended at epoch 2 with its best epoch's weights (epoch 1, early "
        "stopping's restore_best): extended, it would not go on from where it trained. Start a "
        "new run with more epochs, or train runs you mean to extend with "
        "trainer.early_stopping.restore_best=false"
    )


@pytest.mark.parametrize(
    ("case", "epochs"),
    [
        ("the same length: nothing extended", 2),
        ("its best epoch is its last", 4),
        ("no best weights kept (restore_best=false)", 4),
        ("killed before its end, not finished", 4),
    ],
)
def test_what_is_not_an_extension_from_restored_best_weights_continues(case, epochs):
    state = _best_at_1_of_2()
    if case == "its best epoch is its last":
        state["callback/early_stopping/best_epoch"] = np.asarray(2)
    if case.startswith("no best weights"):
        state = _best_at_1_of_2(restore_best=False)
        assert not any(k.startswith("callback/early_stopping/value/") for k in state)
    if case.startswith("killed"):
        meta = json.loads(str(state["meta"])) | {"epochs": 6}  # the killed run meant 6
        state["meta"] = np.array(json.dumps(meta))
    trainer = _trainer(epochs=epochs, restore_best=True)
    restore(trainer, state, "ckpt.npz")
    assert trainer.epoch == 2


# --- a checkpoint written before `meta`: its arrays decide ---------------------------------------


def test_without_meta_the_arrays_names_shapes_and_optimizer_state_decide():
    state = {k: v for k, v in _trained().items() if k != "meta"}
    params = sorted(k for k in state if k.startswith(("param/", "buffer/")))
    assert len(params) >= 5
    renamed = {k: v for k, v in state.items() if k not in params}
    renamed |= {f"{k}_old": state[k] for k in params}
    extra = sorted(f"{k}_old" for k in params)
    assert _restore_refused(_trainer(), renamed) == (
        f"ckpt.npz: other architecture: the model has no {extra[:4]} and needs {params[:4]} "
        "(was model.* changed since the checkpoint was written?)"
    )
    # An extra buffer alone (a batch norm the run does not have) is named too.
    buffer = next(k for k in params if k.startswith("buffer/"))
    more = state | {buffer + "_2": state[buffer]}
    assert _restore_refused(_trainer(), more) == (
        f"ckpt.npz: other architecture: the model has no {[buffer + '_2']} and needs [] "
        "(was model.* changed since the checkpoint was written?)"
    )
    W = "param/dense_0/W"
    wide = state | {W: np.zeros((3, 5), dtype=state[W].dtype)}
    assert _restore_refused(_trainer(), wide) == (
        f"ckpt.npz: other architecture: {W} has shape (3, 5), the model's is (3, 4)"
    )
    optim = {k: v for k, v in state.items() if not k.startswith("optim/")}
    message = _restore_refused(_trainer(optimizer="adam"), optim)
    assert message.startswith("ckpt.npz: other optimizer: "), message


def test_the_umask_is_read_and_left_as_it_was():
    before = os.umask(0o027)
    try:
        assert ckpt._umask() == 0o027
        assert os.umask(0o027) == 0o027  # unchanged by reading it
    finally:
        os.umask(before)


# --- what a checkpoint records, and how it is written -------------------------------------------


def test_meta_records_each_layer_with_its_shape_and_alpha_and_the_optimizers_numbers():
    model = mlp(3, [4], 1, activation="leaky_relu", activation_kwargs={"alpha": 0.2}, seed=3)
    opt = SGD(list(model.parameters()), lr=0.1, momentum=0.9)
    settings = TrainSettings(epochs=2, batch_size=16, seed=5)
    trainer = Trainer(model, SigmoidBCE(), opt, Constant(0.1), _splits(), settings, [])
    assert ckpt.trained_with(trainer) == {
        "epochs": 2,
        "schedule_total": None,
        "layers": ["dense 3x4", "leaky_relu(alpha=0.2)", "dense 4x1"],
        "dtype": "float32",
        "optimizer": "SGD",
        "hyperparameters": {"lr": 0.1, "momentum": 0.9, "nesterov": False},
    }


def test_a_checkpoint_says_whether_its_run_stopped_early_and_why():
    state = _trained()
    assert ckpt.stopped_early(state) is None  # ran its epochs
    stopped = state | {"stopped": np.array(json.dumps([True, "no improvement for 3 epochs"]))}
    assert ckpt.stopped_early(stopped) == "no improvement for 3 epochs"
    assert ckpt.stopped_early({k: v for k, v in state.items() if k != "stopped"}) is None


def test_a_checkpoint_file_gets_the_umasks_permissions(tmp_path):
    path = save_checkpoint(tmp_path / "last.npz", _trained())
    assert path.stat().st_mode & 0o777 == 0o666 & ~ckpt._UMASK
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]  # no temporary file left


def test_a_full_disk_names_the_checkpoint_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    path = tmp_path / "last.npz"
    with pytest.raises(OSError) as err:
        save_checkpoint(path, {"epoch": np.asarray(1)})
    assert err.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_is_written_to_a_hidden_temporary_beside_it_then_renamed(
    tmp_path, monkeypatch
):
    renamed: list[tuple[str, str]] = []
    real = os.replace

    def spy(src, dst):
        renamed.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", spy)
    path = save_checkpoint(tmp_path / "last.npz", _trained())
    ((src, dst),) = renamed
    assert dst == str(path) and Path(src).parent == tmp_path  # one filesystem: atomic
    assert Path(src).name.startswith(".last-") and src.endswith(".tmp")


def test_a_directory_that_cannot_be_opened_to_sync_does_not_fail_the_write(tmp_path, monkeypatch):
    real = os.open

    def no_directories(path, flags, *args):
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied")
        return real(path, flags, *args)

    monkeypatch.setattr(ckpt.os, "open", no_directories)
    path = save_checkpoint(tmp_path / "last.npz", _trained())
    assert int(load_checkpoint(path)["epoch"]) == 2


def test_meta_keeps_flags_as_booleans_and_numpy_numbers_as_plain_floats():
    model = mlp(3, [4], 1, seed=3)
    opt = SGD(list(model.parameters()), lr=0.1, momentum=0.9, nesterov=True)
    opt.lr = np.float32(0.5)  # a schedule may leave a NumPy scalar
    settings = TrainSettings(epochs=2, batch_size=16, seed=5)
    trainer = Trainer(model, SigmoidBCE(), opt, Constant(0.1), _splits(), settings, [])
    numbers = ckpt.trained_with(trainer)["hyperparameters"]
    assert numbers["nesterov"] is True
    assert type(numbers["lr"]) is float and numbers["lr"] == 0.5
    assert type(numbers["momentum"]) is float


def test_a_checkpoint_past_the_runs_epochs_and_a_foreign_rng_state_are_named():
    state = _trained(epochs=3)
    assert _restore_refused(_trainer(epochs=2), state) == (
        "ckpt.npz: is at epoch 3, past trainer.epochs=2: nothing to train; "
        "set trainer.epochs above 3 to train on"
    )
    other = json.loads(str(state["rng"])) | {"bit_generator": "SFC64"}  # another generator's
    foreign = state | {"rng": np.array(json.dumps(other))}
    message = _restore_refused(_trainer(epochs=4), foreign, source="run.npz")
    assert message.startswith("run.npz: rng is not a PCG64 state (")
