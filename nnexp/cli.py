"""The Hydra entry point: compose → validate → build → train, and every failure mapped to one
clear line and an exit code. The objects come from `nnexp.build` (the composition root)."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

# Before anything imports MLflow: there is no outside network, and telemetry raced with logging.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import nnexp
from nnexp.build import Job, build, build_trainer
from nnexp.composition import composed
from nnexp.config import Config, ConfigError, register_configs
from nnexp.data import DatasetError, validate_spec
from nnexp.objective import Objective
from nnexp.resume import (
    ResumeError,
    ResumePlan,
    job_overrides,
    lineage_key,
    plan_resume,
    resume_key,
)
from nnexp.timing import phase
from nnexp.tracking.server import TrackingUnavailable
from nnexp.tracking.store import prepare_store
from nnexp.train.blas import deterministic_blas
from nnexp.train.callbacks import Callback
from nnexp.train.checkpoint import CheckpointError, stopped_early
from nnexp.train.divergence import NonFiniteError
from nnexp.train.trainer import RESULTS

register_configs()
# Every line a run prints goes through here (worded for the terminal: "nnexp: ..."): Hydra's job
# logging shows it and keeps it in the job's log (conf/hydra/job_logging/nnexp.yaml).
log = logging.getLogger("nnexp")

USER_ERRORS = (ConfigError, DatasetError, OmegaConfBaseException, CheckpointError, ResumeError)
# A run that fails with one clear line (no traceback) exits with a code saying which kind:
# 2 a bad config, data file, checkpoint or resume target, or a file that cannot be read or
# written (permissions, a full disk: OSError); 3 diverged; 4 no usable tracking store.
EXIT_CODES: dict[type[BaseException], int] = {NonFiniteError: 3, TrackingUnavailable: 4}
EXIT_CODES |= dict.fromkeys((*USER_ERRORS, OSError), 2)


def validated(cfg: DictConfig) -> Config:
    """The config as objects; every schema's value rules run here, before data is touched."""
    obj = composed(cfg, _overrides())  # with no +unknown keys, booleans as booleans
    spec = obj.dataset
    if getattr(spec, "path", ""):
        # Relative data paths mean the user's working directory, wherever Hydra writes outputs.
        spec.path = str(Path(hydra.utils.to_absolute_path(spec.path)))
    validate_spec(spec)
    return obj


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


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


# Made and added last to every run's callbacks: the process's own (nnexp.__main__ adds its
# garbage-collection policy here).
PROCESS_CALLBACKS: list[Callable[[], Callback]] = []


def run(cfg: DictConfig) -> float:
    """One job: validate, build, train; returns the objective (for sweepers)."""
    conf = validated(cfg)
    with deterministic_blas(conf.trainer.deterministic):
        return _run(cfg, conf)


def _run(cfg: DictConfig, conf: Config) -> float:
    from nnexp.train import load_checkpoint, load_history, restore

    job = _job(cfg)
    if conf.extras.print_config:
        from nnexp.config_tree import print_config_tree

        print_config_tree(job.resolved, job.run_dir, color=sys.stdout.isatty())
    if conf.tracking.enabled:  # the store and experiment, under sqlite's lock; before the data
        with phase("tracking: open store"):
            prepare_store(conf.tracking.uri, conf.tracking.experiment)
    plan = _plan_resume(conf, job, conf.trainer.resume) if conf.trainer.resume else None
    if plan and plan.skip:
        return float(plan.run.data.metrics.get(conf.trainer.objective, float("nan")))
    checkpoint = plan.checkpoint if plan else None
    state = load_checkpoint(checkpoint) if checkpoint else None
    if plan and plan.extends is not None and state is not None and stopped_early(state):
        print(f"nnexp: nothing to extend: {stopped_early(state)}", file=sys.stderr)
        return float(plan.run.data.metrics.get(conf.trainer.objective, float("nan")))
    with phase("data + model"):  # a bad checkpoint failed above, before the data loads
        built = build(conf)
    trainer = build_trainer(conf, built, job)
    if checkpoint is not None and state is not None:
        restore(trainer, state, source=f"checkpoint {checkpoint}")
        trainer.history = load_history(checkpoint.parent, trainer.epoch)
    try:
        with phase("training"):
            final = trainer.fit()
    except BaseException:
        _say_where(trainer, job)  # a failed run is recorded too: before its error line
        raise
    _report(final, trainer)
    if trainer.diverged:  # nan_policy=stop: the run is FAILED (diverged), the process goes on
        log.warning(f"nnexp: warning: {trainer.diverged}")
    _say_where(trainer, job)  # the run's last line
    if trainer.diverged:
        return conf.trainer.objective_spec().failed_value
    return float(final.get(conf.trainer.objective, float("nan")))


