"""Exact value rules of nnexp.config's schemas: each rule accepts its boundary, refuses the value
just past it, and says so in one message naming the key, the value and what is allowed — the
user's whole interface to a bad override. The schemas' `__post_init__` runs on construction,
as it does when the runner converts the composed config (`OmegaConf.to_object`).

Written for the mutation run (`make mutate`, tests/mutants.md); the CLI tests check a sample of
these messages end to end."""

from __future__ import annotations

import pytest
from conftest import small_config

from nnexp.config import (
    AdamConfig,
    AdamWConfig,
    ConfigError,
    CosineScheduleConfig,
    ExponentialScheduleConfig,
    GradClipConfig,
    ModelConfig,
    OptimizerConfig,
    PlateauScheduleConfig,
    RegularizationConfig,
    RMSpropConfig,
    SGDConfig,
    StepScheduleConfig,
    TrackingConfig,
    TrainerConfig,
    WarmupCosineScheduleConfig,
)

ACTIVATIONS = "elu, gelu, identity, leaky_relu, linear, relu, sigmoid, tanh"
INITS = (
    "glorot, he, he_normal, he_uniform, kaiming, lecun_normal, normal, uniform, xavier, "
    "xavier_normal, xavier_uniform, zeros"
)

REFUSED = [
    # (schema, kwargs, message)
    (
        ModelConfig,
        {"hidden": [4, 0]},
        "model.hidden=[4, 0]: must be a list of layer widths >= 1 ([] for a linear model)",
    ),
    (
        ModelConfig,
        {"hidden": [-1]},
        "model.hidden=[-1]: must be a list of layer widths >= 1 ([] for a linear model)",
    ),
    (ModelConfig, {"activation": "swish"}, f"model.activation='swish': allowed: {ACTIVATIONS}"),
    (ModelConfig, {"init": "bogus"}, f"model.init='bogus': allowed: {INITS}"),
    (ModelConfig, {"dropout": 1.0}, "model.dropout=1.0: must be in [0, 1)"),
    (ModelConfig, {"dropout": -0.1}, "model.dropout=-0.1: must be in [0, 1)"),
    (
        ModelConfig,
        {"output": "hinge"},
        "model.output='hinge': allowed: auto, mse, sigmoid_bce, softmax_cross_entropy",
    ),
    (
        ModelConfig,
        {"init": "normal", "init_scale": 0.0},
        "model.init_scale=0.0: must be > 0",
    ),
    (
        ModelConfig,
        {"init": "he", "init_scale": 0.5},
        "model.init (with model.init_scale)='he': allowed: normal, uniform",
    ),
    (
        ModelConfig,
        {"activation": "relu", "alpha": 0.1},
        "model.activation (with model.alpha)='relu': allowed: elu, leaky_relu",
    ),
    (SGDConfig, {"lr": 0.0}, "optimizer.lr=0.0: must be > 0"),
    (SGDConfig, {"momentum": 1.0}, "optimizer.momentum=1.0: must be in [0, 1)"),
    (SGDConfig, {"momentum": -0.5}, "optimizer.momentum=-0.5: must be in [0, 1)"),
    (SGDConfig, {"nesterov": True}, "optimizer.momentum=0.0: nesterov needs > 0"),
    (RMSpropConfig, {"lr": -1.0}, "optimizer.lr=-1.0: must be > 0"),
    (RMSpropConfig, {"rho": 1.0}, "optimizer.rho=1.0: must be in [0, 1)"),
    (RMSpropConfig, {"rho": -0.1}, "optimizer.rho=-0.1: must be in [0, 1)"),
    (RMSpropConfig, {"eps": 0.0}, "optimizer.eps=0.0: must be > 0"),
    (AdamConfig, {"beta1": 1.0}, "optimizer.beta1=1.0: must be in [0, 1)"),
    (AdamConfig, {"beta1": -0.1}, "optimizer.beta1=-0.1: must be in [0, 1)"),
    (AdamConfig, {"beta2": 1.0}, "optimizer.beta2=1.0: must be in [0, 1)"),
    (AdamConfig, {"beta2": -0.1}, "optimizer.beta2=-0.1: must be in [0, 1)"),
    (AdamConfig, {"eps": 0.0}, "optimizer.eps=0.0: must be > 0"),
    (AdamConfig, {"lr": 0.0}, "optimizer.lr=0.0: must be > 0"),
    (AdamWConfig, {"weight_decay": -0.01}, "optimizer.weight_decay=-0.01: must be >= 0"),
    (AdamWConfig, {"beta2": 1.0}, "optimizer.beta2=1.0: must be in [0, 1)"),
    (StepScheduleConfig, {"gamma": 0.0}, "schedule.gamma=0.0: must be in (0, 1]"),
    (StepScheduleConfig, {"gamma": 1.5}, "schedule.gamma=1.5: must be in (0, 1]"),
    (StepScheduleConfig, {"step_size": 0}, "schedule.step_size=0: must be >= 1"),
    (ExponentialScheduleConfig, {"gamma": 0.0}, "schedule.gamma=0.0: must be in (0, 1]"),
    (ExponentialScheduleConfig, {"gamma": 1.01}, "schedule.gamma=1.01: must be in (0, 1]"),
    (CosineScheduleConfig, {"min_lr": -0.1}, "schedule.min_lr=-0.1: must be >= 0"),
    (CosineScheduleConfig, {"total": 0}, "schedule.total=0: must be >= 1"),
    (WarmupCosineScheduleConfig, {"warmup": 0}, "schedule.warmup=0: must be >= 1"),
    (WarmupCosineScheduleConfig, {"total": 0}, "schedule.total=0: must be >= 1"),
    (WarmupCosineScheduleConfig, {"min_lr": -1.0}, "schedule.min_lr=-1.0: must be >= 0"),
    (PlateauScheduleConfig, {"factor": 1.0}, "schedule.factor=1.0: must be in (0, 1)"),
    (PlateauScheduleConfig, {"factor": 0.0}, "schedule.factor=0.0: must be in (0, 1)"),
    (PlateauScheduleConfig, {"patience": -1}, "schedule.patience=-1: must be >= 0"),
    (RegularizationConfig, {"l2": -0.1}, "regularization.l2=-0.1: must be >= 0"),
    (RegularizationConfig, {"dropout": 1.0}, "regularization.dropout=1.0: must be in [0, 1)"),
    (RegularizationConfig, {"dropout": -0.1}, "regularization.dropout=-0.1: must be in [0, 1)"),
    (RegularizationConfig, {"patience": 0}, "regularization.patience=0: must be >= 1"),
    (RegularizationConfig, {"min_delta": -1.0}, "regularization.min_delta=-1.0: must be >= 0"),
    (GradClipConfig, {"norm": 0.0}, "trainer.grad_clip.norm=0.0: must be > 0"),
    (GradClipConfig, {"value": -1.0}, "trainer.grad_clip.value=-1.0: must be > 0"),
    (TrainerConfig, {"epochs": 0}, "trainer.epochs=0: must be >= 1"),
    (TrainerConfig, {"batch_size": 0}, "trainer.batch_size=0: must be >= 1"),
    (TrainerConfig, {"dtype": "float16"}, "trainer.dtype='float16': allowed: float32, float64"),
    (TrainerConfig, {"seed": -1}, "trainer.seed=-1: must be >= 0"),
    (TrainerConfig, {"checkpoint_every": -1}, "trainer.checkpoint_every=-1: must be >= 0"),
    (TrainerConfig, {"checkpoint_keep": -1}, "trainer.checkpoint_keep=-1: must be >= 0"),
    (
        TrainerConfig,
        {"checkpoint_every_s": -0.5},
        "trainer.checkpoint_every_s=-0.5: must be >= 0 (seconds)",
    ),
    (TrainerConfig, {"log_every": 0}, "trainer.log_every=0: must be >= 1"),
    (TrainerConfig, {"stats_every": 0}, "trainer.stats_every=0: must be >= 1"),
    (
        TrainerConfig,
        {"stats": ["grad_norm", "weights"]},
        "trainer.stats[]='weights': allowed: activations, grad_norm, output, update_ratio, "
        "weight_norm",
    ),
    (TrainerConfig, {"nan_policy": "ignore"}, "trainer.nan_policy='ignore': allowed: raise, stop"),
    (
        TrainerConfig,
        {"resume": "  "},
        "trainer.resume='  ': must be a checkpoint path, runs:/RUN_ID[/path], or last",
    ),
    (
        TrainerConfig,
        {"objective": "test/loss"},
        "trainer.objective='test/loss': must be a train/ or val/ metric, e.g. val/loss",
    ),
    (
        TrainerConfig,
        {"objective_mode": "up"},
        "trainer.objective_mode='up': allowed: auto, max, min",
    ),
    (TrackingConfig, {"experiment": ""}, "tracking.experiment='': must not be empty"),
    (
        TrackingConfig,
        {"flush_every_s": -1.0},
        "tracking.flush_every_s=-1.0: must be >= 0 (seconds)",
    ),
    (
        TrackingConfig,
        {"retry_every_s": -1.0},
        "tracking.retry_every_s=-1.0: must be >= 0 (seconds)",
    ),
]


