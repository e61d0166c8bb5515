"""Config schemas: dataclasses registered in Hydra's ConfigStore.

OmegaConf enforces the types and rejects unknown keys at composition. The value rules (lr > 0,
a known init, ...) live in each schema's ``__post_init__``, which runs when the runner converts
the composed config to objects (`OmegaConf.to_object`) — before any data is loaded. Every
message names the key, the value and what is allowed.

Each option of the `optimizer/` and `schedule/` groups has a schema of its own (SGD has no
beta2), as every `dataset/` option does (from `nnexp.data`): ``optimizer.beta2=0.9`` with
``optimizer=sgd`` fails at composition instead of being silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from nnexp.data import DATASETS
from nnexp.nn import ACTIVATIONS, INITIALIZERS, LOSSES
from nnexp.objective import MODES, Objective, direction_of

DTYPES = ("float32", "float64")
STATS = ("grad_norm", "update_ratio", "activations")


class ConfigError(ValueError):
    """A config value that composes (right type) but cannot be used."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {allowed}")


def _one_of(key: str, value: Any, allowed) -> None:
    _require(value in allowed, key, value, "allowed: " + ", ".join(sorted(allowed)))


# --- model ---------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [16])
    activation: str = "relu"
    alpha: float | None = None  # slope of leaky_relu / scale of elu (None: their defaults)
    init: str = "he"
    init_scale: float | None = None  # std of init=normal, limit of init=uniform
    dropout: float = 0.0
    batch_norm: bool = False
    output: str = "auto"  # the fused loss: auto picks it from the dataset's task

    def __post_init__(self) -> None:
        _require(
            len(self.hidden) > 0 and all(w >= 1 for w in self.hidden),
            "model.hidden",
            list(self.hidden),
            "must be a non-empty list of layer widths >= 1",
        )
        _one_of("model.activation", self.activation, ACTIVATIONS)
        _one_of("model.init", self.init, INITIALIZERS)
        _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "must be in [0, 1)")
        _one_of("model.output", self.output, {"auto", *LOSSES})
        if self.init_scale is not None:
            _require(self.init_scale > 0, "model.init_scale", self.init_scale, "must be > 0")
            _one_of("model.init (with model.init_scale)", self.init, {"normal", "uniform"})
        if self.alpha is not None:
            _one_of("model.activation (with model.alpha)", self.activation, {"leaky_relu", "elu"})


# --- optimizer -----------------------------------------------------------------------------------


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 0.1

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "must be > 0")


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "must be in [0, 1)")
        if self.nesterov:
            _require(self.momentum > 0, "optimizer.momentum", self.momentum, "nesterov needs > 0")


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: float = 0.001
    rho: float = 0.9
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.rho < 1, "optimizer.rho", self.rho, "must be in [0, 1)")
        _require(self.eps > 0, "optimizer.eps", self.eps, "must be > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            _require(0 <= value < 1, f"optimizer.{key}", value, "must be in [0, 1)")
        _require(self.eps > 0, "optimizer.eps", self.eps, "must be > 0")


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(
            self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, "must be >= 0"
        )


# --- schedule ------------------------------------------------------------------------------------


@dataclass
class ScheduleConfig:
    name: str = "constant"


@dataclass
class StepScheduleConfig(ScheduleConfig):
    name: str = "step"
    gamma: float = 0.95
    step_size: int = 10

    def __post_init__(self) -> None:
        _require(0 < self.gamma <= 1, "schedule.gamma", self.gamma, "must be in (0, 1]")
        _require(self.step_size >= 1, "schedule.step_size", self.step_size, "must be >= 1")


@dataclass
class ExponentialScheduleConfig(ScheduleConfig):
    name: str = "exponential"
    gamma: float = 0.97

    def __post_init__(self) -> None:
        _require(0 < self.gamma <= 1, "schedule.gamma", self.gamma, "must be in (0, 1]")


@dataclass
class CosineScheduleConfig(ScheduleConfig):
    name: str = "cosine"
    min_lr: float = 0.0
    total: int | None = None  # epochs; None: trainer.epochs

    def __post_init__(self) -> None:
        _require(self.min_lr >= 0, "schedule.min_lr", self.min_lr, "must be >= 0")
        _require(
            self.total is None or self.total >= 1, "schedule.total", self.total, "must be >= 1"
        )


@dataclass
class WarmupCosineScheduleConfig(CosineScheduleConfig):
    name: str = "warmup_cosine"
    warmup: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.warmup >= 1, "schedule.warmup", self.warmup, "must be >= 1")


@dataclass
class PlateauScheduleConfig(ScheduleConfig):
    name: str = "plateau"
    factor: float = 0.5
    patience: int = 5
    min_delta: float = 1e-4
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        _require(0 < self.factor < 1, "schedule.factor", self.factor, "must be in (0, 1)")
        _require(self.patience >= 0, "schedule.patience", self.patience, "must be >= 0")


# --- regularization, trainer, tracking -----------------------------------------------------------


@dataclass
class RegularizationConfig:
    name: str = "none"
    l2: float = 0.0  # lambda of the penalty 0.5 * lambda * ||W||^2 (weights, not biases)
    dropout: float | None = None  # None: keep model.dropout
    batch_norm: bool | None = None  # None: keep model.batch_norm
    early_stopping: bool = False
    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        _require(self.l2 >= 0, "regularization.l2", self.l2, "must be >= 0")
        if self.dropout is not None:
            _require(
                0 <= self.dropout < 1, "regularization.dropout", self.dropout, "must be in [0, 1)"
            )
        _require(self.patience >= 1, "regularization.patience", self.patience, "must be >= 1")
        _require(self.min_delta >= 0, "regularization.min_delta", self.min_delta, "must be >= 0")


