"""The doctor's rules: a run's recorded metrics → findings (symptom, evidence, fix).

The tutorial's debugging guide, as data and small functions: each rule reads the per-epoch
metrics a run records (the statistics' keys through `nnexp.names.parse_metric`), its config
(flattened, as MLflow stores params) and how it ended, and returns a `Finding` — a severity,
the evidence (metric, layer, epoch, value) and the fix as overrides to paste — or None.
Every threshold is in `THRESHOLDS`, documented there; `RULES` is the list the doctor runs.

The same rules serve a run as it ends (`DoctorVerdict`, the one-line verdict and the
``doctor.findings`` tag) and ``python -m nnexp.doctor``, which reads runs back from the store.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnexp.names import ACT, AMP, GRAD_NORM, UNDERFLOW, UPDATE_RATIO, grad_norm_key, parse_metric
from nnexp.nn import Dense
from nnexp.train.callbacks import Callback
from nnexp.train.divergence import CAUSE_INIT, CAUSE_INPUT, CAUSE_LR, CAUSE_PHRASES

log = logging.getLogger(__name__)

FAIL, WARN = "FAIL", "WARN"

# Every threshold of the rules, with what it means. Tuned on the experiment pages
# (experiments/README.md: the healthy runs stay silent, each page's lesson is found).
THRESHOLDS: dict[str, float] = {
    # first hidden layer's weight-gradient norm / the output layer's, median over epochs
    "vanishing_ratio": 2e-2,  # below: vanishing gradients (FAIL below its square)
    "exploding_ratio": 1e2,  # above: exploding gradients toward the input
    "exploding_norm": 1e3,  # the global gradient norm's per-epoch max above this: exploding
    # a ReLU layer's fraction of units never positive in a sampled batch (final epoch) at or
    # above: dead ReLUs. Not 0.5: L2 and dropout leave 0.70-0.76 of a layer silent in a batch of
    # 32 on runs that train well (experiments/regularization.md); broken runs show 0.95-1.
    "dead_frac": 0.8,
    "sat_frac": 0.5,  # a sigmoid/tanh layer's fraction of saturated outputs (final epoch)
    "constant_std": 1e-6,  # a hidden activation's std below this: constant (broken)
    # lr·‖∇W‖/‖W‖, the median over layers of each layer's median over epochs (plain SGD
    # family only: adaptive optimizers scale their steps themselves); ~1e-3 is healthy
    "update_ratio_high": 3e-2,  # above: learning rate too high
    "update_ratio_low": 1e-5,  # below (and the loss barely moving): too low
    "loss_flat": 0.25,  # train/loss fell by less than this fraction over the run: barely moving
    "loss_rise": 0.05,  # the last third's mean train/loss this fraction above the first's
    "oscillation": 0.25,  # fraction of epochs whose train/loss rose by more than 10 %
    # an epoch's train/loss this many times the chance loss (ln C; classification): a step
    # threw the network far off, any optimizer. Adam at lr 1 and 10 reach 7e3 and 7e9 (lr_sweep);
    # healthy runs stay below 15 (a 24-layer residual ReLU net with batch norm, first epoch)
    "loss_blowup": 100.0,
    "overfit_rise": 0.1,  # val/loss ended this fraction above its minimum ...
    "overfit_gap": 0.1,  # ... or above train/loss by this much (absolute), train/loss falling
    "chance_margin": 0.05,  # train/acc within this of chance: underfitting
    # trainer.precision=mixed: a layer's fraction of gradient entries float16 flushed to zero
    # (amp/underflow/<layer>), the median over epochs, at or above this: its gradient is lost
    "underflow_frac": 0.5,
}

SGD_FAMILY = {"sgd", "momentum", "nesterov"}


@dataclass(frozen=True)
class Finding:
    """One diagnosis: `code` names the rule; `fix` holds overrides to paste."""

    code: str
    severity: str  # FAIL or WARN
    title: str
    evidence: str
    fix: tuple[str, ...]
    advice: str = ""

    def line(self) -> str:
        fix = f" — try: {' '.join(self.fix)}" if self.fix else ""
        return f"{self.severity} {self.title}: {self.evidence}{fix}"


@dataclass
class RunFacts:
    """What the rules read: per-epoch metrics (epoch 1 first), params as strings (MLflow's
    form: ``model.init`` → ``zeros``), the task and class count, and how the run ended."""

    history: Sequence[Mapping[str, float]]
    params: Mapping[str, str] = field(default_factory=dict)
    task: str = ""
    n_classes: int | None = None
    diverged: bool = False
    error: str = ""
    cause: str | None = None  # NonFiniteError.cause, when known

    def param(self, key: str, default: str = "") -> str:
        return str(self.params.get(key, default))

    def series(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) of `key`'s finite values."""
        return [
            (i, float(row[key]))
            for i, row in enumerate(self.history, start=1)
            if key in row and math.isfinite(row[key])
        ]

    def last(self, key: str) -> float:
        values = self.series(key)
        return values[-1][1] if values else math.nan

    def metric_keys(self) -> set[str]:
        return {key for row in self.history for key in row}


