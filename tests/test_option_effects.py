"""Every documented option has a test of its *effect*, not of its presence.

The README's config table, row by row (model, optimizer, schedule, regularization, then the
`trainer` and `tracking` keys listed under it; the dataset row is in
`test_option_effects_data.py`). Each test pins what the option does — exactly where a formula
says it, statistically (with tolerances from the sample size) where it draws random numbers —
and most run IN-PROCESS: the config is composed with Hydra's compose API and goes through the
CLI's own `nnexp.cli.run` (tracking off), `nnexp.build.build` or the library, so that a broken
mapping from config key to behaviour fails here as much as a broken layer does. Only the
options that live in the tracking layer (experiment, run name, logged metric steps and
families in MLflow) need the real CLI: one small subprocess run.

Where an existing test already pins an effect exactly, the row says so below instead of
testing it twice:

- activations' derivatives, every loss's gradient: tests/test_gradcheck.py
- every optimizer against its formula with explicit constructor arguments (default betas):
  tests/test_optim.py::test_step_matches_textbook_formula (here: through the config, with
  non-default values of every key, so an ignored key fails)
- schedule formulas on the classes: tests/test_layers.py::test_schedules (here: through the
  config and the trainer's epochs, the learning rate the optimizer actually used)
- initializer scales on `initialize`: tests/test_layers.py::test_initializer_scales (here:
  through `model.init`/`model.init_scale` into the built network, with distribution shape)
- `trainer.checkpoint_every_s`: tests/test_fast_path.py::test_throttled_checkpoints_...
- `trainer.nan_policy`: tests/test_nan.py; `trainer.resume`: tests/test_resume.py
- `tracking.uri`, `flush_every_s`, `retry_every_s`: tests/test_tracking.py,
  tests/test_tracking_faults.py
- `trainer.objective`, `regularization.early_stopping`/`patience`/`min_delta`/`restore_best`:
  owned by the objective-direction / early-stopping work (not tested here)
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from typing import ClassVar

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from test_optim import adam_ref, rmsprop_ref, sgd_ref

import nnexp.train
import nnexp.train.trainer as trainer_module
from nnexp import cli as nnexp_cli
from nnexp.build import build
from nnexp.config import ConfigError
from nnexp.nn import (
    MSE,
    BatchNorm1d,
    Dense,
    Dropout,
    SigmoidBCE,
    SoftmaxCrossEntropy,
    StepStats,
)
from nnexp.train import Callback, Trainer, TrainSettings, load_checkpoint
from nnexp.train.callbacks import EveryNEpochs

# Small and quick: 100 two-moons points (60 train), statistics and epoch checkpoints off.
BASE = (
    "dataset.n_samples=100",
    "trainer.epochs=2",
    "trainer.stats=[]",
    "trainer.checkpoint_every=0",
    "trainer.progress=false",
)
N_TRAIN = 60  # of BASE's 100 points: 20 validation, 20 test
FULL_BATCH = "trainer.batch_size=1000"  # one step per epoch, on the whole training split


# --- composing and running configs in this process -------------------------------------------


def _is_group(override: str) -> bool:
    return "." not in override.split("=", 1)[0]


@functools.cache
def _composed(groups: tuple[str, ...]):
    with initialize_config_module("nnexp.conf", version_base="1.3"):
        return compose(
            "config", overrides=[*groups, "tracking.enabled=false"], return_hydra_config=True
        )


def compose_cfg(*overrides: str):
    """The composed config (with its `hydra` node) for `overrides`: group choices go through
    Hydra's compose (cached: it takes ~0.2 s), `key=value` ones are merged on top (typed and
    checked against the schema like Hydra's own overrides)."""
    groups = tuple(o for o in overrides if _is_group(o))
    cfg = copy.deepcopy(_composed(groups))
    keys = [o for o in overrides if not _is_group(o)]
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(keys)) if keys else cfg


def _without_hydra(cfg):
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def conf_of(*overrides: str):
    """The validated config objects (`nnexp.config.Config`), as the runner sees them."""
    return nnexp_cli.validated(_without_hydra(compose_cfg(*overrides)))


def built(*overrides: str):
    return build(conf_of(*overrides))


