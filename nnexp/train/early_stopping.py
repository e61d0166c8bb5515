"""Stop when the objective stops improving; optionally restore the best epoch's weights (before
test metrics are computed), and then report that epoch: the run's final metrics and the value
returned to a sweeper describe the model the run ends with."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from nnexp.objective import VAL_LOSS, Objective
from nnexp.train.callbacks import Callback, State
from nnexp.train.trainer import RESULTS, Trainer


class EarlyStopping(Callback):
    state_key = "early_stopping"

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
        objective: Objective = VAL_LOSS,
    ) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.restore_best, self.objective = restore_best, objective
        self.best, self.best_epoch, self.bad_epochs = objective.worst, 0, 0
        # The weights and buffers of the best epoch (a checkpoint's arrays after a resume).
        self._best_values: list[NDArray[np.generic]] | None = None
        self._best_buffers: dict[str, NDArray[np.generic]] = {}
        self._best_metrics: dict[str, float] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        # Resumed from the checkpoint of a run that had already ended (and restored): report
        # the restored epoch, as the uninterrupted run did.
        ended = trainer.should_stop or trainer.epoch >= trainer.settings.epochs
        if ended and self.restore_best and self._best_metrics:
            trainer.restored = (self.best_epoch, dict(self._best_metrics))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.objective.key]
        if self.objective.improves(value, self.best, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.restore_best:
                self._best_values = [p.value.copy() for p in trainer.params]
                self._best_buffers = {k: v.copy() for k, v in trainer.model.buffers().items()}
                # What the run will report if this epoch is restored (trainer.restored).
                self._best_metrics = {
                    k: v for k, v in metrics.items() if k.split("/")[0] in RESULTS
                }
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True
                trainer.stop_reason = (
                    f"early stopping: no {self.objective.describe()} improvement for "
                    f"{self.patience} epochs (best {self.best:.4g} at epoch {self.best_epoch})"
                )
        last_epoch = trainer.should_stop or epoch >= trainer.settings.epochs
        if last_epoch and self.restore_best and self._best_values is not None:
            for p, v in zip(trainer.params, self._best_values, strict=True):
                np.copyto(p.value, v)
            for k, v in trainer.model.buffers().items():
                np.copyto(v, self._best_buffers[k])
            trainer.restored = (self.best_epoch, dict(self._best_metrics))

    # The best weights are part of the state: a resumed run must restore the same ones.
    def state_dict(self) -> State:
        state: State = {
            "best": np.asarray(self.best, dtype=np.float64),
            "best_epoch": np.asarray(self.best_epoch),
            "bad_epochs": np.asarray(self.bad_epochs),
        }
        if self._best_values is not None:
            state |= {f"value/{i}": v for i, v in enumerate(self._best_values)}
            state |= {f"buffer/{k}": v for k, v in self._best_buffers.items()}
            state |= {
                f"metric/{k}": np.asarray(v, dtype=np.float64)
                for k, v in self._best_metrics.items()
            }
        return state

    def load_state_dict(self, state: State) -> None:
        self.best = float(state["best"])
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        values = sorted((int(k.split("/")[1]), v) for k, v in state.items() if k[:6] == "value/")
        if values:
            self._best_values = [v.copy() for _, v in values]
            self._best_buffers = {
                k.removeprefix("buffer/"): v.copy() for k, v in state.items() if k[:7] == "buffer/"
            }
            self._best_metrics = {
                k.removeprefix("metric/"): float(v) for k, v in state.items() if k[:7] == "metric/"
            }
