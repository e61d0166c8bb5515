"""nnexp.train — the trainer loop and its callbacks (checkpoints, early stopping, progress). It
trains on an `nnexp.data.Splits`."""

from nnexp.train.callbacks import Callback
from nnexp.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_history,
    restore,
    save_checkpoint,
    trainer_state,
)
from nnexp.train.checkpointer import Checkpointer
from nnexp.train.divergence import NonFiniteError
from nnexp.train.early_stopping import EarlyStopping
from nnexp.train.export import Predictor, save_bundle
from nnexp.train.progress import ProgressBar
from nnexp.train.trainer import Trainer, TrainSettings

__all__ = [
    "Callback",
    "CheckpointError",
    "Checkpointer",
    "EarlyStopping",
    "NonFiniteError",
    "Predictor",
    "ProgressBar",
    "TrainSettings",
    "Trainer",
    "load_checkpoint",
    "load_history",
    "restore",
    "save_bundle",
    "save_checkpoint",
    "trainer_state",
]
