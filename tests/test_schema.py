"""nnexp.schema: field metadata (bounded, choice, checked) and its one checker, as the config
schemas and the dataset specs use it; non-finite numbers refused where a finite one is needed."""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import ClassVar

import nnexp.conf
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from nnexp import cli
from nnexp.config import (
    SCHEMAS,
    AdamConfig,
    AdamWConfig,
    ConfigError,
    CosineScheduleConfig,
    GradClipConfig,
    ModelConfig,
    PlateauScheduleConfig,
    RegularizationConfig,
    RMSpropConfig,
    SGDConfig,
    StepScheduleConfig,
    TrackingConfig,
    TrainerConfig,
    WarmupCosineScheduleConfig,
)
from nnexp.nn import OPTIMIZERS, SCHEDULES
from nnexp.schema import bounded, check_fields, checked, choice, default_of, describe

NON_FINITE = [math.inf, -math.inf, math.nan]

# (schema, the other kwargs the value needs, field, its key)
FINITE_FIELDS = [
    (ModelConfig, {"activation": "elu"}, "alpha", "model.alpha"),
    (ModelConfig, {"init": "normal"}, "init_scale", "model.init_scale"),
    (SGDConfig, {}, "lr", "optimizer.lr"),
    (RMSpropConfig, {}, "lr", "optimizer.lr"),
    (RMSpropConfig, {}, "eps", "optimizer.eps"),
    (AdamConfig, {}, "lr", "optimizer.lr"),
    (AdamConfig, {}, "eps", "optimizer.eps"),
    (AdamWConfig, {}, "weight_decay", "optimizer.weight_decay"),
    (CosineScheduleConfig, {}, "min_lr", "schedule.min_lr"),
    (WarmupCosineScheduleConfig, {}, "min_lr", "schedule.min_lr"),
    (PlateauScheduleConfig, {}, "min_lr", "schedule.min_lr"),
    (PlateauScheduleConfig, {}, "min_delta", "schedule.min_delta"),
    (RegularizationConfig, {}, "l2", "regularization.l2"),
    (RegularizationConfig, {}, "min_delta", "regularization.min_delta"),
    (GradClipConfig, {}, "norm", "trainer.grad_clip.norm"),
    (GradClipConfig, {}, "value", "trainer.grad_clip.value"),
]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    ("schema", "others", "name", "key"),
    FINITE_FIELDS,
    ids=[f"{s.__name__}.{n}" for s, _, n, _ in FINITE_FIELDS],
)
def test_a_non_finite_number_is_refused_where_a_finite_one_is_needed(
    schema, others, name, key, value
):
    with pytest.raises(ConfigError) as info:
        schema(**others, **{name: value})
    assert str(info.value) == f"{key}={value!r}: must be a finite number"


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    ("schema", "name", "rule"),
    [
        (SGDConfig, "momentum", "must be in [0, 1)"),
        (AdamConfig, "beta2", "must be in [0, 1)"),
        (StepScheduleConfig, "gamma", "must be in (0, 1]"),
        (PlateauScheduleConfig, "factor", "must be in (0, 1)"),
        (ModelConfig, "dropout", "must be in [0, 1)"),
        (RegularizationConfig, "dropout", "must be in [0, 1)"),
    ],
)
def test_an_interval_refuses_non_finite_numbers_by_its_own_rule(schema, name, rule, value):
    with pytest.raises(ConfigError) as info:
        schema(**{name: value})
    assert str(info.value).endswith(f"={value!r}: {rule}")


def test_a_duration_may_be_infinite_but_not_nan():
    """`inf` seconds is a meaningful "never" (only the first and final checkpoint; no
    periodic flush, no retry); nan is nothing and fails its bound."""
    TrainerConfig(checkpoint_every_s=math.inf)
    TrackingConfig(flush_every_s=math.inf, retry_every_s=math.inf)
    with pytest.raises(ConfigError) as info:
        TrainerConfig(checkpoint_every_s=math.nan)
    assert str(info.value) == "trainer.checkpoint_every_s=nan: must be >= 0 (seconds)"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=inf", "optimizer.lr=inf: must be a finite number"),
        ("optimizer.lr=nan", "optimizer.lr=nan: must be a finite number"),
        ("regularization.l2=inf", "regularization.l2=inf: must be a finite number"),
        ("trainer.grad_clip.norm=inf", "trainer.grad_clip.norm=inf: must be a finite number"),
        ("model.init_scale=-inf", "model.init_scale=-inf: must be a finite number"),
    ],
)
def test_a_non_finite_override_fails_validation_before_training(override, message):
    """Through Hydra's composition and the runner's validation (`optimizer.lr=inf` used to be
    accepted and then diverge at step 1)."""
    with initialize_config_module("nnexp.conf", version_base="1.3"):
        cfg = compose("config", overrides=[override, "tracking.enabled=false"])
    with pytest.raises(ConfigError) as info:
        cli.validated(cfg)
    assert str(info.value) == message


