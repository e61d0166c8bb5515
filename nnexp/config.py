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
``optimizer=sgd`` fails at composition instead of being silently ignored. Those schemas are not
written here: `nn_schema` builds each from its NumPy class in `nnexp.nn` (the keys and limits
the class declares beside it, the defaults of its ``__init__``), so each is stated once.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from nnexp.data import DATASETS
from nnexp.names import STATISTICS, reserved_tag
from nnexp.nn import ACTIVATIONS, INITIALIZERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnexp.nn.amp import parse_loss_scale
from nnexp.objective import MODES, Objective, direction_of
from nnexp.schema import bounded, check_fields, checked, choice
from nnexp.tracking.paths import project_root

DTYPES = ("float32", "float64")
PRECISIONS = (*DTYPES, "mixed")
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


# --- optimizer and schedule: each option's schema, built from its NumPy class --------------------


@dataclass
class OptimizerConfig:
    name: str = MISSING

    def __post_init__(self) -> None:
        _check(self, "optimizer")
        if getattr(self, "nesterov", False):  # the one rule across an optimizer's keys
            momentum = getattr(self, "momentum", 0.0)  # the subclasses with nesterov have it
            _require(momentum > 0, "optimizer.momentum", momentum, "nesterov needs > 0")


@dataclass
class ScheduleConfig:
    name: str = "constant"  # the schedule without keys of its own

    def __post_init__(self) -> None:
        _check(self, "schedule")


_TYPES = {"float": float, "int": int, "bool": bool}


def _init_parameter(cls: type, key: str) -> inspect.Parameter:
    """`key` of the first ``__init__`` along `cls`'s bases that names it (AdamW passes Adam's
    keywords on)."""
    for klass in cls.__mro__:
        params = inspect.signature(klass).parameters if klass is not object else {}
        if key in params and params[key].kind is not inspect.Parameter.VAR_KEYWORD:
            return params[key]
    raise TypeError(f"{cls.__name__}: limits name {key!r}, which __init__ does not take")


def nn_schema(cls: type, name: str, base: type, schema_name: str) -> type:
    """The config schema of an `nnexp.nn` optimizer or schedule class, registered as `name`: a
    field for each key of the class's ``limits`` (its bases' first), with its ``__init__``
    default (None where the argument is required: the runner fills it in) and those limits as
    its rules (`nnexp.schema.bounded`). A class without keys of its own gets `base` itself."""
    keys: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        keys.update(vars(klass).get("limits", {}))
    if not keys:
        return base
    specs: list[tuple[str, Any, Any]] = [("name", str, field(default=name))]
    for key, limits in keys.items():
        param = _init_parameter(cls, key)
        kind: Any = _TYPES[param.annotation]
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        specs.append((key, kind | None if required else kind, bounded(default, **limits)))
    schema = make_dataclass(schema_name, specs, bases=(base,))
    schema.__module__ = __name__  # where OmegaConf and pickle look for it
    return schema


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


OPTIMIZER_SCHEMAS: dict[str, type] = {
    name: nn_schema(cls, name, OptimizerConfig, f"{cls.__name__}Config")
    for name, cls in OPTIMIZERS.items()
}
SCHEDULE_SCHEMAS: dict[str, type] = {
    name: nn_schema(cls, name, ScheduleConfig, f"{_camel(name)}ScheduleConfig")
    for name, cls in SCHEDULES.items()
}
# By name, for the code and tests that build configs in Python (and OmegaConf's messages:
# "Key 'beta2' not in 'SGDConfig'").
SGDConfig, RMSpropConfig = OPTIMIZER_SCHEMAS["sgd"], OPTIMIZER_SCHEMAS["rmsprop"]
AdamConfig, AdamWConfig = OPTIMIZER_SCHEMAS["adam"], OPTIMIZER_SCHEMAS["adamw"]
StepScheduleConfig = SCHEDULE_SCHEMAS["step"]
ExponentialScheduleConfig = SCHEDULE_SCHEMAS["exponential"]
CosineScheduleConfig = SCHEDULE_SCHEMAS["cosine"]
WarmupCosineScheduleConfig = SCHEDULE_SCHEMAS["warmup_cosine"]
PlateauScheduleConfig = SCHEDULE_SCHEMAS["plateau"]


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


