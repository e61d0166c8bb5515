"""The checkpointing callback: ``last.npz`` and ``best.npz`` at most every few seconds, and
``epoch_NNNN.npz`` every few epochs, of which only the newest few are kept (the format is
`nnexp.train.checkpoint`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnexp.names import BEST_CHECKPOINT, LAST_CHECKPOINT, checkpoint_epoch, epoch_checkpoint
from nnexp.objective import VAL_LOSS, Objective
from nnexp.timing import phase
from nnexp.train.callbacks import Callback, State
from nnexp.train.checkpoint import append_history, save_checkpoint, trainer_state
from nnexp.train.run_lock import lock, unlock

if TYPE_CHECKING:
    from nnexp.train.trainer import Trainer


class Checkpointer(Callback):
    """Keeps ``last.npz`` and ``best.npz`` (the best epoch by the objective) and writes
    ``epoch_NNNN.npz`` every `every` epochs; appends each epoch's metrics to ``history.jsonl``.
    Put it after the callbacks whose state it saves (early stopping).

    ``last``/``best`` are written at most every `save_every_s` seconds — when the epoch that
    ends is the first after that interval, when training ends, and when it fails (the last
    completed epoch, so a crashed run leaves a loadable checkpoint). In between, the epoch's
    state is held as an in-memory copy. A run with short epochs (two moons: a few ms) would
    otherwise spend more time writing .npz files than training; a run killed outright (SIGKILL)
    loses at most `save_every_s` of training, which a resume replays bit for bit.

    `keep` (K >= 1) bounds the files: the K newest checkpoints are kept — ``last.npz`` and the
    K - 1 newest ``epoch_NNNN.npz`` — plus ``best.npz``, so a run of any length leaves at most
    K + 1 checkpoint files (K = 1: no epoch files at all). None keeps every epoch file."""

    state_key = "checkpointer"

    def __init__(
        self,
        directory: str | Path,
        every: int = 0,
        objective: Objective = VAL_LOSS,
        save_every_s: float = 0.0,
        keep: int | None = None,
    ) -> None:
        self.directory, self.every, self.objective = Path(directory), every, objective
        self.save_every_s, self.keep = save_every_s, keep
        self.best = objective.worst
        self._pending: dict[str, State] = {}  # file name -> state to write
        self._written = -math.inf  # monotonic time of the last write

    def on_fit_start(self, trainer: Trainer) -> None:
        lock(self.directory)
        self._written = -math.inf  # the first epoch is always written

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        with phase("checkpoints"):
            self._write_pending()
        unlock(self.directory)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        try:
            self._write_pending()  # the last completed epoch: what a resume starts from
        finally:
            unlock(self.directory)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        with phase("checkpoints"):
            self._save(trainer, epoch, metrics)

    def _save(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        append_history(self.directory, epoch, metrics)
        value = metrics.get(self.objective.key, math.nan)
        improved = self.objective.improves(value, self.best)
        if improved:
            self.best = value
        state = trainer_state(trainer)  # after `best` is updated: it is part of the state
        if self.every and epoch % self.every == 0 and (self.keep is None or self.keep > 1):
            save_checkpoint(self.directory / epoch_checkpoint(epoch), state)
            self._prune(epoch)
        due = time.monotonic() - self._written >= self.save_every_s
        if not due:  # the arrays are the live weights: keep a copy until it is written
            state = {key: value.copy() for key, value in state.items()}
        self._pending[LAST_CHECKPOINT] = state
        if improved:
            self._pending[BEST_CHECKPOINT] = state
        if due:
            self._write_pending()

    def _prune(self, epoch: int) -> None:
        """Delete the epoch files beyond the newest `keep` - 1 (the new one is among them)."""
        if self.keep is None:
            return
        names = [p.name for p in self.directory.glob("epoch_*.npz")]
        for name in stale_epoch_checkpoints(names, self.keep, upto=epoch):
            (self.directory / name).unlink(missing_ok=True)

    def _write_pending(self) -> None:
        for name, state in self._pending.items():
            save_checkpoint(self.directory / name, state)
        self._pending.clear()
        self._written = time.monotonic()

    def state_dict(self) -> State:
        return {"best": np.asarray(self.best, dtype=np.float64)}

    def load_state_dict(self, state: State) -> None:
        self.best = float(state["best"])


def stale_epoch_checkpoints(
    names: Iterable[str], keep: int | None, upto: int | None = None
) -> list[str]:
    """The ``epoch_NNNN.npz`` among `names` (file names or artifact paths) that `keep` K does
    not keep: all but the K - 1 newest (``last.npz`` is the K-th), of those at or before epoch
    `upto` — a run resumed from an earlier checkpoint leaves the files of its first attempt's
    later epochs alone (it overwrites them when it gets there). None keeps all."""
    if keep is None:
        return []
    dated = [(e, n) for n in names if (e := checkpoint_epoch(n)) is not None]
    dated = sorted(d for d in dated if upto is None or d[0] <= upto)
    return [name for _, name in dated[: max(len(dated) - (keep - 1), 0)]]