# --- the checker itself ---------------------------------------------------------------------------


def _fail(key, value, rule):
    return ValueError(f"{key}={value!r}: {rule}")


@dataclass
class _Schema:
    plain: int = 3
    low: float = bounded(0.5, ge=0, lt=1)
    high: float = bounded(0.5, gt=0, le=1)
    open_: float = bounded(0.5, gt=0, lt=1)
    seconds: float = bounded(1.0, ge=0, note="(seconds)")
    maybe: float | None = bounded(None, gt=0, finite=True)
    kind: str = choice("a", ("b", "a"))
    kinds: list[str] = choice(["a"], ("b", "a"))  # noqa: RUF009 (a default_factory field)
    word: str = checked("x", bool, "must not be empty")


def test_rules_render_as_intervals_or_single_bounds_with_their_note():
    assert describe({"ge": 0, "lt": 1}) == "must be in [0, 1)"
    assert describe({"gt": 0, "le": 1}) == "must be in (0, 1]"
    assert describe({"gt": 0.0, "lt": 1.0}) == "must be in (0.0, 1.0)"
    assert describe({"ge": 1}) == "must be >= 1"
    assert describe({"gt": 0}) == "must be > 0"
    assert describe({"ge": 0, "note": "(seconds)"}) == "must be >= 0 (seconds)"
    # spelled out, as nnexp.data's messages are
    assert describe({"gt": 0.0, "lt": 1.0}, interval=False) == "must be > 0.0 and < 1.0"
    assert describe({"ge": 0, "le": 4}, interval=False) == "must be >= 0 and <= 4"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 1.0}, "s.low=1.0: must be in [0, 1)"),
        ({"high": 0}, "s.high=0: must be in (0, 1]"),
        ({"open_": 1}, "s.open_=1: must be in (0, 1)"),
        ({"seconds": -1}, "s.seconds=-1: must be >= 0 (seconds)"),
        ({"maybe": math.inf}, "s.maybe=inf: must be a finite number"),
        ({"maybe": 0.0}, "s.maybe=0.0: must be > 0"),
        ({"maybe": True}, "s.maybe=True: must be a finite number"),
        ({"kind": "c"}, "s.kind='c': allowed: a, b"),
        ({"kinds": ["a", "c"]}, "s.kinds[]='c': allowed: a, b"),
        ({"word": ""}, "s.word='': must not be empty"),
    ],
)
def test_the_checker_names_the_first_broken_rule(kwargs, message):
    with pytest.raises(ValueError) as info:
        check_fields(_Schema(**kwargs), _Schema, _fail, prefix="s.")
    assert str(info.value) == message


def test_the_checker_accepts_boundaries_none_and_fields_without_rules():
    check_fields(_Schema(), _Schema, _fail)
    fine = _Schema(plain=-7, low=0, high=1, maybe=None, seconds=math.inf, kinds=[])
    check_fields(fine, _Schema, _fail)


def test_list_defaults_are_fresh_per_instance_and_readable():
    a, b = _Schema(), _Schema()
    a.kinds.append("b")
    assert b.kinds == ["a"] and default_of(_Schema, "kinds") == ["a"]
    assert default_of(_Schema, "low") == 0.5

    @dataclass
    class Required:
        name: str

    assert default_of(Required, "name") is MISSING  # no default: none is made up
    assert default_of(TrainerConfig, "stats") == [
        "grad_norm",
        "update_ratio",
        "activations",
        "weight_norm",
        "output",
    ]


# --- each default stated once: the YAML holds only what differs from its schema ----------------

CONF = Path(nnexp.conf.__file__).parent


def _yaml_options() -> list:
    return [
        pytest.param(group, path, id=f"{group}={path.stem}")
        for group in ("model", "optimizer", "schedule", "regularization", "dataset")
        for path in sorted((CONF / group).glob("*.yaml"))
    ]


