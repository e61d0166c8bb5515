"""Checkpoints: the whole training state in one `.npz`, written atomically, read without pickle.

Keys: ``format``, ``param/<name>``, ``buffer/<name>``, ``optim/<key>``, ``schedule/<key>``,
``epoch``, ``global_step``, ``stopped`` (a callback ended training), ``rng`` (the shuffling
generator's state as JSON text), ``dropout_rng/<layer>``, ``callback/<key>/<name>`` (the state
of callbacks that steer training, e.g. early stopping) and ``meta`` (JSON: what the run was
trained with — its layers with their kinds, activations and normalization, the dtype, the
optimizer and its hyperparameters). Everything a resumed run needs to continue bit for bit; the
per-epoch metrics live next to it in ``history.jsonl`` (appended, not rewritten).

Loading refuses, with a message naming the file: a missing, truncated or corrupted file, a file
that is not an .npz at all (random bytes, a pickle), an archive with pickled objects
(``allow_pickle=False``: a crafted checkpoint cannot run code), an archive that is not an nnexp
checkpoint or whose RNG state is not one, and a checkpoint of other layers (kinds, activations,
widths), another dtype or another optimizer — naming the difference. A checkpoint written before
``meta`` existed is checked by its arrays' names, shapes and dtypes alone. Files are created with
the permissions the umask gives (a teammate can resume from a shared directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from nnexp.names import HISTORY_FILE
from nnexp.nn import Dropout
from nnexp.nn.module import FloatArray, Parameter
from nnexp.train.callbacks import State

if TYPE_CHECKING:
    from nnexp.train.trainer import Trainer

FORMAT = 1  # (``meta`` is optional: added without a new format, older files still load)
REQUIRED = ("epoch", "global_step", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def _json(obj: object) -> NDArray[np.str_]:
    return np.array(json.dumps(obj))  # a unicode array: loads with allow_pickle=False


def trainer_state(trainer: Trainer) -> State:
    state: State = {"format": np.asarray(FORMAT), "meta": _json(trained_with(trainer))}
    state |= {f"param/{p.name}": p.value for p in trainer.params}
    state |= {f"buffer/{k}": v for k, v in trainer.model.buffers().items()}
    state |= {f"optim/{k}": v for k, v in trainer.optimizer.state_dict().items()}
    state |= {f"schedule/{k}": np.asarray(v) for k, v in trainer.schedule.state_dict().items()}
    state["epoch"] = np.asarray(trainer.epoch)
    state["global_step"] = np.asarray(trainer.global_step)
    state["stopped"] = _json([trainer.should_stop, trainer.stop_reason])
    state["rng"] = _json(trainer.rng.bit_generator.state)
    for m in trainer.model.modules:
        if isinstance(m, Dropout):
            state[f"dropout_rng/{m.name}"] = _json(m.rng.bit_generator.state)
    for cb in trainer.callbacks:
        if cb.state_key:
            state |= {f"callback/{cb.state_key}/{k}": v for k, v in cb.state_dict().items()}
    return state


# Hyperparameters an optimizer may have (nnexp.nn.optim): recorded, compared on resume.
HYPERPARAMETERS = ("lr", "momentum", "nesterov", "rho", "beta1", "beta2", "eps", "weight_decay")


def trained_with(trainer: Trainer) -> dict[str, Any]:
    """What a checkpoint's weights mean: the layers (kind, a dense layer's shape, an
    activation's alpha), the dtype, the optimizer and its hyperparameters."""
    layers = []
    for m in trainer.model.modules:
        if isinstance(m, Dropout):  # regularization: may be turned on or off on resume
            continue
        kind = str(getattr(m, "kind", type(m).__name__))
        weights = getattr(m, "W", None)
        if isinstance(weights, Parameter):
            kind += " {}x{}".format(*weights.value.shape)
        if hasattr(m, "alpha"):
            kind += f"(alpha={m.alpha:g})"
        layers.append(kind)
    optimizer = trainer.optimizer
    return {
        # What continuing it to more epochs depends on: the run's length, and a schedule that
        # spans it (a cosine's total: trainer.epochs unless set)
        "epochs": trainer.settings.epochs,
        "schedule_total": getattr(trainer.schedule, "total", None),
        "layers": layers,
        "dtype": str(trainer.params[0].value.dtype) if trainer.params else "",
        "optimizer": type(optimizer).__name__,
        "hyperparameters": {  # plain numbers: the state may hold NumPy scalars
            k: _plain(getattr(optimizer, k)) for k in HYPERPARAMETERS if hasattr(optimizer, k)
        },
    }