class _Recorder(Callback):
    """The learning rate the optimizer held at each step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_batch_end(self, trainer, step, loss):
        self.lrs.append(trainer.optimizer.lr)


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """`nnexp.cli.run` in this process (tracking off, unless asked) on BASE + `overrides`;
    returns the Trainer it built (after training), with `initial` (the weights before the first
    step), `recorder` (the lr of every step) and `run_dir`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    captured: list[Trainer] = []

    class Spy(Trainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.initial = [p.value.copy() for p in self.params]
            self.recorder = _Recorder()
            self.callbacks.append(self.recorder)
            captured.append(self)

    monkeypatch.setattr(nnexp.train, "Trainer", Spy)
    counter = iter(range(1000))

    def run(*overrides: str) -> Trainer:
        cfg = compose_cfg(*BASE, *overrides)
        run_dir = tmp_path / f"run{next(counter)}"
        cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        nnexp_cli.run(_without_hydra(cfg))
        trainer = captured.pop()
        trainer.run_dir = run_dir
        return trainer

    return run


def raw_gradient(trainer: Trainer) -> list[np.ndarray]:
    """The gradient of the loss over the whole training split at the trainer's initial weights
    (what its single full-batch step saw, up to the order of the rows in the sums)."""
    for p, w in zip(trainer.params, trainer.initial, strict=True):
        np.copyto(p.value, w)
    d = trainer.data
    logits = trainer.model.forward(d.X_train, training=True)
    _, dlogits = trainer.loss.value_and_grad(logits, d.y_train)
    trainer.model.backward(dlogits)
    return [p.grad.copy() for p in trainer.params]


def applied_gradient(trainer: Trainer, lr: float) -> list[np.ndarray]:
    """What plain SGD at `lr` applied in its single step: (W0 - W1) / lr."""
    return [(w0 - p.value) / lr for p, w0 in zip(trainer.params, trainer.initial, strict=True)]


def dense_layers(model) -> list[Dense]:
    return [m for m in model.modules if isinstance(m, Dense)]


# === model =====================================================================================


def HE(fan_in: int) -> float:
    return math.sqrt(2 / fan_in)


@pytest.mark.parametrize(
    ("option", "hidden", "activation", "init_std"),
    [
        ("shallow", [16], "relu", HE),
        ("deep", [32] * 5, "relu", HE),
        ("wide", [256], "relu", HE),
        ("sigmoid_deep", [32] * 6, "sigmoid", lambda fan_in: 0.1),  # normal, init_scale 0.1
    ],
)
def test_model_options_build_the_documented_network(option, hidden, activation, init_std):
    """`model=<option>`: the widths, the activation and the init it names."""
    b = built(f"model={option}", "dataset.n_samples=100")
    layers = dense_layers(b.model)
    assert [layer.W.value.shape for layer in layers] == list(
        zip([2, *hidden], [*hidden, 1], strict=True)
    )
    kinds = [m.kind for m in b.model.modules if not isinstance(m, Dense)]
    assert kinds == [activation] * len(hidden)
    # every weight in units of its layer's documented std: one sample of std 1
    z = np.concatenate(
        [(layer.W.value / init_std(layer.W.value.shape[0])).ravel() for layer in layers]
    )
    assert z.std() == pytest.approx(1.0, rel=6 / math.sqrt(2 * z.size))


def test_hidden_sets_the_layer_widths():
    b = built("model.hidden=[7,3,5]", "dataset=blobs", "dataset.n_samples=90")
    shapes = [layer.W.value.shape for layer in dense_layers(b.model)]
    assert shapes == [(2, 7), (7, 3), (3, 5), (5, 3)]  # blobs: 2 features, 3 classes
    x = b.data.X_train[:4]
    assert b.model.forward(x).shape == (4, 3)


X_ACT = np.array([[-3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0]])


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATION_FORMULAS = {
    "relu": ([], lambda x: np.maximum(x, 0)),
    "leaky_relu": ([], lambda x: np.where(x > 0, x, 0.01 * x)),  # default alpha 0.01
    "leaky_relu alpha=0.2": (["model.alpha=0.2"], lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": ([], lambda x: np.where(x > 0, x, np.expm1(x))),  # default alpha 1
    "elu alpha=0.5": (["model.alpha=0.5"], lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    "tanh": ([], np.tanh),
    "sigmoid": ([], lambda x: 1 / (1 + np.exp(-x))),
    "gelu": ([], _gelu),  # the tanh approximation, as documented in nnexp.nn.activations
    "identity": ([], lambda x: x),
}


@pytest.mark.parametrize("case", ACTIVATION_FORMULAS)
def test_activation_and_alpha_compute_what_they_say(case):
    """`model.activation` (and `model.alpha` for leaky_relu and elu): the built network's
    activation layer computes the formula. (Their derivatives: tests/test_gradcheck.py.)"""
    extra, formula = ACTIVATION_FORMULAS[case]
    name = case.split()[0]
    b = built(f"model.activation={name}", *extra, "trainer.dtype=float64", "model.hidden=[7]")
    (layer,) = [m for m in b.model.modules if m.kind == name]
    for training in (False, True):
        got = layer.forward(X_ACT.copy(), training=training)  # copy: mlp's layers run in place
        np.testing.assert_allclose(got, formula(X_ACT), rtol=1e-12, atol=1e-15)
    # ...and the network is that activation between its dense layers
    W0, b0 = b.model.modules[0].W.value, b.model.modules[0].b.value
    x = b.data.X_train[:5]
    hidden = formula(x @ W0 + b0)
    W1, b1 = b.model.modules[-1].W.value, b.model.modules[-1].b.value
    np.testing.assert_allclose(b.model.forward(x), hidden @ W1 + b1, rtol=1e-10, atol=1e-12)


def test_gelu_is_the_gaussian_error_linear_unit():
    from math import erf

    exact = np.array([0.5 * x * (1 + erf(x / math.sqrt(2))) for x in X_ACT[0]])
    np.testing.assert_allclose(_gelu(X_ACT[0]), exact, atol=1e-3)


BIG = ("model.hidden=[256,256]", "trainer.dtype=float64", "dataset.n_samples=100")
N_W = 256 * 256  # dense_1's weights: the sample the statistics below are taken on


def _kurtosis(w: np.ndarray) -> float:
    z = (w - w.mean()) / w.std()
    return float(np.mean(z**4))


INIT_CASES = {
    # name: (overrides, std, shape) — shape: "normal" (kurtosis 3) or "uniform" (1.8, bounded)
    "normal default": (["model.init=normal"], 0.01, "normal"),
    "normal init_scale": (["model.init=normal", "model.init_scale=0.3"], 0.3, "normal"),
    "uniform default": (["model.init=uniform"], 0.05 / math.sqrt(3), "uniform"),
    "uniform init_scale": (
        ["model.init=uniform", "model.init_scale=0.2"],
        0.2 / math.sqrt(3),
        "uniform",
    ),
    "xavier": (["model.init=xavier"], math.sqrt(2 / 512), "uniform"),
    "xavier_uniform": (["model.init=xavier_uniform"], math.sqrt(2 / 512), "uniform"),
    "xavier_normal": (["model.init=xavier_normal"], math.sqrt(2 / 512), "normal"),
    "he": (["model.init=he"], math.sqrt(2 / 256), "normal"),
    "he_normal": (["model.init=he_normal"], math.sqrt(2 / 256), "normal"),
    "he_uniform": (["model.init=he_uniform"], math.sqrt(2 / 256), "uniform"),
    "lecun_normal": (["model.init=lecun_normal"], math.sqrt(1 / 256), "normal"),
}


@pytest.mark.parametrize("case", INIT_CASES)
def test_init_and_init_scale_draw_the_documented_distribution(case):
    """`model.init`, `model.init_scale` (std of normal, limit of uniform): the built weights
    have the documented standard deviation (tolerance: 6 standard errors of a std over 65,536
    draws), mean 0, and the documented shape — a uniform is bounded by sqrt(3)·std with
    kurtosis 1.8, a normal reaches past 3.5·std with kurtosis 3. Biases start at 0."""
    overrides, std, shape = INIT_CASES[case]
    b = built(*overrides, *BIG)
    W = dense_layers(b.model)[1].W.value
    assert W.shape == (256, 256)
    kurtosis = 3.0 if shape == "normal" else 1.8
    se_std = math.sqrt((kurtosis - 1) / (4 * N_W))  # relative standard error of a sample std
    assert W.std() == pytest.approx(std, rel=6 * se_std)
    assert abs(W.mean()) < 6 * std / math.sqrt(N_W)
    assert _kurtosis(W) == pytest.approx(kurtosis, abs=6 * math.sqrt(24 / N_W) + 0.02)
    if shape == "uniform":
        limit = std * math.sqrt(3)
        assert np.abs(W).max() <= limit * (1 + 1e-12)
        assert np.abs(W).max() > limit * (1 - 1e-3)  # and fills it
    else:
        assert np.abs(W).max() > 3.5 * std
    assert all(not layer.b.value.any() for layer in dense_layers(b.model))


def test_zeros_init_gives_all_zero_weights_and_normal_is_seeded():
    b = built("model.init=zeros", *BIG)
    assert all(not p.value.any() for p in b.model.parameters())
    one, again = built("model.init=normal", *BIG), built("model.init=normal", *BIG)
    np.testing.assert_array_equal(one.model.modules[0].W.value, again.model.modules[0].W.value)


def _forward_until(model, x, stop_after: type, training: bool):
    """The output of the first module of type `stop_after` (and the modules before it)."""
    for m in model.modules:
        x = m.forward(x, training)
        if isinstance(m, stop_after):
            return x
    raise AssertionError(f"no {stop_after.__name__} in {model}")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.batch_norm=true"],
        ["regularization=batchnorm"],
        ["regularization.batch_norm=true"],
    ],
    ids=["model.batch_norm", "regularization=batchnorm", "regularization.batch_norm"],
)
def test_batch_norm_normalizes_each_unit_over_the_batch_in_training(overrides):
    b = built(*overrides, "trainer.dtype=float64", "model.hidden=[6]")
    assert [m.kind for m in b.model.modules] == ["dense", "batchnorm", "relu", "dense"]
    x = b.data.X_train * 3.0 + 5.0  # off-centre, wide: the dense outputs are too
    pre = b.model.modules[0].forward(x.copy())
    assert np.abs(pre.mean(axis=0)).max() > 0.5
    y = _forward_until(b.model, x.copy(), BatchNorm1d, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), pre.var(axis=0) / (pre.var(axis=0) + 1e-5))
    # at inference: the running statistics (fresh: mean 0, var 1 -> almost the identity)
    b2 = built(*overrides, "trainer.dtype=float64", "model.hidden=[6]")
    y_eval = _forward_until(b2.model, x.copy(), BatchNorm1d, training=False)
    np.testing.assert_allclose(y_eval, pre / np.sqrt(1 + 1e-5), rtol=1e-12)