@dataclass
class GradClipConfig:
    norm: float | None = None  # max global L2 norm of all gradients
    value: float | None = None  # max absolute value of each gradient element

    def __post_init__(self) -> None:
        for key in ("norm", "value"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"trainer.grad_clip.{key}", value, "must be > 0")


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 32
    dtype: str = "float32"
    seed: int = 0
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    checkpoint_every: int = 10  # epochs between epoch_NNNN.npz (0: only best and last)
    # last.npz/best.npz are written at most this often (and at the end, and when a run fails):
    # a killed run loses at most these seconds. 0: every epoch.
    checkpoint_every_s: float = 1.0
    log_every: int = 1  # epochs between metric records (the last epoch is always recorded)
    stats: list[str] = field(default_factory=lambda: list(STATS))
    stats_every: int = 1  # optimizer steps between statistics samples
    progress: bool | None = None  # None: on when stderr is a terminal
    objective: str = "val/loss"  # what the Hydra task returns (for sweepers) and what "best" means
    objective_mode: str = "auto"  # auto: the metric's own direction (nnexp.objective); min; max
    # Pin BLAS to one thread for the run: results then depend only on the seeds and the BLAS
    # library and kernel, not on the machine's core count (a table reproduces digit for digit).
    deterministic: bool = False
    nan_policy: str = "raise"  # raise: fail the run; stop: end it early, keep the last good state
    # Continue a killed run: a checkpoint path, runs:/RUN_ID[/artifact], or last (nnexp.resume).
    resume: str | None = None

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "trainer.batch_size", self.batch_size, "must be >= 1")
        _one_of("trainer.dtype", self.dtype, DTYPES)
        _require(self.seed >= 0, "trainer.seed", self.seed, "must be >= 0")
        _require(
            self.checkpoint_every >= 0,
            "trainer.checkpoint_every",
            self.checkpoint_every,
            "must be >= 0",
        )
        _require(
            self.checkpoint_every_s >= 0,
            "trainer.checkpoint_every_s",
            self.checkpoint_every_s,
            "must be >= 0 (seconds)",
        )
        _require(self.log_every >= 1, "trainer.log_every", self.log_every, "must be >= 1")
        _require(self.stats_every >= 1, "trainer.stats_every", self.stats_every, "must be >= 1")
        for item in self.stats:
            _one_of("trainer.stats[]", item, STATS)
        _one_of("trainer.nan_policy", self.nan_policy, {"raise", "stop"})
        _require(
            self.resume is None or bool(self.resume.strip()),
            "trainer.resume",
            self.resume,
            "must be a checkpoint path, runs:/RUN_ID[/path], or last",
        )
        _require(
            self.objective.startswith(("val/", "train/")),
            "trainer.objective",
            self.objective,
            "must be a train/ or val/ metric, e.g. val/loss",
        )
        _one_of("trainer.objective_mode", self.objective_mode, MODES)
        try:
            direction_of(self.objective, self.objective_mode)
        except ValueError as exc:
            raise ConfigError(f"trainer.objective={self.objective!r}: {exc}") from None

    def objective_spec(self) -> Objective:
        """The objective and its direction (`trainer.objective_mode`, auto by the metric)."""
        return Objective.of(self.objective, self.objective_mode)


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str = "nnexp"
    run_name: str | None = None
    uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default ./mlflow.db
    flush_every_s: float = 2.0
    retry_every_s: float = 30.0  # while the server is away: how often to try it again

    def __post_init__(self) -> None:
        _require(bool(self.experiment), "tracking.experiment", self.experiment, "must not be empty")
        for key in ("flush_every_s", "retry_every_s"):
            value = getattr(self, key)
            _require(value >= 0, f"tracking.{key}", value, "must be >= 0 (seconds)")


@dataclass
class Config:
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    dataset: Any = MISSING
    regularization: RegularizationConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS: dict[str, dict[str, type]] = {
    "optimizer": {
        "sgd": SGDConfig,
        "rmsprop": RMSpropConfig,
        "adam": AdamConfig,
        "adamw": AdamWConfig,
    },
    "schedule": {
        "constant": ScheduleConfig,
        "step": StepScheduleConfig,
        "exponential": ExponentialScheduleConfig,
        "cosine": CosineScheduleConfig,
        "warmup_cosine": WarmupCosineScheduleConfig,
        "plateau": PlateauScheduleConfig,
    },
    "dataset": dict(DATASETS),
    "model": {"model": ModelConfig},
    "regularization": {"regularization": RegularizationConfig},
}


def register_configs() -> None:
    """Store the schemas: ``base_config`` for the top level and ``<group>/<name>_schema`` for
    each group option's YAML to extend (``defaults: [<name>_schema, _self_]``)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # ${nnexp.optuna_direction:${trainer.objective},${trainer.objective_mode}}: an Optuna
    # study's direction follows the objective (conf/hparams_search).
    if not OmegaConf.has_resolver("nnexp.optuna_direction"):
        OmegaConf.register_new_resolver(
            "nnexp.optuna_direction",
            lambda key, mode="auto": Objective.of(str(key), str(mode)).optuna_direction,
        )
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)
