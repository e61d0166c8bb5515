"""The doctor's rules (nnexp/train/diagnosis.py) exactly: each rule on both sides of its
threshold (the comparison's direction and its boundary), the helpers the evidence comes from,
and every finding's full text — severity, title, evidence, fix and advice — against a snapshot
(tests/golden/doctor_findings.txt), so a changed message is a reviewed diff, not a surprise.

After an intended change of a rule's words: ``NNEXP_REGOLD=1 pytest tests/test_exact_diagnosis.py``
rewrites the snapshot; read its diff before committing it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from nnexp.names import activation_key, grad_norm_key, underflow_key, update_ratio_key
from nnexp.train import diagnosis as dx
from nnexp.train.diagnosis import FAIL, THRESHOLDS, WARN, RunFacts

GOLDEN = Path(__file__).parent / "golden" / "doctor_findings.txt"
FIRST, LAST = grad_norm_key("dense_0/W", "mean"), grad_norm_key("dense_2/W", "mean")
SGD = {"optimizer.name": "sgd", "optimizer.lr": "0.1", "model.init": "he"}


def rows(n: int = 9, **series: list[float] | float) -> list[dict[str, float]]:
    """`n` epochs; each keyword a metric key (``__`` for ``/``) with one value or a list."""
    history: list[dict[str, float]] = [{} for _ in range(n)]
    for key, values in series.items():
        values = values if isinstance(values, list) else [values] * n
        for row, value in zip(history, values, strict=True):
            row[key.replace("__", "/")] = value
    return history


def grads(first: list[float] | float, last: list[float] | float, n: int = 9) -> list[dict]:
    history = rows(n)
    for i, row in enumerate(history):
        row[FIRST] = first[i] if isinstance(first, list) else first
        row[LAST] = last[i] if isinstance(last, list) else last
    return history


def facts(history, params=None, **kw) -> RunFacts:
    return RunFacts(history, SGD | (params or {}), **kw)


# --- the helpers the evidence comes from ---------------------------------------------------------


def test_series_skips_missing_and_non_finite_values_and_numbers_epochs_from_one():
    run = facts([{"a": 1.0}, {}, {"a": math.nan}, {"a": math.inf}, {"a": 2.0}])
    assert run.series("a") == [(1, 1.0), (5, 2.0)]
    assert run.last("a") == 2.0 and math.isnan(run.last("b"))


def test_gradient_ratio_is_the_median_over_shared_epochs_with_the_epoch_nearest_it():
    history = grads([1e-3, 1e-4, 1e-2], [1.0, 1.0, 1.0], n=3)
    del history[0][LAST]  # an epoch the last layer did not record: not a ratio
    history[1][LAST] = 0.0  # a zero denominator: not a ratio either
    assert dx.gradient_ratio(facts(history)) == (1e-2, "dense_0", "dense_2", 3)
    # The evidence names the epoch whose ratio is nearest the median on a log scale.
    ratio, _, _, epoch = dx.gradient_ratio(facts(grads([1e-1, 1e-3, 1e-5, 2e-3, 1e-6], 1.0, n=5)))
    assert (ratio, epoch) == (1e-3, 2)
    assert dx.gradient_ratio(facts(grads(1.0, 0.0))) is None
    assert dx.gradient_ratio(facts(rows(3, **{FIRST: 1.0}))) is None  # one layer only


def test_the_suggested_init_and_lr_follow_the_run():
    assert dx._init_for(facts([], {"model.activation": "tanh"})) == "xavier"
    assert dx._init_for(facts([], {"model.activation": "sigmoid"})) == "xavier"
    assert dx._init_for(facts([], {"model.activation": "relu"})) == "he"
    assert dx._lr_times(facts([], {"optimizer.lr": "0.5"}), 0.1) == "optimizer.lr=0.05"
    assert dx._lr_times(facts([], {"optimizer.lr": "n/a"}), 10) == "optimizer.lr=<smaller>"
    assert dx._chance(facts([], task="binary")) == 0.5
    assert dx._chance(facts([], task="multiclass", n_classes=4)) == 0.25
    assert dx._chance(facts([], task="multiclass")) is None
    assert dx._chance(facts([], task="regression", n_classes=3)) is None
    assert all(dx._false(v) for v in ("False", " no ", "0", "NO"))
    assert not any(dx._false(v) for v in ("true", "", "1", "yes"))


def test_divergence_cause_prefers_the_recorded_cause_then_the_message_then_the_config():
    assert dx.divergence_cause(facts([], cause="input", error="... lr ...")) == "input"
    for cause, phrase in dx.CAUSE_PHRASES.items():
        assert dx.divergence_cause(facts([], error=f"diverged. {phrase}.")) == cause
    big = {"model.init": "uniform", "model.init_scale": "10"}
    assert dx.divergence_cause(facts([], big)) == dx.CAUSE_INIT
    small = {"model.init": "normal", "model.init_scale": "9.9"}
    assert dx.divergence_cause(facts([], small)) == dx.CAUSE_LR
    assert dx.divergence_cause(facts([], {"model.init_scale": "1e30"})) == dx.CAUSE_LR  # he
    assert dx.divergence_cause(facts([], {"dataset.standardize": "no"})) == dx.CAUSE_INPUT
    unreadable = {"model.init": "normal", "model.init_scale": "big"}  # not a number: no blame
    assert dx.divergence_cause(facts([], unreadable)) == dx.CAUSE_LR


def test_a_finding_without_fixes_is_one_line_without_a_try():
    plain = dx.Finding("x", WARN, "a title", "the evidence", ())
    assert plain.line() == "WARN a title: the evidence"
    fixed = dx.Finding("x", FAIL, "a title", "the evidence", ("a=1", "b=2"))
    assert fixed.line() == "FAIL a title: the evidence — try: a=1 b=2"


def test_oscillation_counts_rises_of_more_than_ten_percent_per_epoch_pair():
    assert dx._oscillation([1.0, 1.1]) == 0.0  # exactly 10 %: not a rise
    assert dx._oscillation([1.0, 1.2]) == 1.0
    assert dx._oscillation([1.0, 1.2, 1.0, 1.5]) == 2 / 3
    assert dx._oscillation([1.0]) == 0.0 and dx._oscillation([]) == 0.0


# --- each rule on both sides of its threshold -------------------------------------------------


def test_vanishing_is_strictly_below_its_ratio_and_fails_below_its_square():
    limit = THRESHOLDS["vanishing_ratio"]
    assert dx.vanishing(facts(grads(limit, 1.0))) is None
    assert dx.vanishing(facts(grads(limit * 0.99, 1.0))).severity == WARN
    assert dx.vanishing(facts(grads(limit**2, 1.0))).severity == WARN
    assert dx.vanishing(facts(grads(limit**2 * 0.99, 1.0))).severity == FAIL


def test_exploding_by_ratio_or_by_the_global_norm_strictly_above():
    ratio, norm = THRESHOLDS["exploding_ratio"], THRESHOLDS["exploding_norm"]
    assert dx.exploding(facts(grads(ratio, 1.0))) is None
    assert dx.exploding(facts(grads(ratio * 1.01, 1.0))) is not None
    peak = rows(3, grad_norm__global__max=[1.0, norm, 2.0])
    assert dx.exploding(facts(peak)) is None
    peak[1]["grad_norm/global/max"] = norm * 1.01
    assert (
        dx.exploding(facts(peak)).evidence == f"grad_norm/global/max = {norm * 1.01:.3g} at epoch 2"
    )


@pytest.mark.parametrize(
    ("rule", "stat"), [(dx.dead_units, "dead_frac"), (dx.saturated, "sat_frac")]
)
def test_dead_and_saturated_read_the_final_epoch_at_or_above_their_fraction(rule, stat):
    limit = THRESHOLDS[stat]
    key = activation_key("relu_1" if stat == "dead_frac" else "sigmoid_1", stat)
    assert rule(facts(rows(3, **{key: [0.99, 0.99, limit * 0.99]}))) is None  # the last counts
    assert rule(facts(rows(3, **{key: [0.0, 0.0, limit]}))) is not None


def test_dead_units_fail_from_nine_tenths():
    key = activation_key("relu_1", "dead_frac")
    below = max(THRESHOLDS["dead_frac"], 0.89)
    assert dx.dead_units(facts(rows(2, **{key: below}))).severity == WARN
    assert dx.dead_units(facts(rows(2, **{key: 0.9}))).severity == FAIL


def test_symmetry_reads_the_first_epoch_of_an_activation_std():
    key = activation_key("relu_0", "std")
    limit = THRESHOLDS["constant_std"]
    assert dx.symmetry(facts(rows(3, **{key: [limit, 0.0, 0.0]}))) is None
    assert dx.symmetry(facts(rows(3, **{key: [limit * 0.5, 1.0, 1.0]}))).code == (
        "constant_activations"
    )


def test_lr_too_high_needs_six_epochs_for_a_trend_and_a_rise_beyond_its_margin():
    rise = 1 + THRESHOLDS["loss_rise"]
    flat = [1.0, 1.0, 1.0, rise, rise]
    assert dx.lr_too_high(facts(rows(5, train__loss=flat))) is None  # too short
    six = [1.0, 1.0, 1.0, 1.0, 1.0 * rise * 1.01, 1.0 * rise * 1.01]
    assert dx.lr_too_high(facts(rows(6, train__loss=six))) is not None
    at = [1.0, 1.0, 1.0, 1.0, rise, rise]  # exactly the margin: not a rise
    assert dx.lr_too_high(facts(rows(6, train__loss=at))) is None


def test_lr_too_high_by_update_ratio_only_for_the_sgd_family():
    high = THRESHOLDS["update_ratio_high"] * 2
    history = rows(3, **{update_ratio_key("dense_0"): high})
    assert dx.lr_too_high(facts(history, {"optimizer.name": "adam"})) is None
    unnamed = RunFacts(history, {"optimizer.lr": "0.1"})  # sgd is the default optimizer
    assert dx.lr_too_high(unnamed) is not None
    at = rows(3, **{update_ratio_key("dense_0"): THRESHOLDS["update_ratio_high"]})
    assert dx.lr_too_high(facts(at)) is None


def test_lr_too_low_needs_tiny_updates_and_a_loss_that_barely_moves():
    tiny = THRESHOLDS["update_ratio_low"] / 2
    ratio = {update_ratio_key("dense_0"): tiny}
    flat = facts(rows(2, train__loss=[1.0, 0.9], **ratio))
    assert dx.lr_too_low(flat) is not None
    moved = 1 - THRESHOLDS["loss_flat"]
    assert dx.lr_too_low(facts(rows(2, train__loss=[1.0, moved], **ratio))) is None
    assert dx.lr_too_low(facts(rows(1, train__loss=[1.0], **ratio))) is None  # one epoch
    assert dx.lr_too_low(facts(rows(2, train__loss=[0.0, 0.0], **ratio))) is not None  # 0 loss
    assert dx.lr_too_low(facts(rows(2, train__loss=[1.0, 1.0]))) is None  # no update ratios
    unnamed = RunFacts(rows(2, train__loss=[1.0, 1.0], **ratio), {"optimizer.lr": "0.1"})
    assert dx.lr_too_low(unnamed) is not None  # sgd is the default optimizer


def test_overfitting_needs_the_rise_and_the_gap_while_training_loss_falls():
    rise, gap = THRESHOLDS["overfit_rise"], THRESHOLDS["overfit_gap"]
    train = [1.0, 0.5, 0.2]
    best = 0.4
    val = [0.5, best, best * (1 + rise) * 1.01]
    assert dx.overfitting(facts(rows(3, train__loss=train, val__loss=val))) is not None
    at = [0.5, best, best * (1 + rise)]
    assert dx.overfitting(facts(rows(3, train__loss=train, val__loss=at))) is None
    close = [1.0, 0.5, val[2] - gap * 0.999]  # val/loss within the gap of train/loss
    assert dx.overfitting(facts(rows(3, train__loss=close, val__loss=val))) is None
    apart = [1.0, 0.5, val[2] - gap * 1.001]
    assert dx.overfitting(facts(rows(3, train__loss=apart, val__loss=val))) is not None
    assert dx.overfitting(facts(rows(3, train__loss=[1.0, 0.5, 0.5], val__loss=val))) is None
    assert dx.overfitting(facts(rows(2, train__loss=[1.0, 0.5], val__loss=val[:2]))) is None


def test_underfitting_within_the_margin_of_chance():
    margin = THRESHOLDS["chance_margin"]
    at = facts(rows(2, train__acc=0.5 + margin), task="binary")
    assert dx.underfitting(at) is not None
    above = facts(rows(2, train__acc=0.5 + margin + 1e-9), task="binary")
    assert dx.underfitting(above) is None
    assert dx.underfitting(facts(rows(2, train__acc=0.2), task="regression")) is None


def test_input_not_standardized_needs_the_setting_a_symptom_and_no_divergence():
    raw = {"dataset.standardize": "false"}
    rising = rows(6, train__loss=[1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    assert dx.input_not_standardized(facts(rising, raw)) is not None
    assert dx.input_not_standardized(facts(rising)) is None  # standardized
    assert dx.input_not_standardized(facts(rising, raw, diverged=True)) is None
    assert dx.input_not_standardized(facts(rows(6, train__loss=1.0), raw)) is None


def test_underflow_is_the_worst_layers_median_at_or_above_half_ties_to_the_first():
    def run(**layers: list[float]) -> RunFacts:
        return facts(rows(3, **{underflow_key(k): v for k, v in layers.items()}))

    assert dx.underflow(run(dense_0=[0.5, 0.5, 0.0])) is not None  # the median: 0.5, the limit
    assert dx.underflow(run(dense_0=[0.49, 0.6, 0.0])) is None
    assert dx.underflow(facts(rows(3, train__loss=1.0))) is None  # not a mixed run
    tie = dx.underflow(run(dense_10=[0.7] * 3, dense_2=[0.7] * 3, dense_1=[0.6] * 3))
    assert tie.evidence.startswith(
        "amp/underflow/dense_2 = 0.7 (median"
    )  # of equal medians, the first layer
    eight = run(**{f"dense_{i}": [0.75] * 3 for i in range(8)})  # keys come from a set: no order
    assert dx.underflow(eight).evidence.startswith("amp/underflow/dense_0 = 0.75")
    worst = dx.underflow(run(dense_0=[0.6, 0.6, math.nan], dense_1=[0.9, 1.0, 0.8]))
    assert worst.evidence == "amp/underflow/dense_1 = 0.9 (median over epochs; trainer.loss_scale=)"
    assert worst.fix == ("trainer.loss_scale=dynamic",) and worst.severity == FAIL


def test_diagnose_puts_failures_first_and_drops_what_another_finding_explains():
    raw = {"dataset.standardize": "false", "model.init": "zeros"}
    rising = rows(6, train__loss=[1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    codes = [f.code for f in dx.diagnose(facts(rising, raw))]
    assert codes == ["symmetry", "input_not_standardized"]  # lr_too_high is its evidence
    assert dx.findings_tag(dx.diagnose(facts(rising, raw))) == "symmetry,input_not_standardized"


# --- every finding's words, against the snapshot ------------------------------------------------


def _cases() -> dict[str, RunFacts]:
    """One run per finding (and per form of its evidence)."""
    limit = THRESHOLDS["vanishing_ratio"]
    dead = activation_key("relu_1", "dead_frac")
    sat = activation_key("sigmoid_1", "sat_frac")
    rising = rows(6, train__loss=[1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    error = "NonFiniteError: training diverged at epoch 3 (loss=nan). Try optimizer.lr=0.01"
    return {
        "diverged by lr": facts([], diverged=True, error=error),
        "diverged by init": facts([], diverged=True, error="diverged", cause=dx.CAUSE_INIT),
        "diverged by input": facts([], diverged=True, cause=dx.CAUSE_INPUT),
        "zero init": facts(
            rows(2, **{activation_key("relu_0", "std"): 0.0}), {"model.init": "zeros"}
        ),
        "constant": facts(
            rows(2, **{activation_key("tanh_0", "std"): 0.0}), {"model.activation": "tanh"}
        ),
        "vanishing warn": facts(grads(limit / 2, 1.0)),
        "vanishing fail": facts(grads(limit**3, 1.0)),
        "exploding by ratio": facts(grads(1e3, 1.0)),
        "exploding by norm": facts(rows(2, grad_norm__global__max=[1.0, 1e6])),
        "dead warn": facts(rows(2, **{dead: max(THRESHOLDS["dead_frac"], 0.85)})),
        "dead fail": facts(rows(2, **{dead: 0.95})),
        "saturated": facts(rows(2, **{sat: 0.75})),
        "lr high by trend": facts(rising),
        "lr high by oscillation": facts(rows(8, train__loss=[1.0, 1.2] * 4)),
        "lr high by ratio": facts(rows(2, **{update_ratio_key("dense_0"): 0.5})),
        "lr high by blowup and trend": facts(
            rows(6, train__loss=[1.0, 1.0, 1.0, 90.0, 2.0, 2.0]), task="binary"
        ),
        "lr low": facts(rows(3, train__loss=[1.0, 0.99, 0.98], **{update_ratio_key("d_0"): 1e-7})),
        "overfitting": facts(rows(3, train__loss=[1.0, 0.5, 0.2], val__loss=[0.5, 0.4, 0.6])),
        "underfitting": facts(rows(2, train__acc=0.26), task="multiclass", n_classes=4),
        "input": facts(rising, {"dataset.standardize": "False"}),
        "input, two symptoms": facts(
            [
                row | {"train/loss": loss}  # a rising loss and exploding gradients
                for row, loss in zip(grads(1e3, 1.0, n=6), [1.0] * 4 + [2.0] * 2, strict=True)
            ],
            {"dataset.standardize": "false"},
        ),
        "underflow": facts(
            rows(3, **{underflow_key("dense_0"): [0.9, 0.6, 0.0], underflow_key("dense_1"): 0.1}),
            {"trainer.loss_scale": "none"},
        ),
    }


def _render() -> str:
    out = []
    for name, run in _cases().items():
        out.append(f"## {name}")
        for f in dx.diagnose(run):
            out += [f.line(), f"  code: {f.code}", f"  advice: {f.advice}"]
        out.append("")
    return "\n".join(out)


def test_every_finding_reads_as_the_snapshot_says():
    text = _render()
    if os.environ.get("NNEXP_REGOLD"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the doctor's words changed: if intended, NNEXP_REGOLD=1 rewrites tests/golden/"
        "doctor_findings.txt (review its diff)"
    )
    assert dx.verdict([]).startswith("doctor: no findings")
    findings = dx.diagnose(_cases()["dead fail"])
    assert dx.verdict(findings) == f"doctor: {findings[0].severity} {findings[0].title}"


def test_layers_sort_in_network_order_unnumbered_ones_first():
    layers = ["dense_10", "dense_2", "residual_0", "dense_0", "input"]
    assert sorted(layers, key=dx._network_order) == [
        "input", "dense_0", "residual_0", "dense_2", "dense_10"
    ]  # fmt: skip
    assert dx._network_order("dense_3") == (3, "dense_3")
    assert dx._network_order("input") == (-1, "input")
    assert dx._index("dense_12") == 12 and dx._index("a/b") is None


def test_the_failing_tag_names_only_the_fail_findings():
    warn = dx.Finding("underfitting", WARN, "t", "e", ())
    fail = dx.Finding("symmetry", FAIL, "t", "e", ())
    assert dx.failing_tag([warn, fail]) == "symmetry"
    assert (
        dx.failing_tag([warn]) == "none"
        and dx.findings_tag([warn, fail]) == "underfitting,symmetry"
    )


# --- found by the complete mutation run ----------------------------------------------------------


def test_dense_layers_and_activation_stats_come_in_network_order():
    history = rows(1, **{
        grad_norm_key("dense_10/W", "mean"): 1.0, grad_norm_key("dense_2/b", "mean"): 1.0,
        grad_norm_key("dense_2/W", "mean"): 1.0, grad_norm_key("proj_1/W", "mean"): 1.0,
        grad_norm_key("dense_1/W", "max"): 1.0, "val/loss": 1.0,
    })  # fmt: skip
    assert dx._dense_layers(facts(history)) == ["dense_2", "dense_10"]
    acts = rows(1, **{activation_key(a, "std"): 1.0 for a in ("relu_10", "relu_2", "tanh_0")})
    assert dx._activation_stat(facts(acts), "std") == [
        (activation_key("tanh_0", "std"), "tanh_0"),
        (activation_key("relu_2", "std"), "relu_2"),
        (activation_key("relu_10", "std"), "relu_10"),
    ]
    assert facts([]).param("nothing") == ""


def test_the_gradient_ratio_is_first_over_last_of_three_layers():
    history = rows(3)
    for row, first, last in zip(history, [1e-3, 2e-3, 3e-3], [2.0, 4.0, 6.0], strict=True):
        row[grad_norm_key("dense_0/W", "mean")] = first
        row[grad_norm_key("dense_1/W", "mean")] = 1.0
        row[grad_norm_key("dense_2/W", "mean")] = last
    assert dx.gradient_ratio(facts(history)) == (5e-4, "dense_0", "dense_2", 1)


def test_a_normal_init_at_scale_ten_takes_the_blame_and_the_evidence_stops_at_the_cause():
    assert dx.divergence_cause(facts([], {"model.init": "normal", "model.init_scale": "10"})) == (
        dx.CAUSE_INIT
    )
    error = (
        "NonFiniteError: training diverged at epoch 1, step 2 (batch 2 of 4): the loss is nan "
        "(lr=0.1). Likely cause: the initialization, not the learning rate — ..."
    )
    finding = dx.diverged(facts([], diverged=True, error=error, cause=dx.CAUSE_INIT))
    assert finding.evidence == (
        "training diverged at epoch 1, step 2 (batch 2 of 4): the loss is nan (lr=0.1)."
    )


def test_constant_activations_name_the_first_layer_and_its_first_epoch():
    history = rows(2, **{activation_key("tanh_0", "std"): [0.0, 0.5]})
    found = dx.symmetry(facts(history, {"model.activation": "tanh", "model.init": "zeros"}))
    assert found.evidence == (
        f"model.init=zeros; {activation_key('tanh_0', 'std')} = 0 at epoch 1 (constant activations)"
    )


# --- boundaries and words the rules above leave open (mutation survivors at 1f4d0e8) ------------


def _binary(losses: list[float], optimizer: str = "adam") -> RunFacts:
    return facts(
        rows(len(losses), train__loss=losses), {"optimizer.name": optimizer}, task="binary"
    )


def test_a_blowup_is_an_epoch_strictly_above_its_multiple_of_the_chance_loss():
    chance_loss = math.log(2)  # binary: guessing costs ln 2
    limit = THRESHOLDS["loss_blowup"] * chance_loss  # 69.3
    assert dx._blowup(_binary([1.0, limit, 0.5])) is None  # exactly the limit: not above
    assert dx._blowup(_binary([1.0, 0.9, 0.5])) is None  # a healthy run
    # 100 is above 100 x ln 2 but below 100 / ln 2: the limit is a multiple of the chance loss.
    found = dx.lr_too_high(_binary([1.0, 100.0, 0.5]))  # any optimizer, even with no trend
    assert found.evidence == "train/loss = 100 at epoch 2, 144x the chance loss"
    four = facts(rows(3, train__loss=[1.0, 200.0, 0.5]), task="multiclass", n_classes=4)
    assert dx._blowup(four) == "train/loss = 200 at epoch 2, 144x the chance loss"
    regression = facts(rows(3, train__loss=[1.0, 1e9, 0.5]), task="regression")
    assert dx._blowup(regression) is None  # no chance loss to compare with


def test_lr_too_high_compares_thirds_and_oscillation_at_its_share():
    # Twelve epochs: thirds of four (mean 0.95, then 1.0: a rise beyond 5 %); quarters of three
    # would see 1.0 and 1.0.
    dipped = [1.0, 1.0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert dx.lr_too_high(_binary(dipped)).evidence == (
        "train/loss rose: mean 0.95 over the first third of the epochs, 1 over the last"
    )
    # Nine epochs, two rises of 20 % among eight pairs: exactly the share that counts.
    wobbly = [1.0, 1.2, 1.0, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert dx._oscillation(wobbly) == THRESHOLDS["oscillation"]
    assert dx.lr_too_high(_binary(wobbly)).evidence == (
        "train/loss rose by > 10 % in 25% of epochs (oscillating)"
    )


def test_lr_too_low_reads_the_optimizer_its_strict_limit_and_how_far_the_loss_fell():
    def run(losses: list[float], ratio: float, optimizer: str = "sgd") -> RunFacts:
        history = rows(len(losses), train__loss=losses, **{update_ratio_key("dense_0"): ratio})
        return facts(history, {"optimizer.name": optimizer})

    tiny = THRESHOLDS["update_ratio_low"] / 2
    found = dx.lr_too_low(run([2.0, 1.8], tiny))
    assert found.evidence == (
        "update ratios: median 5e-06 over 1 layers (~1e-3 is healthy); "
        "train/loss fell 10.0% over 2 epochs"
    )  # (2.0 - 1.8) / 2.0, not / 1.8
    assert dx.lr_too_low(run([2.0, 1.8], tiny, optimizer="adam")) is None
    assert dx.lr_too_low(run([2.0, 1.8], THRESHOLDS["update_ratio_low"])) is None  # not below
    # A first loss of 0 moved nothing, whatever came after: no division by it.
    assert "fell 0.0% over 2 epochs" in dx.lr_too_low(run([0.0, 1.0], tiny)).evidence


def test_update_ratios_all_zero_are_not_a_learning_rate_problem():
    zero = facts(rows(2, train__loss=[1.0, 1.0], **{update_ratio_key("dense_0"): 0.0}))
    assert dx.update_ratio(zero) is None and dx.lr_too_low(zero) is None


def test_overfitting_needs_both_epochs_in_the_training_loss_a_fall_and_a_gap_above_its_limit():
    val = [0.5, 0.4, 0.6]  # best at epoch 2, then up by half
    without_best = rows(3, train__loss=[1.0, math.nan, 0.2], val__loss=val)
    without_last = rows(3, train__loss=[1.0, 0.5, math.nan], val__loss=val)
    assert dx.overfitting(facts(without_best)) is None
    assert dx.overfitting(facts(without_last)) is None
    level = rows(3, train__loss=[1.0, 0.2, 0.2], val__loss=val)  # gap and rise, no fall
    assert dx.overfitting(facts(level)) is None
    # val/loss 0.1 above a training loss of 0: exactly the gap (0.1 - 0.0 is 0.1 in floats).
    at_gap = rows(3, train__loss=[1.0, 0.5, 0.0], val__loss=[0.5, 0.05, 0.1])
    assert dx.overfitting(facts(at_gap)) is None


def test_the_verdict_lists_every_finding_by_severity_and_title():
    assert dx.verdict([]) == (
        "doctor: no findings (gradients, activations, learning rate and curves look healthy)"
    )
    findings = dx.diagnose(_cases()["zero init"]) + dx.diagnose(_cases()["overfitting"])
    assert dx.verdict(findings) == (
        "doctor: FAIL symmetry: identical units (zero initialization); WARN overfitting"
    )


class _Ended:
    """What DoctorVerdict reads of a trainer: its history, and `diverged` (nan_policy=stop)."""

    def __init__(self, history: list[dict[str, float]], diverged: str | None = None) -> None:
        self.history, self.diverged = history, diverged


def test_the_doctors_verdict_at_the_end_of_a_run_is_logged_and_reported(caplog):
    reported: list[list] = []
    doctor = dx.DoctorVerdict({"model.init": "he"}, "multiclass", 4, reported.append)
    at_chance = _Ended(rows(2, train__acc=0.26))  # four classes: chance is 0.25
    with caplog.at_level("INFO", logger="nnexp.train.diagnosis"):
        doctor.on_fit_end(at_chance, {})
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == "nnexp: doctor: FAIL underfitting: training accuracy at chance"
    assert [f.code for f in reported[0]] == ["underfitting"]
    assert reported[0][0].evidence == "train/acc = 0.26 at epoch 2 (chance 0.25)"
    caplog.clear()
    with caplog.at_level("INFO", logger="nnexp.train.diagnosis"):
        doctor.on_fit_end(_Ended(rows(2, train__acc=0.9)), {})
    (record,) = caplog.records
    assert record.levelname == "INFO" and record.getMessage().startswith("nnexp: doctor: no ")
    assert reported[1] == []


def test_a_failing_report_is_a_warning_and_ctrl_c_gets_no_verdict(caplog):
    def refuse(findings: list) -> None:
        raise OSError("store away")

    doctor = dx.DoctorVerdict({}, "binary", None, refuse)
    with caplog.at_level("INFO", logger="nnexp.train.diagnosis"):
        doctor.on_exception(_Ended(rows(2, train__acc=0.9)), ValueError("boom"))
    assert caplog.records[-1].getMessage() == (
        "WARNING nnexp: could not record the doctor's findings: store away"
    )
    caplog.clear()
    doctor.on_exception(_Ended(rows(2, train__acc=0.9)), KeyboardInterrupt())
    assert not caplog.records