def _plain(value: Any) -> bool | float:
    return value if isinstance(value, bool) else float(value)


def _umask() -> int:
    mask = os.umask(0o022)  # (the only way to read it; set back at once)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (setting it is process-wide)


def save_checkpoint(path: str | Path, state: State) -> Path:
    """Write to a temporary file in the same directory, then rename: a crash mid-write never
    leaves a truncated checkpoint under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would lock teammates out
        with os.fdopen(fd, "wb") as f:
            # mypy matches **state against savez's allow_pickle: bool too; all are arrays.
            np.savez(f, **state)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:
            exc.filename = str(path)  # a full disk: say which file could not be written
        raise
    _fsync_dir(path.parent)  # make the rename itself survive a power cut
    return path


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path: str | Path) -> State:
    """Every array of the checkpoint at `path`, read with ``allow_pickle=False`` and checked to
    be a complete nnexp checkpoint; `CheckpointError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    _check_magic(path)
    try:
        with np.load(path, allow_pickle=False) as f:  # a zip archive (_check_magic): an NpzFile
            state = {k: f[k] for k in f.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # an object array or a pickle: never unpickled
            raise CheckpointError(
                f"checkpoint {path}: refused, it contains pickled Python objects "
                "(nnexp checkpoints hold plain arrays only)"
            ) from None
        raise CheckpointError(f"checkpoint {path}: corrupted ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable or truncated ({exc})") from None
    _check_structure(path, state)
    return state


ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later
NPY_MAGIC = b"\x93NUMPY"  # a single array (np.save); the longest of the three


def _check_magic(path: Path) -> None:
    """Refuse what is not an .npz before NumPy reads it (NumPy calls anything it does not
    recognize "pickled data"): random bytes, an .npy, a pickle."""
    try:
        with path.open("rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({exc.strerror})") from None
    if head.startswith(ZIP_MAGIC):
        return
    if head.startswith(PICKLE_MAGIC):
        what = "a Python pickle (refused: loading one can run code)"
    elif head.startswith(NPY_MAGIC):
        what = "a single .npy array"
    else:
        what = "of unknown content" if head else "empty"
    raise CheckpointError(f"checkpoint {path}: not an nnexp checkpoint (an .npz archive): {what}")


def _check_structure(path: Path, state: State) -> None:
    missing = [k for k in REQUIRED if k not in state]
    if missing or not any(k.startswith("param/") for k in state):
        raise CheckpointError(
            f"checkpoint {path}: not an nnexp training checkpoint "
            f"(missing {missing or ['param/*']}; has {sorted(state)[:5]})"
        )
    version = int(state["format"]) if "format" in state else FORMAT
    if version > FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: format {version} is newer than this nnexp reads ({FORMAT})"
        )
    for key in ("epoch", "global_step"):
        if state[key].shape != () or state[key].dtype.kind not in "iu" or int(state[key]) < 0:
            raise CheckpointError(f"checkpoint {path}: {key} is not a step count")
    for key, value in state.items():
        if key in ("rng", "stopped", "meta") or key.startswith("dropout_rng/"):
            try:
                json.loads(str(value))
            except ValueError:
                raise CheckpointError(f"checkpoint {path}: {key} is not valid JSON") from None


def restore(trainer: Trainer, state: State, source: str = "checkpoint") -> None:
    """Load `state` into the trainer. Every mismatch of names, shapes, dtypes or optimizer is
    found before anything is changed, and reported naming `source`."""
    targets = _check_compatible(trainer, state, source)
    if int(state["epoch"]) > trainer.settings.epochs:
        raise CheckpointError(
            f"{source}: is at epoch {int(state['epoch'])}, past trainer.epochs="
            f"{trainer.settings.epochs}: nothing to train; set trainer.epochs above "
            f"{int(state['epoch'])} to train on"
        )
    rngs = _check_rngs(trainer, state, source)
    for key, target in targets.items():
        np.copyto(target, state[key])
    schedule = {
        k.removeprefix("schedule/"): v.item() for k, v in state.items() if k.startswith("schedule/")
    }
    trainer.schedule.load_state_dict(schedule)
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    if "stopped" in state:
        stop, reason = json.loads(str(state["stopped"]))
        trainer.should_stop, trainer.stop_reason = bool(stop), str(reason)
    for generator, rng_state in rngs:
        generator.bit_generator.state = rng_state
    for cb in trainer.callbacks:
        prefix = f"callback/{cb.state_key}/"
        own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if cb.state_key and own:
            cb.load_state_dict(own)


def stopped_early(state: State) -> str | None:
    """Why the checkpoint's run stopped before its last epoch (early stopping), or None."""
    if "stopped" not in state:
        return None
    stop, reason = json.loads(str(state["stopped"]))
    return str(reason) if stop else None


def _check_rngs(
    trainer: Trainer, state: State, source: str
) -> list[tuple[np.random.Generator, dict[str, object]]]:
    """Each generator with the state to put in it, tried on a copy first: a state of another
    bit generator, or a malformed one, is named before anything is changed."""
    pairs = [(trainer.rng, "rng")]
    pairs += [
        (m.rng, f"dropout_rng/{m.name}")
        for m in trainer.model.modules
        if isinstance(m, Dropout) and f"dropout_rng/{m.name}" in state
    ]
    out = []
    for generator, key in pairs:
        rng_state = json.loads(str(state[key]))
        trial = type(generator.bit_generator)()
        try:
            trial.state = rng_state
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise CheckpointError(
                f"{source}: {key} is not a {type(trial).__name__} state ({exc})"
            ) from None
        out.append((generator, rng_state))
    return out


def _check_trained_with(trainer: Trainer, state: State, source: str) -> None:
    """The checkpoint's layers and optimizer against this run's, the first difference named
    (older checkpoints have no ``meta``: their arrays are checked below)."""
    if "meta" not in state:
        return
    was, now = json.loads(str(state["meta"])), trained_with(trainer)
    old_layers: list[str] = list(was.get("layers", []))
    layers: list[str] = now["layers"]
    if old_layers != layers:
        diff = next(
            (i for i, (a, b) in enumerate(zip(old_layers, layers, strict=False)) if a != b),
            min(len(old_layers), len(layers)),
        )
        theirs = old_layers[diff] if diff < len(old_layers) else "nothing"
        ours = layers[diff] if diff < len(layers) else "nothing"
        raise CheckpointError(
            f"{source}: other architecture: module {diff} is {theirs} in the checkpoint, "
            f"{ours} in this run (checkpoint: {', '.join(old_layers)}; change model.* back)"
        )
    if was.get("dtype") and was["dtype"] != now["dtype"]:
        raise CheckpointError(
            f"{source}: other dtype: the checkpoint is {was['dtype']}, this run uses "
            f"{now['dtype']} (trainer.dtype)"
        )
    _check_continuation(trainer, state, was, source)
    if was.get("optimizer", now["optimizer"]) != now["optimizer"]:
        raise CheckpointError(
            f"{source}: other optimizer: the checkpoint was trained with {was['optimizer']}, "
            f"this run uses {now['optimizer']} (optimizer=...)"
        )


def _check_continuation(trainer: Trainer, state: State, was: dict[str, Any], source: str) -> None:
    """Continuing a checkpoint must continue *its* training, so that a run resumed or extended
    to more epochs (``trainer.resume=last trainer.epochs=150`` after 100) ends as an
    uninterrupted run would have. Refused where that cannot hold: a schedule that spans the
    run's length (cosine: its total is trainer.epochs unless set) would change the learning
    rate of the epochs already trained; a run that ended by putting its best epoch's weights
    back (restore_best) holds that epoch's weights, not the last one's, to go on from."""
    total = getattr(trainer.schedule, "total", None)
    if was.get("schedule_total") not in (None, total):
        raise CheckpointError(
            f"{source}: its {type(trainer.schedule).__name__} schedule spans "
            f"{was['schedule_total']} epochs, this run's {total} (trainer.epochs="
            f"{trainer.settings.epochs}): continuing it would change the learning rate of the "
            f"epochs it trained. Set schedule.total={was['schedule_total']} to keep its schedule "
            "(later epochs at schedule.min_lr), or start a new run"
        )
    epoch = int(state["epoch"])
    best_epoch = state.get("callback/early_stopping/best_epoch")
    best = epoch if best_epoch is None else int(best_epoch)
    ended = was.get("epochs") == epoch < trainer.settings.epochs  # a finished run extended
    if ended and "callback/early_stopping/value/0" in state and best < epoch:
        raise CheckpointError(
            f"{source}: the run ended at epoch {epoch} with its best epoch's weights (epoch "
            f"{best}, early stopping's restore_best): extended, it would not go on from "
            "where it trained. Start a new run with more epochs, or train runs you mean to "
            "extend with trainer.early_stopping.restore_best=false"
        )


def _check_compatible(trainer: Trainer, state: State, source: str) -> dict[str, FloatArray]:
    """The trainer's arrays that `state` fills (weights, buffers), once the checkpoint's
    architecture, dtype and optimizer state are known to fit; the optimizer's state is
    validated (and then loaded) by the optimizer itself."""
    _check_trained_with(trainer, state, source)
    targets = {f"param/{p.name}": p.value for p in trainer.params}
    targets |= {f"buffer/{k}": v for k, v in trainer.model.buffers().items()}
    missing = sorted(set(targets) - set(state))
    extra = sorted(k for k in state if k.startswith(("param/", "buffer/")) and k not in targets)
    if missing or extra:
        raise CheckpointError(
            f"{source}: other architecture: the model has no {extra[:4]} and needs {missing[:4]} "
            "(was model.* changed since the checkpoint was written?)"
        )
    for key, target in targets.items():
        src = state[key]
        if src.dtype != target.dtype:
            raise CheckpointError(
                f"{source}: other dtype: {key} is {src.dtype}, this run uses {target.dtype} "
                "(trainer.dtype)"
            )
        if src.shape != target.shape:
            raise CheckpointError(
                f"{source}: other architecture: {key} has shape {src.shape}, "
                f"the model's is {target.shape}"
            )
    optim = {k.removeprefix("optim/"): v for k, v in state.items() if k.startswith("optim/")}
    try:
        trainer.optimizer.load_state_dict(optim)  # validates fully before it copies
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: other optimizer: {exc}") from None
    return targets


# --- the per-epoch history ------------------------------------------------------------------


def append_history(directory: Path, epoch: int, metrics: dict[str, float]) -> None:
    """One JSON line per epoch. Appending keeps the cost per epoch constant; a line written
    just before a crash, past the last checkpoint, is filtered out by `load_history`."""
    directory.mkdir(parents=True, exist_ok=True)
    row = {"epoch": epoch, "metrics": {k: float(v) for k, v in metrics.items()}}
    with open(directory / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def load_history(directory: Path, upto_epoch: int) -> list[dict[str, float]]:
    """The metrics of epochs 1..`upto_epoch` (the latest line for each: a resumed run appends
    epochs again); a torn last line is skipped."""
    path = Path(directory) / HISTORY_FILE
    rows: dict[int, dict[str, float]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                rows[int(row["epoch"])] = {k: float(v) for k, v in row["metrics"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return [rows[e] for e in range(1, upto_epoch + 1) if e in rows]