@pytest.mark.parametrize(
    ("schema", "kwargs", "message"),
    REFUSED,
    ids=[f"{s.__name__}-{'-'.join(k)}" for s, k, _ in REFUSED],
)
def test_a_bad_value_is_refused_naming_key_value_and_rule(schema, kwargs, message):
    with pytest.raises(ConfigError) as info:
        schema(**kwargs)
    assert str(info.value) == message


ACCEPTED = [
    (ModelConfig, {"hidden": [1]}),
    (ModelConfig, {"hidden": [3, 1, 2], "dropout": 0.0}),
    (ModelConfig, {"dropout": 0.99, "activation": "linear", "output": "mse"}),
    (ModelConfig, {"init": "normal", "init_scale": 1e-9}),
    (ModelConfig, {"init": "uniform", "init_scale": 2.0}),
    (ModelConfig, {"activation": "leaky_relu", "alpha": 0.2}),
    (ModelConfig, {"activation": "elu", "alpha": 0.0}),
    (ModelConfig, {"output": "auto"}),
    (SGDConfig, {"lr": 1e-12, "momentum": 0.0}),
    (SGDConfig, {"momentum": 0.999, "nesterov": True}),
    (RMSpropConfig, {"rho": 0.0, "eps": 1e-30}),
    (AdamConfig, {"beta1": 0.0, "beta2": 0.0, "eps": 1e-30}),
    (AdamWConfig, {"weight_decay": 0.0}),
    (StepScheduleConfig, {"gamma": 1.0, "step_size": 1}),
    (ExponentialScheduleConfig, {"gamma": 1.0}),
    (ExponentialScheduleConfig, {"gamma": 1e-9}),
    (CosineScheduleConfig, {"min_lr": 0.0, "total": 1}),
    (CosineScheduleConfig, {"total": None}),
    (WarmupCosineScheduleConfig, {"warmup": 1, "total": None}),
    (PlateauScheduleConfig, {"factor": 0.999, "patience": 0}),
    (RegularizationConfig, {"l2": 0.0, "dropout": 0.0, "patience": 1, "min_delta": 0.0}),
    (RegularizationConfig, {"dropout": None, "batch_norm": None}),
    (GradClipConfig, {"norm": 1e-9, "value": None}),
    (GradClipConfig, {"norm": None, "value": 1e-9}),
    (
        TrainerConfig,
        {
            "epochs": 1,
            "batch_size": 1,
            "dtype": "float64",
            "seed": 0,
            "checkpoint_every": 0,
            "checkpoint_every_s": 0.0,
            "checkpoint_keep": 0,
            "log_every": 1,
            "stats_every": 1,
            "stats": [],
            "nan_policy": "stop",
            "resume": "last",
            "objective": "train/acc",
        },
    ),
    (TrainerConfig, {"stats": ["grad_norm", "update_ratio", "activations"], "resume": None}),
    (TrainerConfig, {"objective": "val/custom", "objective_mode": "max"}),
    (TrackingConfig, {"experiment": "x", "flush_every_s": 0.0, "retry_every_s": 0.0}),
]


