"""A progress bar over epochs showing the latest loss and accuracy (tqdm, to stderr). Its clock
is the training's: `nnexp.build` adds it after the tracker, so it starts once MLflow has started
the run, and it closes with the last epoch, before the model is logged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Never

from nnexp.train.callbacks import Callback

if TYPE_CHECKING:
    from tqdm import tqdm

    from nnexp.train.trainer import Trainer


class ProgressBar(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm[Never] | None = None  # a manual bar (update), over no iterable

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=trainer.settings.epochs, initial=trainer.epoch, unit="epoch", leave=True
            )

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self._bar is None:
            return
        shown = {"loss": "train/loss", "val_loss": "val/loss", "val_acc": "val/acc"}
        shown["val_rmse"] = "val/rmse"
        self._bar.set_postfix(
            {k: f"{metrics[m]:.4g}" for k, m in shown.items() if m in metrics}, refresh=False
        )
        self._bar.update(1)
        if epoch >= trainer.settings.epochs or trainer.should_stop:
            self._close()

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