@pytest.mark.parametrize(("group", "path"), _yaml_options())
def test_a_group_option_sets_only_values_that_differ_from_its_schema(group, path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    (schema_ref,) = [d for d in node.pop("defaults") if str(d).startswith("/schema/")]
    name = schema_ref.removeprefix(f"/schema/{group}/").removesuffix("@_here_")
    schema = SCHEMAS[group][name]
    same = {k: v for k, v in node.items() if v == default_of(schema, k)}
    assert not same, f"{path.name} repeats {schema.__name__}'s defaults: {same}"


def test_the_primary_config_repeats_no_trainer_or_tracking_default():
    node = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    for key, schema in (("trainer", TrainerConfig), ("tracking", TrackingConfig)):
        same = {k: v for k, v in node.get(key, {}).items() if v == default_of(schema, k)}
        assert not same, f"config.yaml repeats {schema.__name__}'s defaults: {same}"


@pytest.mark.parametrize(
    ("group", "name"),
    [(g, n) for g in ("optimizer", "schedule") for n in SCHEMAS[g]],
)
def test_optimizer_and_schedule_defaults_are_the_numpy_classes_own(group, name):
    """`nnexp.nn` states them (its classes stand alone); the schema reads them."""
    cls = (OPTIMIZERS if group == "optimizer" else SCHEDULES)[name]
    init = inspect.signature(cls.__init__).parameters
    for f in fields(SCHEMAS[group][name]):
        if f.name in init and init[f.name].default is not inspect.Parameter.empty:
            assert default_of(SCHEMAS[group][name], f.name) == init[f.name].default, f.name


def test_nnexp_nn_imports_on_its_own():
    code = "import sys, nnexp.nn; print(sorted(m for m in sys.modules if m.startswith('nnexp')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    leaf = {"nnexp.names", "nnexp.objective", "nnexp.schema", "nnexp.timing"}  # below nn
    assert all(m == "nnexp" or m.startswith("nnexp.nn") or m in leaf for m in loaded), loaded


# --- one key per knob: regularization owns dropout and batch_norm; model's are aliases ----------


@pytest.mark.parametrize(
    ("model", "regularization", "dropout", "batch_norm"),
    [
        ({}, {}, 0.0, False),  # neither set: off
        ({"dropout": 0.3, "batch_norm": True}, {}, 0.3, True),  # the alias alone
        ({}, {"dropout": 0.2, "batch_norm": True}, 0.2, True),  # the knob's own key
        ({"dropout": 0.1, "batch_norm": True}, {"dropout": 0.4, "batch_norm": False}, 0.4, False),
        ({"dropout": 0.5}, {"dropout": 0.0}, 0.0, False),  # an explicit 0 wins too
    ],
)
def test_regularization_owns_dropout_and_batch_norm_and_model_keys_are_aliases(
    model, regularization, dropout, batch_norm
):
    m, reg = ModelConfig(**model), RegularizationConfig(**regularization)
    assert reg.dropout_of(m) == dropout and reg.batch_norm_of(m) is batch_norm


def test_the_aliases_are_unset_by_default():
    with initialize_config_module("nnexp.conf", version_base="1.3"):
        cfg = compose("config", overrides=["regularization=dropout"])
    assert cfg.model.dropout is None and cfg.model.batch_norm is None
    assert cfg.regularization.dropout == 0.2 and cfg.regularization.batch_norm is None


# --- the field builders and the nn schemas, called here (not only at import) -------------------
# The schemas are built when nnexp.config is imported, before any test runs: mutation testing
# (tests/mutants.md) could only see a change to these functions through a call made by a test.


def test_each_field_builder_puts_its_rules_in_the_metadata_and_drops_the_unset_ones():
    from dataclasses import MISSING

    from nnexp.schema import bounded, checked, choice

    f = bounded(0.5, ge=0, lt=1, finite=True, note="(s)")
    assert (f.default, dict(f.metadata)) == (0.5, {"ge": 0, "lt": 1, "finite": True, "note": "(s)"})
    assert dict(bounded(1, gt=0).metadata) == {"gt": 0}  # None and False are not rules
    assert dict(choice("a", ("a", "b")).metadata) == {"choices": ("a", "b")}
    assert choice("a", ("a", "b")).default == "a"
    test = str.isupper
    f = checked("X", test, "must be upper case")
    assert (f.default, dict(f.metadata)) == ("X", {"test": test, "rule": "must be upper case"})
    listed = checked([1, 2], bool, "non-empty")
    assert listed.default is MISSING and listed.default_factory() == [1, 2]
    assert listed.default_factory() is not listed.default_factory()  # a fresh list each time
    assert dict(listed.metadata) == {"test": bool, "rule": "non-empty"}


def test_an_nn_classs_schema_has_a_field_per_limit_with_its_init_default():
    from dataclasses import fields as dc_fields

    from nnexp.config import OptimizerConfig, ScheduleConfig, nn_schema
    from nnexp.nn.optim import SGD, AdamW
    from nnexp.nn.schedules import Constant, Cosine

    sgd = nn_schema(SGD, "sgd", OptimizerConfig, "SGDTestConfig")
    assert sgd.__name__ == "SGDTestConfig" and sgd.__module__ == "nnexp.config"
    assert issubclass(sgd, OptimizerConfig)
    by_name = {f.name: f for f in dc_fields(sgd)}
    assert by_name["name"].default == "sgd"
    assert (by_name["lr"].default, dict(by_name["lr"].metadata)) == (0.1, {"gt": 0, "finite": True})
    assert by_name["momentum"].default == 0.0 and by_name["momentum"].type is float
    assert by_name["nesterov"].type is bool
    # A required argument (a cosine's total: the runner fills it in) is optional, unset.
    cosine = {f.name: f for f in dc_fields(nn_schema(Cosine, "cosine", ScheduleConfig, "C"))}
    assert cosine["total"].default is None and cosine["total"].type == int | None
    assert cosine["min_lr"].default == 0.0 and cosine["min_lr"].type is float
    # AdamW passes Adam's keywords on: their defaults come from Adam's __init__.
    adamw = {f.name: f.default for f in dc_fields(nn_schema(AdamW, "adamw", OptimizerConfig, "W"))}
    assert adamw["beta1"] == 0.9 and adamw["eps"] == 1e-8
    # No key of its own: the base schema itself.
    assert nn_schema(Constant, "constant", ScheduleConfig, "K") is ScheduleConfig
    assert by_name["name"].type is str


def test_a_limit_that_init_does_not_take_is_a_clear_error():
    from nnexp.config import OptimizerConfig, nn_schema
    from nnexp.nn.optim import SGD

    class Odd(SGD):
        limits: ClassVar[dict] = {"speed": {"gt": 0}}

    with pytest.raises(
        TypeError, match=r"^Odd: limits name 'speed', which __init__ does not take$"
    ):
        nn_schema(Odd, "odd", OptimizerConfig, "OddConfig")


def test_the_config_resolvers_registered_again_give_what_the_configs_use(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    from nnexp import help as app_help
    from nnexp.config import register_configs

    names = ("nnexp.project_root", "nnexp.optuna_direction", "nnexp.help_groups", "nnexp.help_keys")
    try:
        for n in names:
            OmegaConf.clear_resolver(n)
        monkeypatch.setenv("NNEXP_ROOT", str(tmp_path))
        register_configs()
        assert all(OmegaConf.has_resolver(n) for n in names)
        conf = OmegaConf.create(
            {
                "root": "${nnexp.project_root:}",
                "up": "${nnexp.optuna_direction:val/acc}",
                "down": "${nnexp.optuna_direction:val/acc,min}",
                "loss": "${nnexp.optuna_direction:val/loss,auto}",
            }
        )
        assert (conf.root, conf.up, conf.down, conf.loss) == (
            str(tmp_path.resolve()), "maximize", "minimize", "minimize",
        )  # fmt: skip
        keys = OmegaConf.create({"a": 1, "k": "${nnexp.help_keys:}"})
        assert keys.k == app_help.keys(keys)
    finally:  # registered afresh for the rest of the session, whatever happened above
        for n in names:
            OmegaConf.clear_resolver(n)
        register_configs()


def test_unknown_keys_are_the_attributes_beyond_the_schema_at_any_depth_sorted():
    from nnexp.schema import unknown_keys

    @dataclass
    class Inner:
        a: int = 1

    @dataclass
    class Outer:
        inner: Inner
        b: int = 2

    config = Outer(Inner())
    assert unknown_keys(config) == []
    config.zeta, config._private = 1, 2  # what +zeta=1 forces in; private names are ours
    config.inner.extra = 3
    config.alpha = 4
    assert unknown_keys(config) == ["alpha", "inner.extra", "zeta"]
    assert unknown_keys(config.inner, "model.") == ["model.extra"]
    assert unknown_keys(Outer) == [] and unknown_keys({"x": 1}) == []  # a class, not a dataclass


def test_a_two_sided_bound_reads_as_an_interval_unless_asked_otherwise():
    from nnexp.schema import bounded, check_fields, check_value

    def fail(key, value, allowed):
        return ValueError(f"{key}={value!r}: {allowed}")

    @dataclass
    class Limited:
        k: int = bounded(0, ge=0, le=10)

    rules = fields(Limited)[0].metadata
    for call, message in (
        (lambda: check_value("k", 11, rules, fail), "k=11: must be in [0, 10]"),
        (lambda: check_value("k", 11, rules, fail, interval=False), "k=11: must be >= 0 and <= 10"),
        (lambda: check_fields(Limited(11), Limited, fail), "k=11: must be in [0, 10]"),
        (lambda: check_fields(Limited(11), Limited, fail, interval=False),
         "k=11: must be >= 0 and <= 10"),
    ):  # fmt: skip
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
