"""Config → objects: data, network, loss, optimizer, schedule. No Hydra, no MLflow here: the
input is the validated config object tree (`nnexp.config.Config` after `OmegaConf.to_object`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnexp.config import Config, ConfigError
from nnexp.data import Splits, prepare
from nnexp.nn import LOSSES, OPTIMIZERS, SCHEDULES, Loss, Optimizer, Schedule, Sequential, mlp
from nnexp.train import Data

# Which fused loss a task gets with model.output=auto, and which tasks each loss can serve.
AUTO_LOSS = {"binary": "sigmoid_bce", "multiclass": "softmax_cross_entropy", "regression": "mse"}
LOSS_TASKS = {
    "sigmoid_bce": {"binary"},
    "softmax_cross_entropy": {"binary", "multiclass"},
    "mse": {"regression"},
}


@dataclass
class Built:
    splits: Splits
    data: Data
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
        "dropout": m.dropout if reg.dropout is None else reg.dropout,
        "batch_norm": m.batch_norm if reg.batch_norm is None else reg.batch_norm,
        "dtype": cfg.trainer.dtype,
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


def build(cfg: Config) -> Built:
    dtype = np.dtype(cfg.trainer.dtype)
    schedule = build_schedule(cfg)  # fails on a bad schedule before the data is loaded
    splits = prepare(cfg.dataset, dtype=dtype)
    check_objective(cfg, splits.task)
    loss_name = choose_loss(cfg, splits.task)
    loss = LOSSES.lookup(loss_name)()
    classification = splits.task != "regression"
    y_mean = y_scale = None
    ys = [splits.y_train, splits.y_val, splits.y_test]
    if not classification:
        # Regression targets train standardized (a target in the hundreds makes the first MSE
        # gradients explode); the Predictor and the reported RMSE undo it.
        y_mean = splits.y_train.mean(axis=0)
        y_scale = splits.y_train.std(axis=0)
        y_scale = np.where(y_scale > 0, y_scale, 1.0) if np.ndim(y_scale) else (y_scale or 1.0)
        ys = [((y - y_mean) / y_scale).astype(dtype) for y in ys]
    kwargs = mlp_kwargs(cfg, splits.n_features, n_outputs(loss_name, splits))
    model = mlp(**kwargs)
    loss.check_targets(ys[0], kwargs["out_features"])
    data = Data(
        splits.X_train,
        ys[0],
        splits.X_val,
        ys[1],
        splits.X_test,
        ys[2],
        classification=classification,
        y_scale=1.0 if y_scale is None else y_scale,
    )
    optimizer = build_optimizer(cfg, model)
    return Built(splits, data, model, kwargs, loss, loss_name, optimizer, schedule, y_mean, y_scale)