@pytest.mark.parametrize(("schema", "kwargs"), ACCEPTED)
def test_values_on_the_boundary_are_accepted(schema, kwargs):
    config = schema(**kwargs)
    for key, value in kwargs.items():
        assert getattr(config, key) == value


def test_every_default_is_valid():
    for schema in (
        ModelConfig, SGDConfig, RMSpropConfig, AdamConfig, AdamWConfig, StepScheduleConfig,
        ExponentialScheduleConfig, CosineScheduleConfig, WarmupCosineScheduleConfig,
        PlateauScheduleConfig, RegularizationConfig, GradClipConfig, TrainerConfig,
        TrackingConfig,
    ):  # fmt: skip
        schema()
    OptimizerConfig(name="sgd")


def test_an_objective_without_a_known_direction_names_the_fix():
    with pytest.raises(ConfigError) as info:
        TrainerConfig(objective="val/custom")
    message = str(info.value)
    assert message.startswith("trainer.objective='val/custom': no known direction for 'custom'")
    assert message.endswith("set trainer.objective_mode=min or max")
    spec = TrainerConfig(objective="val/acc").objective_spec()
    assert (spec.key, spec.direction) == ("val/acc", "max")
    assert TrainerConfig(objective="val/acc", objective_mode="min").objective_spec().direction == (
        "min"
    )
    assert issubclass(ConfigError, ValueError)


