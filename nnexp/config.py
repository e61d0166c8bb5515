"""Config schemas: dataclasses registered in Hydra's ConfigStore.

OmegaConf enforces the types and rejects unknown keys at composition. Each field states its
default and its value rule once, in its metadata (`nnexp.schema`: ``bounded`` limits,
``choice`` of allowed names, ``checked`` rules of its own); each schema's ``__post_init__`` runs
the one generic checker over them, then the few rules across fields (nesterov needs momentum,
init_scale only with a random init, the objective's direction). That happens when the runner
converts the composed config to objects (`OmegaConf.to_object`) — before any data is loaded.
Every message names the key, the value and what is allowed.

Each option of the `optimizer/` and `schedule/` groups has a schema of its own (SGD has no
beta2), as every `dataset/` option does (from `nnexp.data`): ``optimizer.beta2=0.9`` with
``optimizer=sgd`` fails at composition instead of being silently ignored.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from nnexp.data import DATASETS
from nnexp.names import STATISTICS
from nnexp.nn import ACTIVATIONS, INITIALIZERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnexp.objective import MODES, Objective, direction_of
from nnexp.schema import bounded, check_fields, checked, choice

DTYPES = ("float32", "float64")
STATS = STATISTICS  # nnexp.names


class ConfigError(ValueError):
    """A config value that composes (right type) but cannot be used."""


def _fail(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{key}={value!r}: {rule}")


def _require(ok: bool, key: str, value: Any, rule: str) -> None:
    """A rule across fields (the per-field ones are in the fields' metadata)."""
    if not ok:
        raise _fail(key, value, rule)


def _check(obj: Any, group: str) -> None:
    """The rules in the metadata of every field of ``obj``'s schema, keys as ``<group>.<field>``."""
    check_fields(obj, type(obj), _fail, prefix=f"{group}.")


def _nn_defaults(cls: type) -> dict[str, Any]:
    """The keyword defaults of a NumPy optimizer's or schedule's constructor: `nnexp.nn` states
    them (its classes stand alone), the schemas below read them from there."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty}


_SGD, _RMSPROP = _nn_defaults(OPTIMIZERS["sgd"]), _nn_defaults(OPTIMIZERS["rmsprop"])
_ADAM, _ADAMW = _nn_defaults(OPTIMIZERS["adam"]), _nn_defaults(OPTIMIZERS["adamw"])
_STEP, _EXPONENTIAL = _nn_defaults(SCHEDULES["step"]), _nn_defaults(SCHEDULES["exponential"])
_COSINE, _WARMUP = _nn_defaults(SCHEDULES["cosine"]), _nn_defaults(SCHEDULES["warmup_cosine"])
_PLATEAU = _nn_defaults(SCHEDULES["plateau"])


def _widths(hidden: list[int]) -> bool:
    return all(w >= 1 for w in hidden)  # [] is a linear model: logistic/softmax/linear regression


# --- model ---------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    # (RUF009: these helpers return a field with a default_factory for a list default)
    # [] : no hidden layer, one Dense layer with the task's fused loss (logistic, softmax or
    # linear regression: the baseline to beat)
    hidden: list[int] = checked(  # noqa: RUF009
        [16], _widths, "must be a list of layer widths >= 1 ([] for a linear model)"
    )
    activation: str = choice("relu", ACTIVATIONS)
    alpha: float | None = bounded(None, finite=True)  # leaky_relu slope / elu scale (None: theirs)
    init: str = choice("he", INITIALIZERS)
    # std of init=normal, limit of init=uniform
    init_scale: float | None = bounded(None, gt=0, finite=True)
    # Aliases of regularization.dropout / regularization.batch_norm, the knobs' own keys (which
    # win when both are set); kept because command lines and experiments use them. None: unset.
    dropout: float | None = bounded(None, ge=0, lt=1)
    batch_norm: bool | None = None
    # Skip connections: each hidden block adds its input to its output (a learned projection
    # where the width changes: the first block, or widths that differ); nnexp.nn.residual
    residual: bool = False
    output: str = choice("auto", {"auto", *LOSSES})  # the fused loss: auto picks it by task

    def __post_init__(self) -> None:
        _check(self, "model")
        if self.init_scale is not None:
            _require(
                self.init in {"normal", "uniform"},
                "model.init (with model.init_scale)",
                self.init,
                "allowed: normal, uniform",
            )
        if self.alpha is not None:
            _require(
                self.activation in {"leaky_relu", "elu"},
                "model.activation (with model.alpha)",
                self.activation,
                "allowed: elu, leaky_relu",
            )


# --- optimizer -----------------------------------------------------------------------------------


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = bounded(0.1, gt=0, finite=True)

    def __post_init__(self) -> None:
        _check(self, "optimizer")


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    momentum: float = bounded(_SGD["momentum"], ge=0, lt=1)
    nesterov: bool = _SGD["nesterov"]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nesterov:
            _require(self.momentum > 0, "optimizer.momentum", self.momentum, "nesterov needs > 0")


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: float = bounded(0.001, gt=0, finite=True)
    rho: float = bounded(_RMSPROP["rho"], ge=0, lt=1)
    eps: float = bounded(_RMSPROP["eps"], gt=0, finite=True)


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = bounded(0.001, gt=0, finite=True)
    beta1: float = bounded(_ADAM["beta1"], ge=0, lt=1)
    beta2: float = bounded(_ADAM["beta2"], ge=0, lt=1)
    eps: float = bounded(_ADAM["eps"], gt=0, finite=True)


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = bounded(_ADAMW["weight_decay"], ge=0, finite=True)


# --- schedule ------------------------------------------------------------------------------------


@dataclass
class ScheduleConfig:
    name: str = "constant"

    def __post_init__(self) -> None:
        _check(self, "schedule")


@dataclass
class StepScheduleConfig(ScheduleConfig):
    name: str = "step"
    gamma: float = bounded(_STEP["gamma"], gt=0, le=1)
    step_size: int = bounded(_STEP["step_size"], ge=1)


@dataclass
class ExponentialScheduleConfig(ScheduleConfig):
    name: str = "exponential"
    gamma: float = bounded(_EXPONENTIAL["gamma"], gt=0, le=1)


@dataclass
class CosineScheduleConfig(ScheduleConfig):
    name: str = "cosine"
    min_lr: float = bounded(_COSINE["min_lr"], ge=0, finite=True)
    total: int | None = bounded(None, ge=1)  # epochs; None: trainer.epochs


@dataclass
class WarmupCosineScheduleConfig(CosineScheduleConfig):
    name: str = "warmup_cosine"
    warmup: int = bounded(_WARMUP["warmup"], ge=1)


@dataclass
class PlateauScheduleConfig(ScheduleConfig):
    name: str = "plateau"
    factor: float = bounded(_PLATEAU["factor"], gt=0, lt=1)
    patience: int = bounded(_PLATEAU["patience"], ge=0)
    min_delta: float = bounded(_PLATEAU["min_delta"], finite=True)
    min_lr: float = bounded(_PLATEAU["min_lr"], finite=True)


# --- regularization, trainer, tracking -----------------------------------------------------------


@dataclass
class RegularizationConfig:
    name: str = "none"
    # lambda of the penalty 0.5 * lambda * ||W||^2 (weights, not biases)
    l2: float = bounded(0.0, ge=0, finite=True)
    # The dropout and batch-norm knobs (groups' options dropout, l2_dropout, batchnorm). None:
    # unset, so the alias model.dropout / model.batch_norm if that is set, else off.
    dropout: float | None = bounded(None, ge=0, lt=1)
    batch_norm: bool | None = None
    early_stopping: bool = False
    patience: int = bounded(10, ge=1)
    min_delta: float = bounded(0.0, ge=0, finite=True)
    restore_best: bool = True

    def __post_init__(self) -> None:
        _check(self, "regularization")

    def dropout_of(self, model: ModelConfig) -> float:
        """The dropout rate: this key's, else its alias model.dropout's, else 0 (none)."""
        return _first_set(self.dropout, model.dropout, 0.0)

    def batch_norm_of(self, model: ModelConfig) -> bool:
        """Batch norm on or off: this key's, else its alias model.batch_norm's, else off."""
        return _first_set(self.batch_norm, model.batch_norm, False)


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


@dataclass
class GradClipConfig:
    norm: float | None = bounded(None, gt=0, finite=True)  # max global L2 norm of all gradients
    value: float | None = bounded(None, gt=0, finite=True)  # max |element| of each gradient

    def __post_init__(self) -> None:
        _check(self, "trainer.grad_clip")


def _train_or_val(objective: str) -> bool:
    return objective.startswith(("val/", "train/"))


@dataclass
class TrainerConfig:
    epochs: int = bounded(100, ge=1)
    batch_size: int = bounded(32, ge=1)
    dtype: str = choice("float32", DTYPES)
    seed: int = bounded(0, ge=0)
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    # epochs between epoch_NNNN.npz (0: only best and last)
    checkpoint_every: int = bounded(10, ge=0)
    # last.npz/best.npz are written at most this often (and at the end, and when a run fails):
    # a killed run loses at most these seconds. 0: every epoch.
    checkpoint_every_s: float = bounded(1.0, ge=0, note="(seconds)")
    # epochs between metric records (the last epoch is always recorded)
    log_every: int = bounded(1, ge=1)
    stats: list[str] = choice(list(STATS), STATS)  # noqa: RUF009 (a default_factory field)
    stats_every: int = bounded(1, ge=1)  # optimizer steps between statistics samples
    progress: bool | None = None  # None: on when stderr is a terminal
    # what the Hydra task returns (for sweepers) and what "best" means
    objective: str = checked(
        "val/loss", _train_or_val, "must be a train/ or val/ metric, e.g. val/loss"
    )
    # auto: the metric's own direction (nnexp.objective); min; max
    objective_mode: str = choice("auto", MODES)
    # Pin BLAS to one thread for the run: results then depend only on the seeds and the BLAS
    # library and kernel, not on the machine's core count (a table reproduces digit for digit).
    deterministic: bool = False
    # raise: fail the run; stop: end it early, keep the last good state
    nan_policy: str = choice("raise", ("raise", "stop"))
    # Continue a killed run: a checkpoint path, runs:/RUN_ID[/artifact], or last (nnexp.resume).
    resume: str | None = checked(
        None, lambda r: bool(r.strip()), "must be a checkpoint path, runs:/RUN_ID[/path], or last"
    )

    def __post_init__(self) -> None:
        _check(self, "trainer")
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
    experiment: str = checked("nnexp", bool, "must not be empty")
    run_name: str | None = None
    uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default ./mlflow.db
    flush_every_s: float = bounded(2.0, ge=0, note="(seconds)")
    # while the server is away: how often to try it again
    retry_every_s: float = bounded(30.0, ge=0, note="(seconds)")

    def __post_init__(self) -> None:
        _check(self, "tracking")


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
