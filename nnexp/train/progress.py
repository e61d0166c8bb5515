"""A progress bar over epochs showing the latest loss and accuracy (tqdm, to stderr)."""

from __future__ import annotations

from nnexp.train.callbacks import Callback


class ProgressBar(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def on_fit_start(self, trainer):
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=trainer.settings.epochs, initial=trainer.epoch, unit="epoch", leave=True
            )

    def on_epoch_end(self, trainer, epoch, metrics):
        if self._bar is None:
            return
        shown = {"loss": "train/loss", "val_loss": "val/loss", "val_acc": "val/acc"}
        shown["val_rmse"] = "val/rmse"
        self._bar.set_postfix(
            {k: f"{metrics[m]:.4g}" for k, m in shown.items() if m in metrics}, refresh=False
        )
        self._bar.update(1)

    def on_fit_end(self, trainer, metrics):
        self._close()

    def on_exception(self, trainer, exc):
        self._close()

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