def test_register_configs_stores_every_schema_and_the_optuna_direction_resolver():
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from nnexp.config import SCHEMAS, Config, register_configs

    store = ConfigStore.instance()
    saved = dict(store.repo)
    store.repo.clear()  # what this call stores, not what an earlier import left there
    try:
        register_configs()
        repo = dict(store.repo)
    finally:
        store.repo.clear()
        store.repo.update(saved)
    assert set(repo) == {"base_config.yaml", "schema"}
    assert repo["base_config.yaml"].node == OmegaConf.structured(Config)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            stored = repo["schema"][group][f"{name}.yaml"].node
            assert stored == OmegaConf.structured(schema), (group, name)
    cfg = OmegaConf.create(
        {
            "loss": "${nnexp.optuna_direction:val/loss}",
            "acc": "${nnexp.optuna_direction:val/acc,auto}",
            "forced": "${nnexp.optuna_direction:val/acc,min}",
        }
    )
    assert (cfg.loss, cfg.acc, cfg.forced) == ("minimize", "maximize", "minimize")


def test_a_fields_own_rule_and_its_note_are_in_the_error():
    from nnexp.config import TrackingConfig, TrainerConfig

    with pytest.raises(ConfigError, match=r"must be dynamic, none or a number > 0"):
        TrainerConfig(loss_scale="lots")
    with pytest.raises(ConfigError, match=r"\(seconds\)"):
        TrackingConfig(flush_every_s=-1.0)


def test_mixed_precision_keeps_float32_master_weights_and_dtype_is_precisions_alias():
    from nnexp.config import TrainerConfig

    assert TrainerConfig(precision="mixed").master_dtype() == "float32"
    assert TrainerConfig(precision="float64").master_dtype() == "float64"
    assert TrainerConfig(dtype="float64").precision_of() == "float64"
    with pytest.raises(ConfigError, match=r"^trainer\.dtype='float64': an alias"):
        TrainerConfig(precision="float32", dtype="float64")


@pytest.mark.parametrize("name", ["..up", ".", " ", "", "a/b", "a:b", "a%2F", "a\\b"])
def test_a_name_the_model_registry_refuses_is_an_error_naming_the_key(name):
    from nnexp.config import TrackingConfig

    with pytest.raises(ConfigError, match=r"^tracking\.register_as="):
        TrackingConfig(register_as=name)
    assert TrackingConfig(register_as="iris.v2").register_as == "iris.v2"
    assert TrackingConfig(register_as="XGB x.v2").register_as == "XGB x.v2"  # X and spaces: fine
    with pytest.raises(ConfigError, match=r"^tracking\.register_as=.*needs tracking\.enabled"):
        TrackingConfig(enabled=False, register_as="iris")


def test_params_are_the_hyperparameters_and_the_trainers_bookkeeping_is_not():
    from nnexp.config import TRAINER_BOOKKEEPING, is_hyperparameter

    for key in ("seed", "model.hidden", "optimizer.lr", "schedule.total", "dataset.n_samples",
                "regularization.l2", "trainer.epochs", "trainer.grad_clip.norm",
                "trainer.early_stopping.patience"):  # fmt: skip
        assert is_hyperparameter(key), key
    for key in ("tracking.uri", "tags.team", "paths.root", "extras.print_config", "lr"):
        assert not is_hyperparameter(key), key
    assert all(not is_hyperparameter(f"trainer.{k}") for k in TRAINER_BOOKKEEPING)
    # The trainer's first key decides, not its last: a bookkeeping name deeper down is a param.
    assert is_hyperparameter("trainer.grad_clip.stats")
    assert not is_hyperparameter("trainer.stats.grad_norm")


