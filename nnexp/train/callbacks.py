"""Trainer events. The trainer knows nothing about MLflow, progress bars or files: everything
that watches or steers a run is a `Callback`, called in list order.

Events and what they receive:
- on_fit_start(trainer)                     before the first epoch (after a resume: the next one)
- on_batch_end(trainer, step, loss)         after each optimizer step; step is global, from 1
- on_epoch_end(trainer, epoch, metrics)     metrics: {"train/loss": .., "val/loss": .., ...}
- on_fit_end(trainer, metrics)              final metrics, including test/*
- on_exception(trainer, exc)                the run raised (then the exception propagates)

A callback may set ``trainer.should_stop = True`` to end training after the current epoch.
A callback whose state steers training (early stopping's best value, ...) sets `state_key` and
implements `state_dict` / `load_state_dict`: checkpoints carry it, so a resumed run continues
exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from nnexp.train.trainer import Trainer

# Arrays by name, as a checkpoint holds them: weights, step counts, JSON text (any dtype).
State: TypeAlias = dict[str, NDArray[np.generic]]


class Callback:
    state_key: str | None = None  # set by callbacks with state to checkpoint

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        pass

    def on_fit_start(self, trainer: Trainer) -> None:
        pass

    def on_batch_end(self, trainer: Trainer, step: int, loss: float) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        pass

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        pass


class EveryNEpochs(Callback):
    """Forward epoch events to `inner` only every `n` epochs (and on the last epoch); every other
    event passes through. For logging less often without touching the logger."""

    def __init__(self, inner: Callback, n: int) -> None:
        self.inner, self.n = inner, n

    def on_fit_start(self, trainer: Trainer) -> None:
        self.inner.on_fit_start(trainer)

    def on_batch_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.inner.on_batch_end(trainer, step, loss)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        last = epoch >= trainer.settings.epochs or trainer.should_stop
        if epoch % self.n == 0 or last:
            self.inner.on_epoch_end(trainer, epoch, metrics)

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.inner.on_fit_end(trainer, metrics)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.inner.on_exception(trainer, exc)
