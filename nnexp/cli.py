"""The Hydra entry point: compose → validate → build → train. Thin on purpose: the work is in
`nnexp.build`, `nnexp.train` and `nnexp.tracking`."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
from collections.abc import Sequence
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
from nnexp.names import TAG_RESUME_KEY
from nnexp.objective import Objective
from nnexp.resume import ResumeError, job_overrides, plan_resume, resume_key
from nnexp.timing import phase
from nnexp.tracking.server import TrackingUnavailable, check_reachable
from nnexp.train.blas import blas_tags, deterministic_blas
from nnexp.train.callbacks import Callback
from nnexp.train.checkpoint import CheckpointError
from nnexp.train.divergence import NonFiniteError

register_configs()

USER_ERRORS = (ConfigError, DatasetError, OmegaConfBaseException, CheckpointError, ResumeError)
# A run that fails with one clear line (no traceback) exits with a code saying which kind:
# 2 a bad config, data file, checkpoint or resume target; 3 diverged; 4 no tracking store.
EXIT_CODES: dict[type[BaseException], int] = {NonFiniteError: 3, TrackingUnavailable: 4}
EXIT_CODES |= dict.fromkeys(USER_ERRORS, 2)


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


def validate_shared(cfg: DictConfig, swept: Sequence[str]) -> None:
    """Run by the sweep callback before a multirun's first job: a bad value that every job
    shares fails the sweep at once (exit 2). An error naming a swept key is left to the jobs,
    where the swept value decides (``dataset.path=a.csv,b.csv`` has no valid base value)."""
    try:
        validated(cfg)
    except USER_ERRORS as exc:
        if any(key in str(exc) for key in swept):
            return
        print(f"nnexp: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(cfg: DictConfig) -> float:
    conf = validated(cfg)
    with deterministic_blas(conf.trainer.deterministic):
        return _run(cfg, conf)


def _run(cfg: DictConfig, conf: Config) -> float:
    from hydra.core.hydra_config import HydraConfig

    from nnexp.build import build
    from nnexp.train import (
        Checkpointer,
        EarlyStopping,
        ProgressBar,
        Trainer,
        TrainSettings,
        load_checkpoint,
        load_history,
        restore,
        save_bundle,
    )
    from nnexp.train.callbacks import EveryNEpochs

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    t, reg = conf.trainer, conf.regularization
    overrides = job_overrides(hydra_cfg.overrides.task)  # trainer.resume is not the job's
    if conf.tracking.enabled:
        uri = conf.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            check_reachable(uri)  # seconds, not MLflow's minutes of retries; before the data
    plan, state = None, None
    if t.resume:
        resume = t.resume.strip()
        if resume != "last" and not resume.startswith("runs:/"):
            resume = hydra.utils.to_absolute_path(resume)
        plan = plan_resume(
            resume,
            tracking_enabled=conf.tracking.enabled,
            tracking_uri=conf.tracking.uri,
            experiment=conf.tracking.experiment,
            key=resume_key(overrides),
            download_dir=run_dir / "resume-download",
        )
        print(f"nnexp: {plan.note}", file=sys.stderr)
        if plan.skip:
            return float(plan.run.data.metrics.get(t.objective, float("nan")))
        if plan.checkpoint:
            state = load_checkpoint(plan.checkpoint)  # a bad file fails before the data loads
    with phase("data + model"):
        built = build(conf)

    checkpoint_dir = (plan and plan.checkpoint_dir) or run_dir / "checkpoints"
    # Early stopping before the checkpointer: the checkpoint carries its state of this epoch.
    objective = t.objective_spec()
    callbacks = []
    if reg.early_stopping:
        callbacks.append(EarlyStopping(reg.patience, reg.min_delta, reg.restore_best, objective))
    callbacks.append(
        Checkpointer(
            checkpoint_dir,
            t.checkpoint_every,
            objective=objective,
            save_every_s=t.checkpoint_every_s,
        )
    )
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

    from nnexp.tracking.sweep import in_multirun

    single_run = not in_multirun()
    if conf.tracking.enabled:
        from nnexp.tracking import MlflowTracker
        from nnexp.tracking.sweep import current_job

        sweep = current_job(conf.tracking.experiment)  # None unless a job of a tracked sweep

        resolved = OmegaConf.to_container(cfg, resolve=True)
        tags = {
            TAG_RESUME_KEY: resume_key(overrides),
            "overrides": " ".join(overrides) or "(none)",
            "task": built.splits.task,
            "dataset": conf.dataset.name,
            "nnexp.version": nnexp.__version__,
            # What the numbers depend on beyond the seeds (nnexp.train.blas).
            "nnexp.deterministic": str(t.deterministic).lower(),
            **blas_tags(),
        }
        commit = git_commit(Path(hydra.utils.get_original_cwd()))
        if commit:
            tags["git.commit"] = commit
        if sweep:
            tags |= sweep.tags
        tracker = MlflowTracker(
            uri=conf.tracking.uri,
            experiment=conf.tracking.experiment,
            run_name=conf.tracking.run_name or (sweep.run_name if sweep else None),
            parent_run_id=sweep.parent_run_id if sweep else None,
            params=flatten(resolved),
            tags=tags,
            run_dir=run_dir,
            checkpoint_dir=checkpoint_dir,
            write_bundle=write_bundle,
            input_example=_raw_rows(built, 5),
            flush_every_s=conf.tracking.flush_every_s,
            resume_run_id=plan.run_id if plan else None,
            log_every=t.log_every,
            retry_every_s=conf.tracking.retry_every_s,
            plot_worker=sweep is None and single_run,  # see PlotWorker
        )
        callbacks.append(EveryNEpochs(tracker, t.log_every))
    else:
        write_bundle(run_dir / "model")

    callbacks.append(_SetAsideStartupObjects(single_run))
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
    if state is not None:
        restore(trainer, state, source=f"checkpoint {plan.checkpoint}")
        trainer.history = load_history(plan.checkpoint.parent, trainer.epoch)
    with phase("training"):
        final = trainer.fit()
    _report(final, trainer)
    if trainer.diverged:  # nan_policy=stop: the run is FAILED (diverged), the process goes on
        print(f"nnexp: warning: {trainer.diverged}", file=sys.stderr)
        return objective.failed_value
    return float(final.get(t.objective, float("nan")))


class _SetAsideStartupObjects(Callback):
    """Last of the callbacks, so it runs once the tracker has imported MLflow and opened the
    store, and only where `nnexp.__main__` turned the cyclic collector off for the start-up:
    turns it back on, and in a single run first exempts what exists by then (modules, configs,
    ORM mappings, the run's own objects: all of it lives until the process exits) from its
    full passes. The start-up's own garbage (~20k objects, a few MB) is set aside with it
    rather than paying a full collection of everything (0.2 s). A multirun only turns it back
    on: a job's objects die with the job, and frozen ones would never be collected."""

    def __init__(self, single_run: bool) -> None:
        self.single_run = single_run

    def on_fit_start(self, trainer) -> None:
        if gc.isenabled():  # a library call, a joblib worker, a later job of a sweep
            return
        if self.single_run:
            gc.freeze()
        gc.enable()


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


def failed_value(cfg: DictConfig) -> float:
    """What a failed sweep job returns: finite, never the best in the objective's direction
    (the config may be the reason it failed: then the direction of its objective name, or
    a loss's)."""
    trainer = cfg.get("trainer") or {}
    try:
        objective = Objective.of(
            str(trainer.get("objective", "val/loss")), str(trainer.get("objective_mode", "auto"))
        )
    except (ValueError, OmegaConfBaseException):
        objective = Objective()
    return objective.failed_value


@hydra.main(version_base="1.3", config_path="pkg://nnexp.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from nnexp.tracking.sweep import in_multirun

    try:
        objective = run(cfg)
    except tuple(EXIT_CODES) as exc:
        # A mistake in the config or the data, a divergence, no tracking store: one clear
        # line, no traceback, a non-zero exit that says which.
        code = next(c for kind, c in EXIT_CODES.items() if isinstance(exc, kind))
        print(f"nnexp: error: {exc}", file=sys.stderr)
        if code in (2, 3) and in_multirun():
            # This job's own failure (shared config mistakes failed before the first job):
            # the sweep goes on, and the sweeper gets a finite, never-best objective.
            if code == 2:
                _record_failed_job(cfg, exc)
            return failed_value(cfg)
        raise SystemExit(code) from None
    except MemoryError as exc:  # a huge n_samples or layer: NumPy refuses the allocation
        print(
            f"nnexp: error: out of memory ({exc}); reduce dataset.n_samples, model.hidden "
            "or trainer.batch_size",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    if in_multirun() and not math.isfinite(objective):
        return failed_value(cfg)  # sweepers reject NaN
    return objective


def _record_failed_job(cfg: DictConfig, exc: BaseException) -> None:
    """A FAILED run for a sweep job that failed before training, so no job goes missing."""
    from hydra.core.hydra_config import HydraConfig

    from nnexp.tracking.sweep import current_job, record_failed_job

    tracking = cfg.get("tracking") or {}
    if not tracking.get("enabled", True):
        return
    experiment = str(tracking.get("experiment", "nnexp"))
    overrides = " ".join(HydraConfig.get().overrides.task) or "(none)"
    try:
        record_failed_job(
            uri=tracking.get("uri"),
            experiment=experiment,
            job=current_job(experiment),
            tags={"overrides": overrides, "nnexp.version": nnexp.__version__},
            error=exc,
        )
    except Exception as error:  # the job's own error is the one to report
        print(f"WARNING nnexp: could not record the failed job in MLflow: {error}", file=sys.stderr)
