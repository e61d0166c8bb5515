"""Checkpoints: the whole training state in one `.npz`, written atomically, read without pickle.

Keys: ``param/<name>``, ``buffer/<name>``, ``optim/<key>``, ``schedule/<key>``, ``epoch``,
``global_step``, ``rng`` (the shuffling generator's state as JSON text) and ``dropout_rng/<layer>``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnexp.nn import Dropout
from nnexp.train.callbacks import Callback

if TYPE_CHECKING:
    from nnexp.train.trainer import Trainer


class CheckpointError(ValueError):
    pass


def _json(obj) -> np.ndarray:
    return np.array(json.dumps(obj))  # a unicode array: loads with allow_pickle=False


def trainer_state(trainer: Trainer) -> dict[str, np.ndarray]:
    state = {f"param/{p.name}": p.value for p in trainer.params}
    state |= {f"buffer/{k}": v for k, v in trainer.model.buffers().items()}
    state |= {f"optim/{k}": v for k, v in trainer.optimizer.state_dict().items()}
    state |= {f"schedule/{k}": np.asarray(v) for k, v in trainer.schedule.state_dict().items()}
    state["epoch"] = np.asarray(trainer.epoch)
    state["global_step"] = np.asarray(trainer.global_step)
    state["rng"] = _json(trainer.rng.bit_generator.state)
    for m in trainer.model.modules:
        if isinstance(m, Dropout):
            state[f"dropout_rng/{m.name}"] = _json(m.rng.bit_generator.state)
    return state


def save_checkpoint(path: str | Path, state: dict[str, np.ndarray]) -> Path:
    """Write to a temporary file in the same directory, then rename: a crash mid-write never
    leaves a truncated checkpoint under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise CheckpointError(f"checkpoint {path}: refused ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable or truncated ({exc})") from None


def restore(trainer: Trainer, state: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Load `state` into the trainer, refusing any mismatch of names, shapes or dtypes."""
    targets = {f"param/{p.name}": p.value for p in trainer.params}
    targets |= {f"buffer/{k}": v for k, v in trainer.model.buffers().items()}
    missing = sorted(set(targets) - set(state))
    if missing:
        raise CheckpointError(f"{source}: other architecture; missing {missing[:5]}")
    extra = sorted(k for k in state if k.startswith(("param/", "buffer/")) and k not in targets)
    if extra:
        raise CheckpointError(f"{source}: other architecture; unexpected {extra[:5]}")
    for key, target in targets.items():
        src = state[key]
        if src.shape != target.shape or src.dtype != target.dtype:
            raise CheckpointError(
                f"{source}: {key} is {src.shape} {src.dtype}, "
                f"the model has {target.shape} {target.dtype}"
            )
    for key, target in targets.items():
        np.copyto(target, state[key])
    optim = {k.removeprefix("optim/"): v for k, v in state.items() if k.startswith("optim/")}
    trainer.optimizer.load_state_dict(optim)
    schedule = {
        k.removeprefix("schedule/"): v.item() for k, v in state.items() if k.startswith("schedule/")
    }
    trainer.schedule.load_state_dict(schedule)
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    trainer.rng.bit_generator.state = json.loads(str(state["rng"]))
    for m in trainer.model.modules:
        if isinstance(m, Dropout):
            m.rng.bit_generator.state = json.loads(str(state[f"dropout_rng/{m.name}"]))


class Checkpointer(Callback):
    """Writes ``last.npz`` every epoch, ``epoch_NNNN.npz`` every `every` epochs, and ``best.npz``
    whenever the monitored metric (lower is better) improves."""

    def __init__(self, directory: str | Path, every: int = 0, monitor: str = "val/loss") -> None:
        self.directory, self.every, self.monitor = Path(directory), every, monitor
        self.best = float("inf")

    def on_epoch_end(self, trainer, epoch, metrics):
        state = trainer_state(trainer)
        save_checkpoint(self.directory / "last.npz", state)
        if self.every and epoch % self.every == 0:
            save_checkpoint(self.directory / f"epoch_{epoch:04d}.npz", state)
        value = metrics.get(self.monitor, float("nan"))
        if value < self.best:
            self.best = value
            save_checkpoint(self.directory / "best.npz", state)