@dataclass
class EarlyStoppingConfig:
    """The early-stopping callback: on once `patience` is set. Its older spelling, the
    regularization keys (``regularization=early_stopping``, ``regularization.patience``, ...),
    is an alias: these keys win where both are set (`Config.early_stopping`)."""

    patience: int | None = bounded(None, ge=1)  # epochs without improvement; None: off
    min_delta: float | None = bounded(None, ge=0, finite=True)  # None: 0
    restore_best: bool | None = None  # None: true (the best epoch's weights at the end)

    def __post_init__(self) -> None:
        _check(self, "trainer.early_stopping")


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Early stopping as the run applies it, its two spellings merged."""

    patience: int
    min_delta: float
    restore_best: bool


def _loss_scale(value: str) -> bool:
    try:
        parse_loss_scale(value)
    except ValueError:
        return False
    return True


def _train_or_val(objective: str) -> bool:
    return objective.startswith(("val/", "train/"))


@dataclass
class TrainerConfig:
    epochs: int = bounded(100, ge=1)
    batch_size: int = bounded(32, ge=1)
    # The arithmetic of training: float32 (default), float64 (exact gradient checks), or mixed:
    # float16 forward and backward passes on float32 master weights, with loss scaling
    # (nnexp.nn.amp). trainer.dtype is the older key, an alias: float32|float64; setting both
    # to different values is refused.
    precision: str | None = choice(None, PRECISIONS)
    dtype: str | None = choice(None, DTYPES)
    # Under precision=mixed only (None: dynamic): dynamic (start at 2^16, halve and skip the
    # step on an Inf/NaN gradient, double after 2000 clean steps), none, or a number (static).
    loss_scale: str | None = checked(None, _loss_scale, "must be dynamic, none or a number > 0")
    seed: int = bounded(0, ge=0)
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    # epochs between epoch_NNNN.npz (0: only best and last)
    checkpoint_every: int = bounded(10, ge=0)
    # last.npz/best.npz are written at most this often (and at the end, and when a run fails):
    # a killed run loses at most these seconds. 0: every epoch.
    checkpoint_every_s: float = bounded(1.0, ge=0, note="(seconds)")
    # How many of the newest checkpoints stay, locally and in the store: last.npz and the
    # newest checkpoint_keep - 1 epoch_NNNN.npz; best.npz on top (at most K + 1 files). 0: all.
    checkpoint_keep: int = bounded(3, ge=0)
    # Debugging (the debug group): train on at most this many of each epoch's (shuffled)
    # batches; train on the same first overfit_batches * batch_size rows of the training split
    # every epoch (a fixed subset to overfit). None: all. Validation and test are untouched.
    limit_batches: int | None = bounded(None, ge=1)
    overfit_batches: int | None = bounded(None, ge=1)
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
        if self.precision and self.dtype and self.precision != self.dtype:
            raise _fail(
                "trainer.dtype",
                self.dtype,
                f"an alias of trainer.precision, which is {self.precision!r}: set one of them",
            )
        if self.loss_scale is not None:
            _require(
                self.precision_of() == "mixed",
                "trainer.precision (with trainer.loss_scale)",
                self.precision_of(),
                "loss scaling needs mixed",
            )
        try:
            direction_of(self.objective, self.objective_mode)
        except ValueError as exc:
            raise ConfigError(f"trainer.objective={self.objective!r}: {exc}") from None

    def objective_spec(self) -> Objective:
        """The objective and its direction (`trainer.objective_mode`, auto by the metric)."""
        return Objective.of(self.objective, self.objective_mode)

    def precision_of(self) -> str:
        """trainer.precision, else its alias trainer.dtype, else float32."""
        return self.precision or self.dtype or "float32"

    def master_dtype(self) -> str:
        """The dtype of the weights, the optimizer's state and the data: float32 under mixed
        (the master weights), else the precision itself."""
        return "float32" if self.precision_of() == "mixed" else self.precision_of()


def _registry_name(name: str) -> bool:
    """MLflow's rules for a registered model's name (its stores refuse the others, after
    training): not blank, no path or URI syntax."""
    plain = name.strip() and not any(c in name for c in "/:%\\")
    return bool(plain and name != "." and not name.startswith(".."))


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str = checked("nnexp", bool, "must not be empty")
    run_name: str | None = None
    uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default ./mlflow.db
    flush_every_s: float = bounded(2.0, ge=0, note="(seconds)")
    # while the server is away: how often to try it again
    retry_every_s: float = bounded(30.0, ge=0, note="(seconds)")
    # the model registry's name for the logged model (a new version per run); null: not registered
    register_as: str | None = checked(
        None, _registry_name, "must be null (not registered) or a registered model name: not "
        "blank, without '/', ':', '%' or a backslash, not '.' and not starting with '..'"
    )  # fmt: skip

    def __post_init__(self) -> None:
        _check(self, "tracking")
        _require(
            self.enabled or not self.register_as, "tracking.register_as", self.register_as,
            "needs tracking.enabled=true (an untracked run logs no model to register)",
        )  # fmt: skip


TAG_FORMS = "a list of names (tags=[dev,baseline]) or a mapping (tags={team: x}, +tags.team=x)"


@dataclass
class PathsConfig:
    """Where a run's files go (lightning-hydra-template's ``paths``): under the project's root
    (`nnexp.tracking.paths`: $NNEXP_ROOT, else the nearest directory up holding mlflow.db or
    .git, else the working directory), whichever sub-directory the run starts in."""

    root: str = "${nnexp.project_root:}"
    store: str = "${paths.root}/mlflow.db"  # tracking.uri's default (sqlite), unless exported
    outputs: str = "${paths.root}/outputs"  # hydra.run.dir: <outputs>/<date>/<time>
    multirun: str = "${paths.root}/multirun"  # hydra.sweep.dir: <multirun>/<date>/<time>


@dataclass
class ExtrasConfig:
    """What a run does around training (lightning-hydra-template's ``extras``)."""

    print_config: bool = False  # print the composed, resolved config as a tree at the start


@dataclass
class Config:
    # One seed for the whole run (`python -m nnexp seed=1`, as in lightning-hydra-template):
    # conf/config.yaml sets trainer.seed and dataset.seed to ${seed}; either, set itself, wins.
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    dataset: Any = MISSING
    regularization: RegularizationConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # The run's own MLflow tags: names (tags=[dev,baseline]: each tag "true") or a mapping
    # (tags={team: x}, +tags.team=x). None (the default): none. See `user_tags`.
    tags: Any = field(default=None, metadata={"rule": TAG_FORMS})
    extras: ExtrasConfig = field(default_factory=ExtrasConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        user_tags(self.tags)
        es, reg = self.trainer.early_stopping, self.regularization
        if es.patience is None and not (reg is not MISSING and reg.early_stopping):
            for key in ("min_delta", "restore_best"):
                _require(
                    getattr(es, key) is None,
                    f"trainer.early_stopping.{key}",
                    getattr(es, key),
                    "early stopping is off: turn it on with trainer.early_stopping.patience=N",
                )

    def early_stopping(self) -> EarlyStoppingSettings | None:
        """trainer.early_stopping's keys, each else its alias regularization.<key> (on with
        regularization.early_stopping); None when neither turns it on."""
        es, reg = self.trainer.early_stopping, self.regularization
        if es.patience is None and not reg.early_stopping:
            return None
        return EarlyStoppingSettings(
            patience=_first_set(es.patience, reg.patience),
            min_delta=_first_set(es.min_delta, reg.min_delta),
            restore_best=_first_set(es.restore_best, reg.restore_best),
        )


def user_tags(tags: Any) -> dict[str, str]:
    """The MLflow tags of config key `tags`: a list of names, each tagged ``"true"`` (so the
    filter ``tags.dev = "true"`` finds them), or a mapping of name to a value (a string, number
    or boolean: ``tags.team = "x"``); a nested mapping names its tags with dots
    (``+tags.team.lead=ana``: ``team.lead``). A name MLflow refuses, or one nnexp sets itself
    (`nnexp.names.reserved_tag`), is a `ConfigError`."""
    from nnexp.tracking.limits import name_problem

    if tags is None:
        return {}
    if isinstance(tags, list | tuple):
        for name in tags:
            if not isinstance(name, str | int) or isinstance(name, bool):
                raise _fail("tags", tags, f"tag names must be words or numbers: {name!r} is not")
        tags = dict.fromkeys(map(str, tags), True)
    elif not isinstance(tags, Mapping):
        raise _fail("tags", tags, f"must be {TAG_FORMS}")
    out: dict[str, str] = {}
    for name, value in _dotted_items(tags):
        if not isinstance(value, str | int | float | bool):
            raise _fail(f"tags.{name}", value, "must be a string, number or boolean")
        problem = name_problem(name)
        if problem is None and reserved_tag(name):
            problem = "nnexp or MLflow sets this tag itself; choose another name"
        if problem is not None:
            raise _fail("tags", name, problem)
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _dotted_items(mapping: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            items += _dotted_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


# A run's MLflow params are its hyperparameters: what changes the trained model. These nodes'
# keys are, but for the trainer's keys below; the rest of the config (tracking, tags, what is
# logged, checkpointed, shown or resumed) is bookkeeping, kept in the run's config.yaml.
# The root `seed` too: the UI's filter params.seed = "1" finds the runs a user started with seed=1.
HYPERPARAMETER_NODES = (
    "seed", "model", "optimizer", "schedule", "dataset", "regularization", "trainer",
)  # fmt: skip
TRAINER_BOOKKEEPING = (
    "checkpoint_every",
    "checkpoint_every_s",
    "checkpoint_keep",
    "log_every",
    "stats",
    "stats_every",
    "progress",
    "deterministic",  # recorded as the tag nnexp.deterministic, with the BLAS library
    "nan_policy",
    "resume",
)


def is_hyperparameter(key: str) -> bool:
    """Whether the dotted config key `key` (``optimizer.lr``) is one of a run's params."""
    node, _, rest = key.partition(".")
    if node == "trainer":
        return rest.split(".")[0] not in TRAINER_BOOKKEEPING
    return node in HYPERPARAMETER_NODES


SCHEMAS: dict[str, dict[str, type]] = {
    "optimizer": OPTIMIZER_SCHEMAS,
    "schedule": SCHEDULE_SCHEMAS,
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
    # ${nnexp.project_root:}: where the project's store and outputs live (paths.root).
    if not OmegaConf.has_resolver("nnexp.project_root"):
        OmegaConf.register_new_resolver("nnexp.project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("nnexp.optuna_direction"):
        OmegaConf.register_new_resolver(
            "nnexp.optuna_direction",
            lambda key, mode="auto": Objective.of(str(key), str(mode)).optuna_direction,
        )
    if not OmegaConf.has_resolver("nnexp.help_keys"):  # --help (conf/hydra/help/nnexp.yaml)
        from nnexp import help as app_help

        OmegaConf.register_new_resolver("nnexp.help_groups", app_help.groups)
        OmegaConf.register_new_resolver("nnexp.help_keys", app_help.keys)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)