def stringify(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow stores them (str of the value), so live runs and stored ones read alike."""
    return {key: str(value) for key, value in params.items()}


# --- helpers over the statistics' keys ---------------------------------------------------------


def _dense_layers(facts: RunFacts) -> list[str]:
    """The dense layers with a weight-gradient norm, in network order (a residual block's
    projection has a W too, but it is not a layer of the chain the gradient flows down)."""
    layers = set()
    for key in facts.metric_keys():
        parsed = parse_metric(key)
        if parsed is None or (parsed.family, parsed.param, parsed.stat) != (GRAD_NORM, "W", "mean"):
            continue
        if parsed.layer == f"{Dense.kind}_{parsed.index}":
            layers.add(parsed.layer)
    return sorted(layers, key=_network_order)


def _index(layer: str) -> int | None:
    parsed = parse_metric(f"{UPDATE_RATIO}/{layer}")
    return parsed.index if parsed else None


def _network_order(layer: str) -> tuple[int, str]:
    """A sort key: the layer's index, then its name (``dense_0`` and ``residual_0`` share
    index 0; a set's order of them would change from one process to the next)."""
    index = _index(layer)
    return (-1 if index is None else index, layer)


def _activation_stat(facts: RunFacts, stat: str) -> list[tuple[str, str]]:
    """(key, layer) of every activation statistic `stat` the run has, in network order."""
    found = []
    for key in facts.metric_keys():
        parsed = parse_metric(key)
        if parsed and parsed.family == ACT and parsed.stat == stat:
            found.append((key, parsed.layer))
    return sorted(found, key=lambda kl: _network_order(kl[1]))


def _grad_key(layer: str) -> str:
    return grad_norm_key(f"{layer}/W", "mean")


def gradient_ratio(facts: RunFacts) -> tuple[float, str, str, int] | None:
    """The first dense layer's weight-gradient norm over the last's: the median over epochs,
    the two layers, and the epoch closest to the median (for the evidence)."""
    layers = _dense_layers(facts)
    if len(layers) < 2:
        return None
    first, last = (
        dict(facts.series(_grad_key(layers[0]))),
        dict(facts.series(_grad_key(layers[-1]))),
    )
    ratios = [(first[e] / last[e], e) for e in first if e in last and last[e] > 0]
    if not ratios:
        return None
    median = statistics.median(r for r, _ in ratios)
    epoch = min(ratios, key=lambda re: abs(math.log10(max(re[0], 1e-300) / max(median, 1e-300))))
    return median, layers[0], layers[-1], epoch[1]


def _init_for(facts: RunFacts) -> str:
    """The initializer that suits the run's activation."""
    return "xavier" if facts.param("model.activation") in ("sigmoid", "tanh") else "he"


def _lr(facts: RunFacts) -> float | None:
    try:
        return float(facts.param("optimizer.lr"))
    except ValueError:
        return None


def _lr_times(facts: RunFacts, factor: float) -> str:
    lr = _lr(facts)
    return f"optimizer.lr={lr * factor:g}" if lr else "optimizer.lr=<smaller>"


def _chance(facts: RunFacts) -> float | None:
    if facts.task == "binary":
        return 0.5
    if facts.task == "multiclass" and facts.n_classes:
        return 1.0 / facts.n_classes
    return None


def _false(value: str) -> bool:
    return value.strip().lower() in ("false", "0", "no")


def _g(value: float) -> str:
    return f"{value:.3g}"


# --- the rules -----------------------------------------------------------------------------


def divergence_cause(facts: RunFacts) -> str:
    """What a diverged run's divergence is blamed on: the guard's own verdict when it was
    recorded (the cause, or its phrase in the error message), else the config's evidence."""
    if facts.cause:
        return facts.cause
    for cause, phrase in CAUSE_PHRASES.items():
        if phrase in facts.error:
            return cause
    try:
        scale = float(facts.param("model.init_scale", "nan"))
    except ValueError:
        scale = math.nan
    if facts.param("model.init") in ("normal", "uniform") and scale >= 10:
        return CAUSE_INIT
    if _false(facts.param("dataset.standardize", "true")):
        return CAUSE_INPUT
    return CAUSE_LR


def diverged(facts: RunFacts) -> Finding | None:
    if not facts.diverged:
        return None
    cause = divergence_cause(facts)
    evidence = facts.error.split(" Try ")[0].split(" Likely cause")[0] or "the run diverged"
    evidence = evidence.removeprefix("NonFiniteError: ")
    if cause == CAUSE_INIT:
        return Finding(
            "diverged_init",
            FAIL,
            "diverged: the initialization is out of range",
            evidence,
            (f"model.init={_init_for(facts)}",),
            "Huge initial weights explode the forward pass at once; the learning rate is not "
            "the cause. Use Xavier (sigmoid, tanh) or He (ReLU) initialization.",
        )
    if cause == CAUSE_INPUT:
        return Finding(
            "diverged_input",
            FAIL,
            "diverged: input not standardized",
            evidence,
            ("dataset.standardize=true", "trainer.grad_clip.norm=1.0"),
            "Features with large values give the first layer huge gradients. Standardize the "
            "inputs; clip gradients as a safety net.",
        )
    return Finding(
        "diverged_lr",
        FAIL,
        "diverged: learning rate too high",
        evidence,
        (_lr_times(facts, 0.1), "trainer.grad_clip.norm=1.0"),
        "Loss is NaN: reduce the learning rate (10x), add gradient clipping.",
    )


def symmetry(facts: RunFacts) -> Finding | None:
    """Every unit starting from the same weights gets the same gradient and stays identical."""
    zero_init = facts.param("model.init") == "zeros"
    constant = [
        (key, layer, value)
        for key, layer in _activation_stat(facts, "std")
        if (value := facts.series(key)) and value[0][1] < THRESHOLDS["constant_std"]
    ]
    if not (zero_init or constant):
        return None
    parts = ["model.init=zeros"] if zero_init else []
    if constant:
        key, _, values = constant[0]
        parts.append(f"{key} = {_g(values[0][1])} at epoch {values[0][0]} (constant activations)")
    if zero_init:
        return Finding(
            "symmetry",
            FAIL,
            "symmetry: identical units (zero initialization)",
            "; ".join(parts),
            (f"model.init={_init_for(facts)}",),
            "Starting with zeros kills learning: every unit computes the same thing and gets "
            "the same gradient. Initialize weights randomly (He for ReLU, Xavier for "
            "sigmoid/tanh).",
        )
    return Finding(
        "constant_activations",
        FAIL,
        "constant activations: the signal dies in the forward pass",
        "; ".join(parts),
        (f"model.init={_init_for(facts)}",),
        "Activations that are all zero or constant mean something is broken: the weights are "
        "too small (or zero) for the depth. Use He (ReLU) or Xavier (sigmoid/tanh) init.",
    )


def dead_units(facts: RunFacts) -> Finding | None:
    worst = max(
        ((facts.last(key), key) for key, _ in _activation_stat(facts, "dead_frac")),
        default=(math.nan, ""),
    )
    if not worst[0] >= THRESHOLDS["dead_frac"]:
        return None
    epoch = len(facts.history)
    return Finding(
        "dead_relu",
        FAIL if worst[0] >= 0.9 else WARN,
        "dead ReLUs",
        f"{worst[1]} = {_g(worst[0])} at epoch {epoch}",
        ("model.activation=leaky_relu", "model.init=he", _lr_times(facts, 0.1)),
        "Units that are never positive get no gradient and never recover: use He init, "
        "a leaky ReLU, or a lower learning rate.",
    )


def saturated(facts: RunFacts) -> Finding | None:
    worst = max(
        ((facts.last(key), key) for key, _ in _activation_stat(facts, "sat_frac")),
        default=(math.nan, ""),
    )
    if not worst[0] >= THRESHOLDS["sat_frac"]:
        return None
    return Finding(
        "saturated",
        WARN,
        "saturated sigmoid/tanh units",
        f"{worst[1]} = {_g(worst[0])} at epoch {len(facts.history)}",
        ("model.activation=relu", "model.init=he", "regularization.batch_norm=true"),
        "Saturated units pass almost no gradient: use ReLU for hidden layers, or batch norm.",
    )


def vanishing(facts: RunFacts) -> Finding | None:
    found = gradient_ratio(facts)
    if found is None or not found[0] < THRESHOLDS["vanishing_ratio"]:
        return None
    ratio, first, last, epoch = found
    return Finding(
        "vanishing_gradients",
        FAIL if ratio < THRESHOLDS["vanishing_ratio"] ** 2 else WARN,
        "vanishing gradients",
        f"{_grad_key(first)} is {_g(ratio)}x {_grad_key(last)} (median over epochs; epoch {epoch})",
        ("model.activation=relu", "model.init=he", "regularization.batch_norm=true"),
        "Gradients vanish in early layers: switch to ReLU for hidden layers, He init, "
        "or add batch normalization.",
    )


def exploding(facts: RunFacts) -> Finding | None:
    found = gradient_ratio(facts)
    peak = max(((v, e) for e, v in facts.series(f"{GRAD_NORM}/global/max")), default=(math.nan, 0))
    if found is not None and found[0] > THRESHOLDS["exploding_ratio"]:
        ratio, first, last, epoch = found
        evidence = f"{_grad_key(first)} is {_g(ratio)}x {_grad_key(last)} (epoch {epoch})"
    elif peak[0] > THRESHOLDS["exploding_norm"]:
        evidence = f"{GRAD_NORM}/global/max = {_g(peak[0])} at epoch {peak[1]}"
    else:
        return None
    return Finding(
        "exploding_gradients",
        WARN,
        "exploding gradients",
        evidence,
        ("trainer.grad_clip.norm=1.0", _lr_times(facts, 0.1), f"model.init={_init_for(facts)}"),
        "Check for exploding gradients: reduce the learning rate, add gradient clipping, "
        "verify the weight initialization.",
    )


def underflow(facts: RunFacts) -> Finding | None:
    """Under mixed precision: a layer whose gradient float16 flushes to zero learns nothing."""
    keys = [
        (key, parsed.layer)
        for key in facts.metric_keys()
        if (parsed := parse_metric(key)) and parsed.family == AMP and parsed.stat == UNDERFLOW
    ]
    keys.sort(key=lambda kl: _network_order(kl[1]))
    medians = [
        (statistics.median(v for _, v in values), key)
        for key, _ in keys
        if (values := facts.series(key))
    ]
    worst = max(medians, default=(math.nan, ""), key=lambda mk: mk[0])  # the first layer of ties
    if not worst[0] >= THRESHOLDS["underflow_frac"]:
        return None
    scale = facts.param("trainer.loss_scale")
    return Finding(
        "gradient_underflow",
        FAIL,
        "gradients underflow in float16",
        f"{worst[1]} = {_g(worst[0])} (median over epochs; trainer.loss_scale={scale})",
        ("trainer.loss_scale=dynamic",),
        "Gradient entries below 2^-24 become 0 in float16 and the layer stops learning: "
        "scale the loss (dynamic scaling finds the scale itself).",
    )


def update_ratio(facts: RunFacts) -> tuple[float, int] | None:
    """The median over layers of each layer's median update ratio over epochs, and the number
    of layers; None without update ratios or when they are all 0 (no gradient at all is not a
    learning-rate problem: see symmetry, dead units)."""
    keys = [k for k in facts.metric_keys() if (p := parse_metric(k)) and p.family == UPDATE_RATIO]
    medians = [statistics.median(v for _, v in values) for k in keys if (values := facts.series(k))]
    if not medians or not any(medians):
        return None
    return statistics.median(medians), len(medians)


def _oscillation(losses: list[float]) -> float:
    """The fraction of epochs whose training loss rose by more than 10 %."""
    rises = sum(1 for a, b in itertools.pairwise(losses) if b > a * 1.1)
    return rises / max(len(losses) - 1, 1)


def _chance_loss(facts: RunFacts) -> float | None:
    """The cross-entropy of guessing: ln 2 (binary), ln C (multiclass); None for regression."""
    chance = _chance(facts)
    return -math.log(chance) if chance else None


def _blowup(facts: RunFacts) -> str | None:
    """Evidence of an epoch whose training loss is far above the chance loss."""
    chance = _chance_loss(facts)
    epoch, peak = max(facts.series("train/loss"), key=lambda ev: ev[1], default=(0, math.nan))
    if chance is None or not peak > THRESHOLDS["loss_blowup"] * chance:
        return None
    return f"train/loss = {_g(peak)} at epoch {epoch}, {peak / chance:.3g}x the chance loss"


def lr_too_high(facts: RunFacts) -> Finding | None:
    losses = [v for _, v in facts.series("train/loss")]
    evidence = [blowup] if (blowup := _blowup(facts)) else []
    if len(losses) >= 6:
        third = len(losses) // 3
        first, last = statistics.mean(losses[:third]), statistics.mean(losses[-third:])
        if last > first * (1 + THRESHOLDS["loss_rise"]):
            evidence.append(
                f"train/loss rose: mean {_g(first)} over the first third of the "
                f"epochs, {_g(last)} over the last"
            )
        elif (share := _oscillation(losses)) >= THRESHOLDS["oscillation"]:
            evidence.append(f"train/loss rose by > 10 % in {share:.0%} of epochs (oscillating)")
    ratio = update_ratio(facts)
    sgd = facts.param("optimizer.name", "sgd") in SGD_FAMILY
    if sgd and ratio and ratio[0] > THRESHOLDS["update_ratio_high"]:
        evidence.append(
            f"update ratios: median {_g(ratio[0])} over {ratio[1]} layers (~1e-3 is healthy)"
        )
    if not evidence:
        return None
    return Finding(
        "lr_too_high",
        WARN,
        "learning rate too high",
        "; ".join(evidence),
        (_lr_times(facts, 0.1),),
        "Loss oscillates wildly or rises: reduce the learning rate, increase the batch size, "
        "check the input normalization.",
    )


def lr_too_low(facts: RunFacts) -> Finding | None:
    if facts.param("optimizer.name", "sgd") not in SGD_FAMILY:
        return None
    ratio = update_ratio(facts)
    losses = [v for _, v in facts.series("train/loss")]
    if ratio is None or len(losses) < 2 or not ratio[0] < THRESHOLDS["update_ratio_low"]:
        return None
    fell = (losses[0] - losses[-1]) / abs(losses[0]) if losses[0] else 0.0
    if fell >= THRESHOLDS["loss_flat"]:
        return None
    return Finding(
        "lr_too_low",
        WARN,
        "learning rate too low",
        f"update ratios: median {_g(ratio[0])} over {ratio[1]} layers (~1e-3 is healthy); "
        f"train/loss fell {fell:.1%} over {len(losses)} epochs",
        (_lr_times(facts, 10),),
        "Updates are a tiny fraction of the weights and the loss barely moves: raise the "
        "learning rate.",
    )


def overfitting(facts: RunFacts) -> Finding | None:
    val, train = facts.series("val/loss"), dict(facts.series("train/loss"))
    if len(val) < 3:
        return None
    best_epoch, best = min(val, key=lambda ev: ev[1])
    last_epoch, last = val[-1]
    train_best, train_last = train.get(best_epoch), train.get(last_epoch)
    if train_best is None or train_last is None or not train_last < train_best:
        return None  # training loss not falling: not overfitting
    rose = last > best * (1 + THRESHOLDS["overfit_rise"])
    gap = last - train_last > THRESHOLDS["overfit_gap"]
    if not (rose and gap):
        return None
    return Finding(
        "overfitting",
        WARN,
        "overfitting",
        f"val/loss rose from {_g(best)} (epoch {best_epoch}) to {_g(last)} (epoch {last_epoch})"
        f" while train/loss fell to {_g(train_last)}",
        ("regularization=l2_dropout", "trainer.early_stopping.patience=10"),
        "Validation loss rises while training loss falls: add L2 or dropout, stop early, "
        "or reduce the model's capacity.",
    )


def underfitting(facts: RunFacts) -> Finding | None:
    chance = _chance(facts)
    acc = facts.last("train/acc")
    if chance is None or not acc <= chance + THRESHOLDS["chance_margin"]:
        return None
    return Finding(
        "underfitting",
        FAIL,
        "underfitting: training accuracy at chance",
        f"train/acc = {_g(acc)} at epoch {len(facts.history)} (chance {_g(chance)})",
        (f"model.init={_init_for(facts)}", "model.activation=relu", "trainer.epochs=200"),
        "The network did not learn the training set: check the initialization, the "
        "activations and the learning rate (see the other findings).",
    )


def input_not_standardized(facts: RunFacts) -> Finding | None:
    """Standardization turned off, and a symptom of it: divergence, rising or oscillating
    loss, a first layer whose gradient dwarfs the output layer's, training at chance."""
    if not _false(facts.param("dataset.standardize", "true")) or facts.diverged:
        return None  # a divergence has its own finding, which names the input
    symptoms = [f for rule in (lr_too_high, exploding, underfitting) if (f := rule(facts))]
    if not symptoms:
        return None
    return Finding(
        "input_not_standardized",
        WARN,
        "input not standardized",
        "dataset.standardize=false, and " + "; ".join(f.evidence for f in symptoms),
        ("dataset.standardize=true",),
        "Standardize inputs to zero mean and unit variance: otherwise gradients explode or "
        "vanish and the loss oscillates.",
    )


Rule = Callable[[RunFacts], Finding | None]
RULES: tuple[Rule, ...] = (
    diverged,
    symmetry,
    underflow,
    input_not_standardized,
    vanishing,
    exploding,
    dead_units,
    saturated,
    lr_too_high,
    lr_too_low,
    overfitting,
    underfitting,
)


# A finding that explains others: they are its evidence, not separate causes.
EXPLAINS = {
    "input_not_standardized": {"lr_too_high", "exploding_gradients", "overfitting", "underfitting"},
    # lost gradients look vanished, and a network that cannot learn stays at chance
    "gradient_underflow": {"vanishing_gradients", "underfitting", "lr_too_low"},
}


def diagnose(facts: RunFacts, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Every finding of the run, FAILs first (those another finding explains left out)."""
    found = [f for rule in rules if (f := rule(facts)) is not None]
    explained = set().union(*(EXPLAINS.get(f.code, set()) for f in found))
    found = [f for f in found if f.code not in explained]
    return sorted(found, key=lambda f: f.severity != FAIL)


def findings_tag(findings: Sequence[Finding]) -> str:
    """The ``doctor.findings`` tag: the codes, comma-separated; ``none`` for a healthy run."""
    return ",".join(f.code for f in findings) or "none"


def failing_tag(findings: Sequence[Finding]) -> str:
    """The ``doctor.failing`` tag: the codes of the FAIL findings; ``none`` if there is none
    (with ``doctor.findings``, each finding's severity: those not failing are warnings)."""
    return findings_tag([f for f in findings if f.severity == FAIL])


def verdict(findings: Sequence[Finding]) -> str:
    """One line: healthy, or the findings' titles."""
    if not findings:
        return "doctor: no findings (gradients, activations, learning rate and curves look healthy)"
    return "doctor: " + "; ".join(f"{f.severity} {f.title}" for f in findings)


class DoctorVerdict(Callback):
    """At the end of a run (finished or failed): the findings of its history, one line logged
    (a warning when there are findings, so on stderr) and `report(findings)` (the tracker's
    tag)."""

    def __init__(
        self,
        params: Mapping[str, Any],
        task: str,
        n_classes: int | None,
        report: Callable[[list[Finding]], None] | None = None,
    ) -> None:
        self.params, self.task, self.n_classes, self.report = (
            stringify(params),
            task,
            n_classes,
            report,
        )

    def _finish(self, trainer: Any, exc: BaseException | None) -> None:
        diverged_message = getattr(trainer, "diverged", None)
        facts = RunFacts(
            trainer.history,
            self.params,
            self.task,
            self.n_classes,
            diverged=bool(diverged_message) or isinstance(exc, FloatingPointError),
            error=str(exc) if exc is not None else (diverged_message or ""),
            cause=getattr(exc, "cause", None),
        )
        findings = diagnose(facts)
        log.log(logging.WARNING if findings else logging.INFO, f"nnexp: {verdict(findings)}")
        if self.report is not None:
            try:
                self.report(findings)
            except Exception as error:  # the run's own outcome matters more than this tag
                log.warning(f"WARNING nnexp: could not record the doctor's findings: {error}")

    def on_fit_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self._finish(trainer, None)

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        if not isinstance(exc, KeyboardInterrupt):
            self._finish(trainer, exc)