def test_without_batch_norm_there_is_no_normalization():
    b = built("trainer.dtype=float64", "model.hidden=[6]")
    assert not any(isinstance(m, BatchNorm1d) for m in b.model.modules)
    # regularization.batch_norm=false overrides model.batch_norm=true
    b = built("model.batch_norm=true", "regularization.batch_norm=false")
    assert not any(isinstance(m, BatchNorm1d) for m in b.model.modules)


DROPOUT_CASES = {
    "model.dropout": (["model.dropout=0.5"], 0.5),
    "regularization.dropout": (["regularization.dropout=0.5"], 0.5),
    "regularization=dropout": (["regularization=dropout"], 0.2),
    "regularization=l2_dropout": (["regularization=l2_dropout"], 0.2),
    "regularization.dropout wins": (["model.dropout=0.1", "regularization.dropout=0.4"], 0.4),
}


@pytest.mark.parametrize("case", DROPOUT_CASES)
def test_dropout_masks_training_but_not_inference(case):
    """`model.dropout` / `regularization.dropout` (which, when set, wins): with the same
    weights, inference is identical with and without dropout; in training a fraction p of the
    hidden units is zeroed and the rest scaled by 1/(1-p), which changes the loss."""
    overrides, p = DROPOUT_CASES[case]
    common = ("trainer.dtype=float64", "model.hidden=[200]", "dataset.n_samples=500")
    plain, dropped = built(*common), built(*overrides, *common)
    (layer,) = [m for m in dropped.model.modules if isinstance(m, Dropout)]
    assert layer.p == pytest.approx(p)
    for a, b in zip(plain.model.parameters(), dropped.model.parameters(), strict=True):
        np.testing.assert_array_equal(a.value, b.value)  # same weights: dropout has its own RNG
    x, y = dropped.data.X_train, dropped.data.y_train
    np.testing.assert_array_equal(dropped.model.forward(x), plain.model.forward(x))
    # training mode: the mask
    h = _forward_until(plain.model, x.copy(), type(plain.model.modules[1]), training=True)
    hd = _forward_until(dropped.model, x.copy(), Dropout, training=True)
    alive = h > 0
    zeroed = np.mean(hd[alive] == 0)
    n = alive.sum()
    assert zeroed == pytest.approx(p, abs=6 * math.sqrt(p * (1 - p) / n))
    kept = hd[alive] != 0
    np.testing.assert_allclose(hd[alive][kept], h[alive][kept] / (1 - p), rtol=1e-12)
    train_plain = plain.loss.value(plain.model.forward(x, training=True), y)
    train_dropped = dropped.loss.value(dropped.model.forward(x, training=True), y)
    assert abs(train_dropped - train_plain) > 1e-4


