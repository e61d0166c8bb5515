"""The composition root: config → every object of a run. Data, network, loss, optimizer and
schedule (`build`), then the trainer with its callbacks and the MLflow tracker (`build_trainer`).
No Hydra here: the input is the validated config object tree (`nnexp.config.Config` after
`OmegaConf.to_object`) and a `Job` (where the job runs, what it was asked, as plain values).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import nnexp
from nnexp import train
from nnexp.config import Config, ConfigError, is_hyperparameter, user_tags
from nnexp.data import Splits, dataset_source, prepare
from nnexp.names import (
    TAG_DATASET,
    TAG_DOCTOR_FAILING,
    TAG_DOCTOR_FINDINGS,
    TAG_LINEAGE_KEY,
    TAG_N_CLASSES,
    TAG_OVERRIDES,
    TAG_RESUME_KEY,
    TAG_TASK,
    TAG_VERSION,
)
from nnexp.nn import LOSSES, OPTIMIZERS, SCHEDULES, Loss, Optimizer, Schedule, Sequential, mlp
from nnexp.train import Callback, TrainSettings
from nnexp.train.blas import blas_tags
from nnexp.train.callbacks import EveryNEpochs

if TYPE_CHECKING:
    from nnexp.tracking.inputs import DatasetRecord

# Which fused loss a task gets with model.output=auto, and which tasks each loss can serve.
AUTO_LOSS = {"binary": "sigmoid_bce", "multiclass": "softmax_cross_entropy", "regression": "mse"}
LOSS_TASKS = {
    "sigmoid_bce": {"binary"},
    "softmax_cross_entropy": {"binary", "multiclass"},
    "mse": {"regression"},
}


@dataclass
class Built:
    splits: Splits  # as prepared: the targets in their own units
    data: Splits  # what the trainer trains on: regression targets standardized
    model: Sequential
    mlp_kwargs: dict[str, Any]
    loss: Loss
    loss_name: str
    optimizer: Optimizer
    schedule: Schedule
    y_mean: np.ndarray | float | None
    y_scale: np.ndarray | float | None


def choose_loss(cfg: Config, task: str) -> str:
    name = AUTO_LOSS[task] if cfg.model.output == "auto" else cfg.model.output
    if task not in LOSS_TASKS[name]:
        raise ConfigError(
            f"model.output={cfg.model.output!r}: cannot serve a {task} dataset "
            f"({cfg.dataset.name}); use auto or one of "
            + ", ".join(k for k, tasks in LOSS_TASKS.items() if task in tasks)
        )
    return name


def result_metrics(task: str) -> tuple[str, ...]:
    """The train/ and val/ metrics a run of `task` logs every epoch (what can be an objective)."""
    quality = ("train/acc", "val/acc") if task != "regression" else ("val/rmse",)
    return ("train/loss", "val/loss", *quality)


def check_objective(cfg: Config, task: str) -> None:
    allowed = result_metrics(task)
    if cfg.trainer.objective not in allowed:
        raise ConfigError(
            f"trainer.objective={cfg.trainer.objective!r}: a {task} run ({cfg.dataset.name}) "
            f"logs {', '.join(allowed)}"
        )


def n_outputs(loss: str, splits: Splits) -> int:
    if loss == "softmax_cross_entropy":
        assert splits.n_classes is not None  # a classification set's splits count its classes
        return int(splits.n_classes)
    if loss == "sigmoid_bce":
        return 1
    return 1 if splits.y_train.ndim == 1 else splits.y_train.shape[1]


def mlp_kwargs(cfg: Config, in_features: int, out_features: int) -> dict[str, Any]:
    m, reg = cfg.model, cfg.regularization
    init_kwargs = {}
    if m.init_scale is not None:
        init_kwargs = {"std" if m.init == "normal" else "limit": m.init_scale}
    return {
        "in_features": in_features,
        "hidden": list(m.hidden),
        "out_features": out_features,
        "activation": m.activation,
        "activation_kwargs": {} if m.alpha is None else {"alpha": m.alpha},
        "init": m.init,
        "init_kwargs": init_kwargs,
        "dropout": reg.dropout_of(m),
        "batch_norm": reg.batch_norm_of(m),
        "residual": m.residual,
        "dtype": cfg.trainer.master_dtype(),
        "seed": cfg.trainer.seed,
    }


def _hyperparameters(node: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(node).items() if k != "name"}


def build_schedule(cfg: Config) -> Schedule:
    kwargs = _hyperparameters(cfg.schedule)
    if "total" in kwargs and kwargs["total"] is None:
        kwargs["total"] = cfg.trainer.epochs
    if cfg.schedule.name == "plateau":  # it watches the objective: it must know which way is up
        kwargs["mode"] = cfg.trainer.objective_spec().direction
    return SCHEDULES.lookup(cfg.schedule.name)(cfg.optimizer.lr, **kwargs)


def build_optimizer(cfg: Config, model: Sequential) -> Optimizer:
    return OPTIMIZERS.lookup(cfg.optimizer.name)(
        list(model.parameters()), **_hyperparameters(cfg.optimizer)
    )


def overfit_rows(cfg: Config) -> int | None:
    """How many training rows a run trains on: with trainer.overfit_batches, the same first
    N * batch_size rows every epoch (the split is already shuffled, and stratified for
    classification); else None: all."""
    n = cfg.trainer.overfit_batches
    return n * cfg.trainer.batch_size if n else None


def build(cfg: Config) -> Built:
    dtype = np.dtype(cfg.trainer.master_dtype())
    schedule = build_schedule(cfg)  # fails on a bad schedule before the data is loaded
    splits = prepare(cfg.dataset, dtype=dtype)
    check_objective(cfg, splits.task)
    loss_name = choose_loss(cfg, splits.task)
    loss = LOSSES.lookup(loss_name)()
    y_mean = y_scale = None
    ys = [splits.y_train, splits.y_val, splits.y_test]
    if not splits.classification:
        # Regression targets train standardized (a target in the hundreds makes the first MSE
        # gradients explode); the Predictor and the reported RMSE undo it.
        y_mean = splits.y_train.mean(axis=0)
        y_scale = splits.y_train.std(axis=0)
        y_scale = np.where(y_scale > 0, y_scale, 1.0) if np.ndim(y_scale) else (y_scale or 1.0)
        ys = [((y - y_mean) / y_scale).astype(dtype) for y in ys]
    kwargs = mlp_kwargs(cfg, splits.n_features, n_outputs(loss_name, splits))
    model = mlp(**kwargs)
    loss.check_targets(ys[0], kwargs["out_features"])
    rows = overfit_rows(cfg)
    data = replace(
        splits,
        X_train=splits.X_train if rows is None else splits.X_train[:rows],
        y_train=ys[0] if rows is None else ys[0][:rows],
        y_val=ys[1],
        y_test=ys[2],
        y_scale=1.0 if y_scale is None else y_scale,
    )
    optimizer = build_optimizer(cfg, model)
    return Built(splits, data, model, kwargs, loss, loss_name, optimizer, schedule, y_mean, y_scale)


# --- the trainer and its callbacks -----------------------------------------------------------


@dataclass
class Job:
    """Where a job runs and what it was asked (Hydra's side of a run, as plain values)."""

    run_dir: Path
    overrides: list[str]  # the job's own (trainer.resume is not part of what it trains)
    resolved: Mapping[str, Any]  # the whole resolved config, for the run's params
    source_dir: Path  # where the user started it (its git state: nnexp.tracking.context)
    resume_key: str
    lineage_key: str = ""  # resume_key without trainer.epochs (a finished run to extend)
    single_run: bool = True
    sweep: Any = None  # nnexp.tracking.sweep.SweepJob of a tracked sweep's job
    checkpoint_dir: Path | None = None  # a resumed run's (default: run_dir/checkpoints)
    resume_run_id: str | None = None  # the MLflow run a resumed job reopens
    # Called with the trainer's callbacks last (the process's own, e.g. the GC policy).
    process_callbacks: list[Callable[[], Callback]] = field(default_factory=list)

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.run_dir / "checkpoints"


def train_settings(cfg: Config) -> TrainSettings:
    t, reg = cfg.trainer, cfg.regularization
    return TrainSettings(
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
        precision=t.precision_of(),
        loss_scale=t.loss_scale or "dynamic",
        limit_batches=t.limit_batches,
    )


def build_trainer(cfg: Config, built: Built, job: Job) -> train.Trainer:
    """The trainer of `built`, with its callbacks in the order they must run: early stopping
    before the checkpointer (a checkpoint carries its state of the epoch), the doctor's verdict
    before the tracker ends the run (its tag then goes the way of the run's other data, through
    the offline spool when the store is away), the progress bar after the tracker has started
    the run (its clock and rate are the training's, not MLflow's start-up), then the process's
    own."""
    t = cfg.trainer
    objective = t.objective_spec()
    callbacks: list[Callback] = []
    stopping = cfg.early_stopping()  # trainer.early_stopping, or its regularization alias
    if stopping is not None:
        callbacks.append(
            train.EarlyStopping(
                stopping.patience, stopping.min_delta, stopping.restore_best, objective
            )
        )
    callbacks.append(
        train.Checkpointer(
            job.checkpoints,
            t.checkpoint_every,
            objective=objective,
            save_every_s=t.checkpoint_every_s,
            keep=t.checkpoint_keep or None,  # 0: every epoch file stays
        )
    )
    tracker = build_tracker(cfg, built, job) if cfg.tracking.enabled else None
    callbacks.append(doctor_verdict(built, job, tracker))
    if tracker is not None:
        callbacks.append(EveryNEpochs(tracker, t.log_every))
    else:
        bundle_writer(built)(job.run_dir / "model")
    callbacks.append(train.ProgressBar(_progress(t.progress)))
    callbacks += [make() for make in job.process_callbacks]
    return train.Trainer(
        built.model,
        built.loss,
        built.optimizer,
        built.schedule,
        built.data,
        train_settings(cfg),
        callbacks,
    )


def doctor_verdict(built: Built, job: Job, tracker: Any = None) -> Callback:
    """The doctor's one-line verdict as the run ends; the findings' codes go to the tracker's
    run as its ``doctor.findings`` tag, the failing ones' to ``doctor.failing``, in one batch
    sent (or spooled, when the store is away) like the run's other tags."""
    from nnexp.train.diagnosis import DoctorVerdict, failing_tag, findings_tag

    def tag(findings: list) -> None:
        if tracker is not None and tracker.run_id is not None:
            tracker.send_tags(
                {
                    TAG_DOCTOR_FINDINGS: findings_tag(findings),
                    TAG_DOCTOR_FAILING: failing_tag(findings),
                }
            )

    s = built.splits
    return DoctorVerdict(flatten(job.resolved), s.task, s.n_classes, tag)


def _progress(setting: bool | None) -> bool:
    return sys.stderr.isatty() if setting is None else setting


def bundle_writer(built: Built) -> Callable[[Path], Path]:
    """Writes the model bundle (weights, architecture, standardization, labels) to a directory."""

    def write(directory: Path) -> Path:
        s = built.splits
        return train.save_bundle(
            directory,
            built.model,
            mlp_kwargs=built.mlp_kwargs,
            loss=built.loss_name,
            task=s.task,
            classes=s.classes,
            features=s.feature_names,
            x_mean=s.mean,
            x_scale=s.scale,
            y_mean=built.y_mean,
            y_scale=built.y_scale,
        )

    return write


def build_tracker(cfg: Config, built: Built, job: Job) -> Callback:
    from nnexp.tracking import MlflowTracker

    sweep = job.sweep
    return MlflowTracker(
        uri=cfg.tracking.uri,
        experiment=cfg.tracking.experiment,
        run_name=cfg.tracking.run_name or (sweep.run_name if sweep else None),
        parent_run_id=sweep.parent_run_id if sweep else None,
        params=hyperparameters(job.resolved),
        tags=run_tags(cfg, built, job),
        project_dir=job.source_dir,
        dataset=dataset_record(cfg, built),
        n_params=sum(p.value.size for p in built.model.parameters()),
        run_dir=job.run_dir,
        checkpoint_dir=job.checkpoints,
        write_bundle=bundle_writer(built),
        input_example=raw_rows(built.splits, 5),
        register_as=cfg.tracking.register_as or None,
        flush_every_s=cfg.tracking.flush_every_s,
        resume_run_id=job.resume_run_id,
        log_every=cfg.trainer.log_every,
        retry_every_s=cfg.tracking.retry_every_s,
        plot_worker=sweep is None and job.single_run,  # see PlotWorker
        checkpoint_keep=cfg.trainer.checkpoint_keep or None,
    )


def run_tags(cfg: Config, built: Built, job: Job) -> dict[str, str]:
    """nnexp's tags of a run and the user's (config key ``tags``); MLflow's context tags (user,
    source, git) are added by the tracker as it creates the run (`nnexp.tracking.context`)."""
    tags = user_tags(cfg.tags) | {
        TAG_RESUME_KEY: job.resume_key,
        TAG_LINEAGE_KEY: job.lineage_key,
        TAG_OVERRIDES: " ".join(job.overrides) or "(none)",
        TAG_TASK: built.splits.task,
        TAG_DATASET: cfg.dataset.name,
        TAG_VERSION: nnexp.__version__,
        # What the numbers depend on beyond the seeds (nnexp.train.blas).
        "nnexp.deterministic": str(cfg.trainer.deterministic).lower(),
        **blas_tags(),
    }
    if built.splits.n_classes:  # the doctor's chance level
        tags[TAG_N_CLASSES] = str(built.splits.n_classes)
    if job.sweep:
        tags |= job.sweep.tags
    return tags


def hyperparameters(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A run's MLflow params: the resolved config's hyperparameters as dotted keys
    (`nnexp.config.is_hyperparameter`); the whole config is the run's config.yaml."""
    return {k: v for k, v in flatten(resolved).items() if is_hyperparameter(k)}


def dataset_record(cfg: Config, built: Built) -> DatasetRecord:
    """The splits the network trains and is evaluated on (the targets in their own units), for
    the run's MLflow inputs."""
    from nnexp.tracking.inputs import DatasetRecord

    d = built.splits
    return DatasetRecord(
        name=cfg.dataset.name,
        source=dataset_source(cfg.dataset),
        task=d.task,
        splits={
            "training": (d.X_train, d.y_train),
            "validation": (d.X_val, d.y_val),
            "test": (d.X_test, d.y_test),
        },
    )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"hidden": [16]}} → {"model.hidden": [16]} (lists stay values)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: node}


def raw_rows(splits: Splits, n: int) -> np.ndarray:
    """A few training inputs in the user's original units (the model standardizes itself)."""
    rows = splits.X_train[:n].astype("float64")
    return rows * splits.scale + splits.mean if splits.mean is not None else rows
