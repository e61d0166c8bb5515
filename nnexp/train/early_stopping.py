"""Stop when the monitored validation metric stops improving; optionally restore the best
weights (before test metrics are computed)."""

from __future__ import annotations

import math

import numpy as np

from nnexp.train.callbacks import Callback


class EarlyStopping(Callback):
    state_key = "early_stopping"

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
        monitor: str = "val/loss",
    ) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.restore_best, self.monitor = restore_best, monitor
        self.best, self.best_epoch, self.bad_epochs = math.inf, 0, 0
        self._best_values: list[np.ndarray] | None = None
        self._best_buffers: dict[str, np.ndarray] = {}

    def on_epoch_end(self, trainer, epoch, metrics):
        value = metrics[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.restore_best:
                self._best_values = [p.value.copy() for p in trainer.params]
                self._best_buffers = {k: v.copy() for k, v in trainer.model.buffers().items()}
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True
                trainer.stop_reason = f"early stopping: no {self.monitor} improvement for " + (
                    f"{self.patience} epochs (best {self.best:.4g} at epoch {self.best_epoch})"
                )
        last_epoch = trainer.should_stop or epoch >= trainer.settings.epochs
        if last_epoch and self.restore_best and self._best_values is not None:
            for p, v in zip(trainer.params, self._best_values, strict=True):
                np.copyto(p.value, v)
            for k, v in trainer.model.buffers().items():
                np.copyto(v, self._best_buffers[k])
            metrics["best_epoch"] = float(self.best_epoch)

    # The best weights are part of the state: a resumed run must restore the same ones.
    def state_dict(self):
        state = {
            "best": np.asarray(self.best, dtype=np.float64),
            "best_epoch": np.asarray(self.best_epoch),
            "bad_epochs": np.asarray(self.bad_epochs),
        }
        if self._best_values is not None:
            state |= {f"value/{i}": v for i, v in enumerate(self._best_values)}
            state |= {f"buffer/{k}": v for k, v in self._best_buffers.items()}
        return state

    def load_state_dict(self, state):
        self.best = float(state["best"])
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        values = sorted((int(k.split("/")[1]), v) for k, v in state.items() if k[:6] == "value/")
        if values:
            self._best_values = [v.copy() for _, v in values]
            self._best_buffers = {
                k.removeprefix("buffer/"): v.copy() for k, v in state.items() if k[:7] == "buffer/"
            }