def test_dropout_raises_the_training_loss_but_not_the_validation_loss(run_cli):
    """Through the runner: at a learning rate too small to move the weights, dropout makes the
    epoch's train/loss higher (the loss is convex in the logits, which are linear in the mask
    of the one hidden layer with mean 1: Jensen) while val/loss (inference) is the same."""
    common = ("optimizer.lr=1e-12", "trainer.dtype=float64", "dataset.n_samples=400")
    plain = run_cli(*common).history[0]
    dropped = run_cli(*common, "regularization.dropout=0.5").history[0]
    assert dropped["val/loss"] == pytest.approx(plain["val/loss"], abs=1e-9)
    assert dropped["train/loss"] > plain["train/loss"] + 0.01


def _logits_and_labels(n_out: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, n_out)), rng.integers(0, 2, 6)


@pytest.mark.parametrize(
    ("overrides", "loss_type", "n_out"),
    [
        (["model.output=auto"], SigmoidBCE, 1),  # two moons: binary
        (["model.output=sigmoid_bce"], SigmoidBCE, 1),
        (["model.output=softmax_cross_entropy"], SoftmaxCrossEntropy, 2),
        (["dataset=blobs", "model.output=auto"], SoftmaxCrossEntropy, 3),
        (["dataset=regression", "model.output=auto"], MSE, 1),
        (["dataset=regression", "model.output=mse"], MSE, 1),
    ],
)
def test_output_picks_the_stated_loss(overrides, loss_type, n_out):
    """`model.output`: the loss the trainer minimizes and the width of the output layer."""
    b = built(*overrides, "trainer.dtype=float64", "dataset.n_samples=100")
    assert type(b.loss) is loss_type and b.loss_name == loss_type.name
    assert dense_layers(b.model)[-1].W.value.shape[1] == n_out
    logits, labels = _logits_and_labels(n_out)
    if loss_type is SigmoidBCE:
        p = 1 / (1 + np.exp(-logits[:, 0]))
        expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    elif loss_type is SoftmaxCrossEntropy:
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        expected = -np.mean(log_p[np.arange(6), labels])
    else:
        labels = labels.astype(np.float64)
        expected = np.mean((logits[:, 0] - labels) ** 2)
    assert b.loss.value(logits, labels) == pytest.approx(expected, rel=1e-12)


def test_an_output_that_cannot_serve_the_task_is_refused():
    with pytest.raises(ConfigError, match=r"model\.output='mse': cannot serve a binary"):
        built("model.output=mse")
    with pytest.raises(ConfigError, match=r"model\.output='sigmoid_bce': cannot serve a multi"):
        built("model.output=sigmoid_bce", "dataset=blobs")


# === optimizer =================================================================================


# The textbook updates, one step of one parameter: the references of tests/test_optim.py.
_sgd, _rmsprop, _adam = sgd_ref, rmsprop_ref, adam_ref


OPTIMIZER_CASES = {
    # the group option with its own defaults...
    "sgd": (["optimizer=sgd"], _sgd(0.1)),
    "momentum": (["optimizer=momentum"], _sgd(0.05, 0.9)),
    "nesterov": (["optimizer=nesterov"], _sgd(0.05, 0.9, True)),
    "rmsprop": (["optimizer=rmsprop"], _rmsprop(0.001, 0.9, 1e-8)),
    "adam": (["optimizer=adam"], _adam(0.001, 0.9, 0.999, 1e-8)),
    "adamw": (["optimizer=adamw"], _adam(0.001, 0.9, 0.999, 1e-8, 0.01)),
    # ...and every key set away from its default: an ignored key fails
    "sgd lr": (["optimizer=sgd", "optimizer.lr=0.37"], _sgd(0.37)),
    "sgd momentum": (["optimizer=sgd", "optimizer.momentum=0.5"], _sgd(0.1, 0.5)),
    "momentum=0.3": (["optimizer=momentum", "optimizer.momentum=0.3"], _sgd(0.05, 0.3)),
    "nesterov momentum=0.6": (
        ["optimizer=nesterov", "optimizer.momentum=0.6", "optimizer.lr=0.2"],
        _sgd(0.2, 0.6, True),
    ),
    "momentum nesterov=true": (
        ["optimizer=momentum", "optimizer.nesterov=true"],
        _sgd(0.05, 0.9, True),
    ),
    "nesterov nesterov=false": (
        ["optimizer=nesterov", "optimizer.nesterov=false"],
        _sgd(0.05, 0.9, False),
    ),
    "rmsprop rho eps lr": (
        ["optimizer=rmsprop", "optimizer.rho=0.5", "optimizer.eps=0.3", "optimizer.lr=0.02"],
        _rmsprop(0.02, 0.5, 0.3),
    ),
    "adam beta1": (["optimizer=adam", "optimizer.beta1=0.5"], _adam(0.001, 0.5, 0.999, 1e-8)),
    "adam beta2": (["optimizer=adam", "optimizer.beta2=0.8"], _adam(0.001, 0.9, 0.8, 1e-8)),
    "adam eps lr": (
        ["optimizer=adam", "optimizer.eps=0.5", "optimizer.lr=0.03"],
        _adam(0.03, 0.9, 0.999, 0.5),
    ),
    "adamw all": (
        [
            "optimizer=adamw",
            "optimizer.weight_decay=0.3",
            "optimizer.lr=0.05",
            "optimizer.beta1=0.6",
            "optimizer.beta2=0.7",
            "optimizer.eps=0.2",
        ],
        _adam(0.05, 0.6, 0.7, 0.2, 0.3),
    ),
}


