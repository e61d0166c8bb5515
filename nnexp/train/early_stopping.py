"""Stop when the monitored validation metric stops improving; optionally restore the best
weights (before test metrics are computed)."""

from __future__ import annotations

import math

import numpy as np

from nnexp.train.callbacks import Callback


class EarlyStopping(Callback):
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
