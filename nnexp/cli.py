"""The Hydra entry point: compose → validate → build → train. Thin on purpose: the work is in
`nnexp.build`, `nnexp.train` and `nnexp.tracking`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Before anything imports MLflow: there is no outside network, and telemetry raced with logging.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import nnexp
from nnexp.config import Config, ConfigError, register_configs
from nnexp.data import DatasetError, validate_spec

register_configs()

USER_ERRORS = (ConfigError, DatasetError, OmegaConfBaseException)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"hidden": [16]}} → {"model.hidden": [16]} (lists stay values)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: node}


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def validated(cfg: DictConfig) -> Config:
    """The config as objects; every schema's value rules run here, before data is touched."""
    obj = OmegaConf.to_object(cfg)
    spec = obj.dataset
    if getattr(spec, "path", ""):
        # Relative data paths mean the user's working directory, wherever Hydra writes outputs.
        spec.path = str(Path(hydra.utils.to_absolute_path(spec.path)))
    validate_spec(spec)
    return obj


def run(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from nnexp.build import build
    from nnexp.train import (
        Checkpointer,
        EarlyStopping,
        ProgressBar,
        Trainer,
        TrainSettings,
        save_bundle,
    )
    from nnexp.train.callbacks import EveryNEpochs

    conf = validated(cfg)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    t, reg = conf.trainer, conf.regularization
    built = build(conf)

    checkpoint_dir = run_dir / "checkpoints"
    callbacks = [Checkpointer(checkpoint_dir, t.checkpoint_every, monitor=t.objective)]
    if reg.early_stopping:
        callbacks.append(EarlyStopping(reg.patience, reg.min_delta, reg.restore_best, t.objective))
    progress = sys.stderr.isatty() if t.progress is None else t.progress
    callbacks.append(ProgressBar(progress))

    def write_bundle(directory: Path) -> Path:
        s = built.splits
        return save_bundle(
            directory,
            built.model,
            mlp_kwargs=built.mlp_kwargs,
            loss=built.loss_name,
            task=s.task,
            classes=s.classes,
            x_mean=s.mean,
            x_scale=s.scale,
            y_mean=built.y_mean,
            y_scale=built.y_scale,
        )

    if conf.tracking.enabled:
        from nnexp.tracking import MlflowTracker

        resolved = OmegaConf.to_container(cfg, resolve=True)
        overrides = list(hydra_cfg.overrides.task)
        tags = {
            "overrides": " ".join(overrides) or "(none)",
            "task": built.splits.task,
            "dataset": conf.dataset.name,
            "nnexp.version": nnexp.__version__,
        }
        commit = git_commit(Path(hydra.utils.get_original_cwd()))
        if commit:
            tags["git.commit"] = commit
        tracker = MlflowTracker(
            uri=conf.tracking.uri,
            experiment=conf.tracking.experiment,
            run_name=conf.tracking.run_name,
            params=flatten(resolved),
            tags=tags,
            run_dir=run_dir,
            checkpoint_dir=checkpoint_dir,
            write_bundle=write_bundle,
            input_example=_raw_rows(built, 5),
            flush_every_s=conf.tracking.flush_every_s,
        )
        callbacks.append(EveryNEpochs(tracker, t.log_every))
    else:
        write_bundle(run_dir / "model")

    settings = TrainSettings(
        epochs=t.epochs,
        batch_size=t.batch_size,
        seed=t.seed,
        l2=reg.l2,
        clip_norm=t.grad_clip.norm,
        clip_value=t.grad_clip.value,
        stats=tuple(t.stats),
        stats_every=t.stats_every,
        nan_policy=t.nan_policy,
        objective=t.objective,
    )
    trainer = Trainer(
        built.model, built.loss, built.optimizer, built.schedule, built.data, settings, callbacks
    )
    final = trainer.fit()
    _report(final, trainer)
    return float(final.get(t.objective, float("nan")))


def _raw_rows(built, n: int):
    """A few training inputs in the user's original units (the model standardizes itself)."""
    s = built.splits
    rows = s.X_train[:n].astype("float64")
    return rows * s.scale + s.mean if s.mean is not None else rows


def _report(final: dict[str, float], trainer) -> None:
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in final.items() if k.split("/")[0] in ("train", "val", "test")
    )
    stop = f" ({trainer.stop_reason})" if trainer.stop_reason else ""
    print(f"nnexp: {trainer.epoch} epochs{stop}: {shown}")


@hydra.main(version_base="1.3", config_path="pkg://nnexp.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return run(cfg)
    except USER_ERRORS as exc:
        # A mistake in the config or the data: one clear line, no traceback, non-zero exit.
        print(f"nnexp: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