@pytest.mark.parametrize("case", OPTIMIZER_CASES)
def test_optimizer_option_and_keys_update_by_the_textbook_formula(case):
    """`optimizer=<option>` and its keys (`lr`, `momentum`, `nesterov`, `rho`, `beta1`,
    `beta2`, `eps`, `weight_decay` — decoupled, weights only) through the config into the
    built optimizer: three steps on the built network's packed parameters match the formula
    written plainly per parameter."""
    overrides, reference = OPTIMIZER_CASES[case]
    b = built(*overrides, "trainer.dtype=float64", "model.hidden=[5]")
    params = list(b.model.parameters())
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(p.value.shape) for p in params] for _ in range(3)]
    expected = [p.value.copy() for p in params]
    states = [{} for _ in params]
    for t, step in enumerate(grads, start=1):
        for i, g in enumerate(step):
            expected[i] = reference(expected[i], g, states[i], t, params[i].decay)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad[...] = g
        b.optimizer.step()
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.value, e, rtol=1e-12, atol=1e-14, err_msg=p.name)


# === schedule ==================================================================================

EPOCHS = 9


def _plateau_lrs(lr, factor, patience, min_lr, epochs):
    # min_delta huge: only the first epoch improves on +inf, every later one is "bad"; after
    # patience + 1 bad epochs the rate drops (and the count restarts)
    return [max(lr * factor ** (max(e - 1, 0) // (patience + 1)), min_lr) for e in range(epochs)]


def _cosine(lr, min_lr, total, e):
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(e / total, 1.0)))


SCHEDULE_CASES = {
    "constant": (["schedule=constant"], [0.1] * EPOCHS),
    "step": (
        ["schedule=step", "schedule.gamma=0.5", "schedule.step_size=3"],
        [0.1 * 0.5 ** (e // 3) for e in range(EPOCHS)],
    ),
    "step default": (["schedule=step"], [0.1] * EPOCHS),  # x0.95 every 10: not yet
    "exponential": (
        ["schedule=exponential", "schedule.gamma=0.8"],
        [0.1 * 0.8**e for e in range(EPOCHS)],
    ),
    "exponential default": (["schedule=exponential"], [0.1 * 0.97**e for e in range(EPOCHS)]),
    "cosine over trainer.epochs": (
        ["schedule=cosine", "schedule.min_lr=0.01"],
        [_cosine(0.1, 0.01, EPOCHS, e) for e in range(EPOCHS)],
    ),
    "cosine total": (
        ["schedule=cosine", "schedule.total=4"],
        [_cosine(0.1, 0.0, 4, e) for e in range(EPOCHS)],
    ),
    "warmup_cosine": (
        ["schedule=warmup_cosine", "schedule.warmup=3", "schedule.min_lr=0.02"],
        [0.1 * (e + 1) / 3 if e < 3 else _cosine(0.1, 0.02, EPOCHS - 3, e - 3) for e in range(9)],
    ),
    "warmup_cosine total": (
        ["schedule=warmup_cosine", "schedule.warmup=2", "schedule.total=5"],
        [0.1 * (e + 1) / 2 if e < 2 else _cosine(0.1, 0.0, 3, e - 2) for e in range(EPOCHS)],
    ),
    "plateau": (
        [
            "schedule=plateau",
            "schedule.patience=1",
            "schedule.factor=0.5",
            "schedule.min_delta=1e9",
        ],
        _plateau_lrs(0.1, 0.5, 1, 1e-6, EPOCHS),
    ),
    "plateau patience min_lr": (
        [
            "schedule=plateau",
            "schedule.patience=2",
            "schedule.factor=0.25",
            "schedule.min_delta=1e9",
            "schedule.min_lr=0.01",
        ],
        _plateau_lrs(0.1, 0.25, 2, 0.01, EPOCHS),
    ),
    "plateau improving": (  # min_delta 0 and a loss that keeps falling: no reduction
        ["schedule=plateau", "schedule.patience=0", "schedule.min_delta=0", "dataset.noise=0"],
        [0.1] * EPOCHS,
    ),
}


@pytest.mark.parametrize("case", SCHEDULE_CASES)
def test_schedule_sets_the_learning_rate_of_every_epoch_by_its_formula(case, run_cli):
    """`schedule=<option>` and its keys (`gamma`, `step_size`, `min_lr`, `total` — default
    trainer.epochs —, `warmup`, `factor`, `patience`, `min_delta`): the learning rate the
    optimizer used at every step of each epoch, and the logged `lr`, follow the formula."""
    overrides, expected = SCHEDULE_CASES[case]
    trainer = run_cli(*overrides, f"trainer.epochs={EPOCHS}", "trainer.batch_size=30")
    steps = 2  # 60 training points in batches of 30
    assert trainer.recorder.lrs == pytest.approx(np.repeat(expected, steps), rel=1e-12)
    assert [m["lr"] for m in trainer.history] == pytest.approx(expected, rel=1e-12)


def test_plateau_improving_case_really_improves(run_cli):
    """The premise of "plateau improving": val/loss falls every epoch."""
    trainer = run_cli("dataset.noise=0", f"trainer.epochs={EPOCHS}", "trainer.batch_size=30")
    losses = [m["val/loss"] for m in trainer.history]
    assert all(b < a for a, b in itertools.pairwise(losses))


# === regularization ============================================================================

ONE_STEP = ("trainer.epochs=1", FULL_BATCH, "trainer.dtype=float64", "optimizer=sgd")


@pytest.mark.parametrize(
    ("overrides", "lam"),
    [
        (["regularization.l2=0.3"], 0.3),
        (["regularization=l2"], 0.001),
        (["regularization=l2_dropout", "regularization.dropout=0"], 0.001),
    ],
)
def test_l2_adds_lambda_w_to_the_gradient_of_weights_only(run_cli, overrides, lam):
    """`regularization.l2` (λ of ½λ‖W‖²): one full-batch SGD step with and without it from the
    same weights on the same batch differs by exactly lr·λ·W on weight matrices, 0 on biases."""
    lr = 0.5
    plain = run_cli(*ONE_STEP, f"optimizer.lr={lr}")
    decayed = run_cli(*ONE_STEP, f"optimizer.lr={lr}", *overrides)
    for p, q, w0, v0 in zip(
        plain.params, decayed.params, decayed.initial, plain.initial, strict=True
    ):
        np.testing.assert_array_equal(w0, v0)  # the same start
        if p.decay:
            np.testing.assert_allclose(p.value - q.value, lr * lam * w0, rtol=1e-9, atol=1e-15)
        else:
            np.testing.assert_array_equal(p.value, q.value)
    assert [p.decay for p in plain.params] == [True, False, True, False]  # W, b, W, b


def test_l2_leaves_biases_alone_even_when_they_are_not_zero():
    """Biases start at 0, where λ·b would vanish anyway: give them values, then one
    full-batch SGD step of the trainer with and without L2 from the same state."""
    lr, lam = 0.5, 0.3
    ends = []
    for l2 in (0.0, lam):
        b = built("trainer.dtype=float64", "dataset.n_samples=100")
        params = list(b.model.parameters())
        for i, p in enumerate(params):
            if not p.decay:
                p.value[...] = np.linspace(-1, 1, p.value.size).reshape(p.value.shape) + i
        start = [p.value.copy() for p in params]
        b.optimizer.lr = b.schedule.base_lr = lr
        settings = TrainSettings(epochs=1, batch_size=1000, l2=l2, stats=())
        Trainer(b.model, b.loss, b.optimizer, b.schedule, b.data, settings).fit()
        ends.append([p.value.copy() for p in params])
    for p, w0, plain, decayed in zip(params, start, *ends, strict=True):
        if p.decay:
            np.testing.assert_allclose(plain - decayed, lr * lam * w0, rtol=1e-9, atol=1e-15)
        else:
            assert np.abs(w0).max() > 0.5
            np.testing.assert_array_equal(plain, decayed)


def test_larger_l2_ends_with_smaller_weights(run_cli):
    norms = []
    for lam in (0.0, 0.01, 0.1):
        trainer = run_cli("trainer.epochs=20", f"regularization.l2={lam}")
        norms.append(sum(float(np.sum(p.value**2)) for p in trainer.params if p.decay))
    assert norms[0] > norms[1] > norms[2]


# === trainer ===================================================================================


def test_grad_clip_value_bounds_every_element_and_leaves_small_ones(run_cli):
    """`trainer.grad_clip.value=v`: the gradient the step applied is the raw one with every
    element clamped to [-v, v] — elements already inside are untouched."""
    lr = 1.0
    probe = run_cli(*ONE_STEP, f"optimizer.lr={lr}")
    raw = np.concatenate([g.ravel() for g in raw_gradient(probe)])
    v = float(np.median(np.abs(raw)))  # half the elements above, half below
    trainer = run_cli(*ONE_STEP, f"optimizer.lr={lr}", f"trainer.grad_clip.value={v}")
    applied = np.concatenate([g.ravel() for g in applied_gradient(trainer, lr)])
    assert np.abs(applied).max() <= v * (1 + 1e-9)
    small = np.abs(raw) < v * (1 - 1e-9)
    assert 0.3 < small.mean() < 0.7
    np.testing.assert_allclose(applied[small], raw[small], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(applied[~small], np.sign(raw[~small]) * v, rtol=1e-9)


@pytest.mark.parametrize("ratio", [0.25, 2.0])
def test_grad_clip_norm_scales_the_gradient_to_exactly_the_norm(run_cli, ratio):
    """`trainer.grad_clip.norm=c`: a gradient of global norm above c is scaled to norm c,
    direction kept; one below is left as it is."""
    lr = 1.0
    probe = run_cli(*ONE_STEP, f"optimizer.lr={lr}")
    raw = np.concatenate([g.ravel() for g in raw_gradient(probe)])
    c = ratio * float(np.linalg.norm(raw))
    trainer = run_cli(*ONE_STEP, f"optimizer.lr={lr}", f"trainer.grad_clip.norm={c}")
    applied = np.concatenate([g.ravel() for g in applied_gradient(trainer, lr)])
    expected = raw * min(1.0, c / np.linalg.norm(raw))
    np.testing.assert_allclose(applied, expected, rtol=1e-9, atol=1e-14)
    assert np.linalg.norm(applied) == pytest.approx(min(c, np.linalg.norm(raw)), rel=1e-9)


class _CountingStats(StepStats):
    """StepStats that count the samples of their epoch."""

    counts: ClassVar[list[int]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        type(self).counts.append(0)

    def sample(self, *args, **kwargs) -> None:
        type(self).counts[-1] += 1
        super().sample(*args, **kwargs)


@pytest.mark.parametrize(("every", "expected"), [(1, [9, 9, 9]), (4, [3, 2, 2]), (9, [1, 1, 1])])
def test_stats_every_samples_exactly_every_kth_step(run_cli, monkeypatch, every, expected):
    """`trainer.stats_every=k`: statistics are sampled on global steps 0, k, 2k, ... (steps
    counted across epochs): 9 steps an epoch, k=4 samples steps 0,4,8 | 12,16 | 20,24."""
    monkeypatch.setattr(_CountingStats, "counts", [])
    monkeypatch.setattr(trainer_module, "StepStats", _CountingStats)
    run_cli(
        "trainer.epochs=3",
        "trainer.batch_size=7",  # 60 points: 9 steps an epoch
        "trainer.stats=[grad_norm]",
        f"trainer.stats_every={every}",
    )
    assert _CountingStats.counts == expected


def test_stats_every_beyond_an_epoch_leaves_an_epoch_without_statistics(run_cli):
    """Without looking inside: k=20 samples steps 0 and 20 of 3 epochs of 9 steps, so the
    second epoch reports no statistics at all."""
    trainer = run_cli(
        "trainer.epochs=3",
        "trainer.batch_size=7",
        "trainer.stats=[grad_norm]",
        "trainer.stats_every=20",
    )
    has_stats = ["grad_norm/global/mean" in m for m in trainer.history]
    assert has_stats == [True, False, True]


STATS_FAMILIES = {
    "grad_norm": "grad_norm/",
    "update_ratio": "update_ratio/",
    "activations": "act/",
    "weight_norm": "weight_norm/",
    "output": "output/",
}


@pytest.mark.parametrize(
    "stats", [[], *([family] for family in STATS_FAMILIES), list(STATS_FAMILIES)]
)
def test_stats_chooses_which_statistic_families_are_reported(run_cli, stats):
    trainer = run_cli(f"trainer.stats=[{','.join(stats)}]", "trainer.epochs=1")
    keys = trainer.history[0].keys()
    for family, prefix in STATS_FAMILIES.items():
        present = any(k.startswith(prefix) for k in keys)
        assert present == (family in stats), (family, sorted(keys))
    if "grad_norm" in stats:
        assert {"grad_norm/dense_0/W/mean", "grad_norm/global/max"} <= keys
    if "update_ratio" in stats:
        assert {"update_ratio/dense_0", "update_ratio/dense_1"} <= keys
    if "activations" in stats:
        assert {"act/relu_0/mean", "act/relu_0/std", "act/relu_0/dead_frac"} <= keys
    if "weight_norm" in stats:
        assert {"weight_norm/dense_0", "weight_norm/dense_1"} <= keys
    if "output" in stats:  # two moons: two classes (one sigmoid output)
        assert {
            "output/min",
            "output/max",
            "output/mean",
            "output/class_0",
            "output/class_1",
        } <= keys


@pytest.mark.parametrize(("batch_size", "steps"), [(1, 60), (7, 9), (30, 2), (60, 1), (1000, 1)])
def test_batch_size_gives_ceil_n_over_b_steps_an_epoch(run_cli, batch_size, steps):
    trainer = run_cli(f"trainer.batch_size={batch_size}", "trainer.epochs=2")
    assert len(trainer.data.X_train) == N_TRAIN
    assert trainer.global_step == 2 * steps == 2 * math.ceil(N_TRAIN / batch_size)


@pytest.mark.parametrize("epochs", [1, 3])
def test_epochs_is_the_number_of_epochs_trained_and_recorded(run_cli, epochs):
    trainer = run_cli(f"trainer.epochs={epochs}", "trainer.batch_size=30")
    assert trainer.epoch == epochs and len(trainer.history) == epochs
    assert trainer.global_step == 2 * epochs
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.npz")
    assert int(state["epoch"]) == epochs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_gives_arrays_of_that_dtype(run_cli, dtype):
    trainer = run_cli(f"trainer.dtype={dtype}", "optimizer=adam", "model.batch_norm=true")
    want = np.dtype(dtype)
    d = trainer.data
    assert d.X_train.dtype == d.X_val.dtype == d.X_test.dtype == want
    assert all(p.value.dtype == want and p.grad.dtype == want for p in trainer.params)
    assert all(a.dtype == want for s in trainer.optimizer.state.values() for a in s.values())
    assert all(a.dtype == want for a in trainer.model.buffers().values())
    assert trainer.model.forward(d.X_val).dtype == want
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.npz")
    assert state["param/dense_0/W"].dtype == want


def test_seed_reproduces_bit_for_bit_and_changes_init_and_shuffling(run_cli):
    """`trainer.seed`: the same seed gives the same run to the last bit; another seed other
    initial weights; and, with weights that do not depend on the seed (zeros), other batches."""
    common = ("trainer.epochs=3", "trainer.batch_size=8", "regularization.dropout=0.3")
    a, b = run_cli(*common, "trainer.seed=3"), run_cli(*common, "trainer.seed=3")
    for p, q in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(p.value, q.value)

    def untimed(history):
        return [{k: v for k, v in m.items() if k != "time/epoch_s"} for m in history]

    assert untimed(a.history) == untimed(b.history)
    c = run_cli(*common, "trainer.seed=4")
    assert not np.array_equal(a.initial[0], c.initial[0])
    zeros = ("model.init=zeros", "trainer.epochs=1", "trainer.batch_size=8")
    z3, z4 = run_cli(*zeros, "trainer.seed=3"), run_cli(*zeros, "trainer.seed=4")
    for p, q in zip(z3.initial, z4.initial, strict=True):
        np.testing.assert_array_equal(p, q)  # the same start...
    assert not all(
        np.array_equal(p.value, q.value) for p, q in zip(z3.params, z4.params, strict=True)
    )  # ...other batches, another end


@pytest.mark.parametrize(
    ("every", "epochs", "files"),
    [(2, 5, [2, 4]), (1, 3, [1, 2, 3]), (3, 3, [3]), (0, 4, [])],
)
def test_checkpoint_every_writes_exactly_those_epoch_files(run_cli, every, epochs, files):
    trainer = run_cli(
        f"trainer.checkpoint_every={every}", f"trainer.epochs={epochs}", "trainer.checkpoint_keep=0"
    )
    directory = trainer.run_dir / "checkpoints"
    found = sorted(p.name for p in directory.glob("epoch_*.npz"))
    assert found == [f"epoch_{e:04d}.npz" for e in files]
    for e in files:
        assert int(load_checkpoint(directory / f"epoch_{e:04d}.npz")["epoch"]) == e
    assert {"last.npz", "best.npz"} <= {p.name for p in directory.iterdir()}


@pytest.mark.parametrize(
    ("keep", "kept"),
    [(3, [10, 11]), (2, [11]), (1, []), (5, [8, 9, 10, 11]), (0, list(range(1, 12)))],
)
def test_checkpoint_keep_keeps_the_newest_epoch_files_and_best(run_cli, keep, kept):
    """`trainer.checkpoint_keep=K`: last.npz and the K-1 newest epoch files, plus best.npz
    (0: every epoch file). The files left are the epochs' own, and last is the final one."""
    trainer = run_cli(
        "trainer.checkpoint_every=1", "trainer.epochs=11", f"trainer.checkpoint_keep={keep}"
    )
    directory = trainer.run_dir / "checkpoints"
    found = sorted(p.name for p in directory.glob("epoch_*.npz"))
    assert found == [f"epoch_{e:04d}.npz" for e in kept]
    for e in kept:
        assert int(load_checkpoint(directory / f"epoch_{e:04d}.npz")["epoch"]) == e
    assert int(load_checkpoint(directory / "last.npz")["epoch"]) == 11
    assert (directory / "best.npz").is_file()
    if keep:
        assert len(list(directory.glob("*.npz"))) <= keep + 1


class _Seen(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.epochs.append(epoch)


@pytest.mark.parametrize(
    ("every", "epochs", "seen"), [(1, 4, [1, 2, 3, 4]), (2, 5, [2, 4, 5]), (3, 7, [3, 6, 7])]
)
def test_log_every_passes_every_nth_epoch_and_the_last(every, epochs, seen):
    """`trainer.log_every` (the runner wraps the MLflow tracker in `EveryNEpochs`): the
    wrapped callback sees epochs n, 2n, ... and the last. In MLflow: the CLI test below."""
    b = built("dataset.n_samples=100")
    inner = _Seen()
    settings = TrainSettings(epochs=epochs, batch_size=60, stats=())
    callbacks = [EveryNEpochs(inner, every)]
    Trainer(b.model, b.loss, b.optimizer, b.schedule, b.data, settings, callbacks).fit()
    assert inner.epochs == seen


def test_progress_shows_a_bar_only_when_asked(run_cli, capsys):
    run_cli("trainer.progress=true", "trainer.epochs=3")
    shown = capsys.readouterr().err
    assert "3/3" in shown and "epoch" in shown
    run_cli("trainer.progress=false", "trainer.epochs=3")
    assert "3/3" not in capsys.readouterr().err


# === tracking ==================================================================================


def test_tracking_disabled_writes_no_store(run_cli, tmp_path):
    """`tracking.enabled=false`: no MLflow store anywhere (the default one would be
    ./mlflow.db here); the model is saved into the run directory instead."""
    trainer = run_cli("tracking.enabled=false")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert {p.name for p in (trainer.run_dir / "model").iterdir()} == {
        "spec.json",
        "weights.npz",
    }


@pytest.mark.slow  # one real CLI run into a fresh sqlite store: 5-20 s on 2 busy cores
def test_tracking_layer_options_show_in_mlflow(cli, tmp_path):
    """The options only MLflow can show, in one small real run: `tracking.experiment`,
    `tracking.run_name`, `trainer.log_every` (the steps logged), `trainer.stats` (the metric
    families), `trainer.checkpoint_every` (the epoch files uploaded)."""
    cli.ok(
        "dataset.n_samples=100",
        "trainer.progress=false",
        "trainer.epochs=5",
        "trainer.log_every=2",
        "trainer.stats=[update_ratio]",
        "trainer.checkpoint_every=2",
        "tracking.experiment=effects",
        "tracking.run_name=my-run",
    )
    assert cli.runs("nnexp") == []
    (run,) = cli.runs("effects")
    assert run.info.run_name == "my-run"
    client = cli.client()
    for key in ("train/loss", "val/loss", "lr", "update_ratio/dense_0"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == [2, 4, 5], key
    keys = run.data.metrics.keys()
    assert not any(k.startswith(("grad_norm/", "act/")) for k in keys)
    ckpts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert {p for p in ckpts if "epoch_" in p} == {
        "checkpoints/epoch_0002.npz",
        "checkpoints/epoch_0004.npz",
    }