def test_nested_tags_are_named_with_dots_beside_the_flat_ones():
    from nnexp.config import user_tags

    tags = {"team": {"lead": "ana", "size": 3}, "dev": True, "a": {"b": {"c": "d"}}}
    assert user_tags(tags) == {"team.lead": "ana", "team.size": "3", "dev": "true", "a.b.c": "d"}
    with pytest.raises(
        ConfigError, match=r"^tags\.empty=\{\}: must be a string, number or boolean$"
    ):
        user_tags({"empty": {}})


def test_tags_a_list_of_names_each_true_and_every_refusal_word_for_word():
    from nnexp.config import TAG_FORMS, user_tags

    assert user_tags(None) == {}
    assert user_tags(["dev", 7]) == {"dev": "true", "7": "true"}
    assert user_tags({"n": 3, "x": 0.5, "on": False}) == {"n": "3", "x": "0.5", "on": "false"}
    for bad in (True, 1.5, None):
        with pytest.raises(ConfigError) as err:
            user_tags(["dev", bad])
        assert str(err.value) == (
            f"tags={['dev', bad]!r}: tag names must be words or numbers: {bad!r} is not"
        )
    with pytest.raises(ConfigError) as err:
        user_tags("dev")
    assert str(err.value) == f"tags='dev': must be {TAG_FORMS}"
    with pytest.raises(ConfigError) as err:
        user_tags({"diverged": "yes"})
    assert str(err.value) == (
        "tags='diverged': nnexp or MLflow sets this tag itself; choose another name"
    )
    with pytest.raises(ConfigError) as err:
        user_tags(["a*b"])
    assert str(err.value) == (
        "tags='a*b': names may only contain letters, digits, underscores, dashes, periods, "
        "spaces, colons and slashes"
    )


def test_the_cross_field_refusals_word_for_word():
    from nnexp.config import TrackingConfig

    with pytest.raises(ConfigError) as err:
        TrackingConfig(enabled=False, register_as="iris")
    assert str(err.value) == (
        "tracking.register_as='iris': needs tracking.enabled=true (an untracked run logs no "
        "model to register)"
    )
    with pytest.raises(ConfigError) as err:
        TrainerConfig(precision="float32", loss_scale="dynamic")
    assert str(err.value) == (
        "trainer.precision (with trainer.loss_scale)='float32': loss scaling needs mixed"
    )


def test_schema_class_names_are_the_registry_names_in_camel_case():
    from nnexp.config import _camel

    assert _camel("reduce_on_plateau") == "ReduceOnPlateau"
    assert _camel("adamw") == "Adamw" and _camel("") == ""


def test_trainer_early_stopping_keys_win_over_their_alias_and_need_patience():
    from nnexp.config import Config, EarlyStoppingConfig, EarlyStoppingSettings, TrainerConfig

    def cfg(es: EarlyStoppingConfig, **reg) -> Config:
        return small_config(
            trainer=TrainerConfig(epochs=2, early_stopping=es),
            regularization=RegularizationConfig(**reg),
        )

    assert cfg(EarlyStoppingConfig()).early_stopping() is None
    mine = cfg(EarlyStoppingConfig(patience=4, min_delta=0.1, restore_best=False),
               early_stopping=True, patience=9, min_delta=0.5, restore_best=True)  # fmt: skip
    assert mine.early_stopping() == EarlyStoppingSettings(4, 0.1, False)
    alias = cfg(EarlyStoppingConfig(), early_stopping=True, patience=9, min_delta=0.5)
    assert alias.early_stopping() == EarlyStoppingSettings(9, 0.5, True)
    for key, value in (("min_delta", 0.1), ("restore_best", False)):
        with pytest.raises(ConfigError) as info:
            cfg(EarlyStoppingConfig(**{key: value}))
        assert str(info.value) == (
            f"trainer.early_stopping.{key}={value!r}: early stopping is off: turn it on with "
            "trainer.early_stopping.patience=N"
        )
    cfg(EarlyStoppingConfig(min_delta=0.1), early_stopping=True)  # on by its alias: fine
    with pytest.raises(ConfigError, match=r"^trainer\.early_stopping\.patience=0: must be >= 1"):
        EarlyStoppingConfig(patience=0)
    with pytest.raises(ConfigError, match=r"^tags='a#b': "):
        small_config(tags="a#b")  # the tags are checked with the rest of the config


def test_tag_values_keep_their_case_and_booleans_are_lower_case():
    from nnexp.config import user_tags

    assert user_tags({"team": "ABC", "dev": True, "n": 2}) == {
        "team": "ABC",
        "dev": "true",
        "n": "2",
    }