def _say_where(trainer, job: Job) -> None:
    """One line: where the run went (`nnexp.tracking.where`); a sweep's job in short (the
    sweep says where the sweep went). Nothing if tracking failed before the run existed."""
    from nnexp.tracking import MlflowTracker
    from nnexp.tracking.where import untracked_line

    output_dir = _shown(job.run_dir)
    trackers = [getattr(c, "inner", c) for c in trainer.callbacks]  # EveryNEpochs wraps it
    tracker = next((t for t in trackers if isinstance(t, MlflowTracker)), None)
    if tracker is None:
        log.info(f"nnexp: {untracked_line(output_dir)}")
    elif (place := tracker.place(output_dir)) is not None:
        log.info(f"nnexp: {place.job_line(job.sweep.run_name) if job.sweep else place.line()}")


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is inside it (shorter, and what the
    user types there), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _job(cfg: DictConfig) -> Job:
    """This job as Hydra sees it, in plain values."""
    from hydra.core.hydra_config import HydraConfig

    from nnexp.tracking.sweep import current_job, in_multirun

    hydra_cfg = HydraConfig.get()
    overrides = job_overrides(hydra_cfg.overrides.task)  # trainer.resume is not the job's
    tracking = cfg.tracking
    return Job(
        run_dir=Path(hydra_cfg.runtime.output_dir),
        overrides=overrides,
        resolved=cast("dict[str, Any]", OmegaConf.to_container(cfg, resolve=True)),
        source_dir=Path(hydra.utils.get_original_cwd()),
        resume_key=resume_key(overrides),
        lineage_key=lineage_key(overrides),
        single_run=not in_multirun(),
        # None unless a job of a tracked sweep
        sweep=current_job(tracking.experiment) if tracking.enabled else None,
        process_callbacks=list(PROCESS_CALLBACKS),
    )


def _plan_resume(conf: Config, job: Job, resume: str) -> ResumePlan:
    """Where `resume` (`trainer.resume`) points; the job then continues that run's checkpoints."""
    resume = resume.strip()
    if resume != "last" and not resume.startswith("runs:/"):
        resume = hydra.utils.to_absolute_path(resume)
    plan = plan_resume(
        resume,
        tracking_enabled=conf.tracking.enabled,
        tracking_uri=conf.tracking.uri,
        experiment=conf.tracking.experiment,
        key=job.resume_key,
        download_dir=job.run_dir / "resume-download",
        # a single run may extend a finished run of the same job to more epochs; a sweep's
        # job only continues its own (two jobs that differ in trainer.epochs are two runs)
        extend=(job.lineage_key, conf.trainer.epochs) if job.single_run else None,
    )
    log.info(f"nnexp: {plan.note}")
    job.checkpoint_dir, job.resume_run_id = plan.checkpoint_dir, plan.run_id
    return plan


def _report(final: dict[str, float], trainer) -> None:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in final.items() if k.split("/")[0] in RESULTS)
    stop = f" ({trainer.stop_reason})" if trainer.stop_reason else ""
    log.info(f"nnexp: {trainer.epoch} epochs{stop}: {shown}")


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
        log.error(f"nnexp: error: {exc}")
        if code in (2, 3) and in_multirun():
            # This job's own failure (shared config mistakes failed before the first job):
            # the sweep goes on, and the sweeper gets a finite, never-best objective.
            if code == 2:
                _record_failed_job(cfg, exc)
            return failed_value(cfg)
        raise SystemExit(code) from None
    except MemoryError as exc:  # a huge n_samples or layer: NumPy refuses the allocation
        log.error(
            f"nnexp: error: out of memory ({exc}); reduce dataset.n_samples, model.hidden "
            "or trainer.batch_size"
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
        log.warning(f"WARNING nnexp: could not record the failed job in MLflow: {error}")
