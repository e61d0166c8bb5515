"""experiments/: every experiment runs, shrunken (2 epochs, small data, 2 Optuna trials), through
the real CLI into a temporary store, and its page is written from what the store recorded."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from conftest import cli_env

from nnexp.names import TAG_DOCTOR_FINDINGS, underflow_key

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "experiments"


def test_every_experiment_has_a_config_and_a_page_with_markers():
    from nnexp.report.experiments import BEGIN, END, EXPERIMENTS

    configs = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    assert configs == set(EXPERIMENTS)
    readme = (REPO / "README.md").read_text()
    for name in EXPERIMENTS:
        text = (PAGES / f"{name}.md").read_text()
        assert text.count(BEGIN) == 1 and text.count(END) == 1, name
        assert f"experiments/{name}.md" in readme, name


@pytest.mark.parametrize("form", ["experiment=moons_baseline", "+experiment=moons_baseline"])
def test_an_experiment_composes_from_any_directory(tmp_path, form):
    """The configs ship in the package (nnexp.conf): no repository checkout needed."""
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp", form, "--cfg", "all"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    # Both spellings: nnexp reads +experiment=NAME as experiment=NAME (Hydra 1.3 alone
    # refuses to append a group that the defaults list already holds as null).
    assert proc.returncode == 0, proc.stderr
    assert "mode: MULTIRUN" in proc.stdout
    assert "experiment: moons_baseline" in proc.stdout
    assert not list(tmp_path.iterdir())  # --cfg writes nothing


def test_the_documented_command_runs_from_any_directory(tmp_path):
    """`python -m nnexp.experiments` stays the command (the code lives in nnexp.report); a name
    it does not know is refused by argparse before anything runs."""
    from nnexp.report.experiments import EXPERIMENTS

    run = partial(
        subprocess.run, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    proc = run([sys.executable, "-m", "nnexp.experiments", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m nnexp.experiments")
    assert all(name in proc.stdout for name in EXPERIMENTS)
    proc = run([sys.executable, "-m", "nnexp.experiments", "bogus"])
    assert proc.returncode == 2 and "invalid choice: 'bogus'" in proc.stderr
    assert not list(tmp_path.iterdir())


def _rows(page: str) -> list[str]:
    return [line for line in page.splitlines() if re.match(r"^\| \d+ \|", line)]


def _names() -> list[str]:
    from nnexp.report.experiments import EXPERIMENTS

    return list(EXPERIMENTS)


# Lessons that do not show after 2 epochs get a longer shrink (an override given later wins).
# Measured on the shrunken data (200 points; regularization's own 500): at 2 epochs the Xavier
# ReLU net is still at 0.525 val/acc (0.80 at 10) and no regularization gap exists yet (at 80
# epochs the unregularized val−train loss gap is 0.19, the others' 0.06 at most). Epochs of
# these small sets cost little beside each run's start-up: the wall time hardly changes.
LONGER = {
    "init_sweep": ("trainer.epochs=10",),
    "regularization": ("trainer.epochs=80",),
    "residual_and_batchnorm": ("trainer.epochs=20",),  # the page's own epochs, on 200 points
    "moons_baseline": ("trainer.epochs=30",),
}


def _run(sweep, **params: str):
    """The one run of `sweep` whose swept values include `params` (spaces ignored)."""
    want = {k: v.replace(" ", "") for k, v in params.items()}
    found = [
        r
        for r in sweep.runs
        if all(r.params.get(k, "").replace(" ", "") == v for k, v in want.items())
    ]
    assert len(found) == 1, (params, [r.params for r in sweep.runs])
    return found[0]


def _first(sweep, run, key: str) -> float:
    """`key` at the run's first epoch."""
    history = sweep.history(run, key)
    assert history, (run.name, key)
    return history[0][1]


def _weight_grads(run) -> list[str]:
    """The run's per-layer weight-gradient keys, first layer first."""
    keys = [k for k in run.metrics if re.fullmatch(r"grad_norm/dense_\d+/W/mean", k)]
    return sorted(keys, key=lambda k: int(re.findall(r"\d+", k)[0]))


FIRST_UNDERFLOW = underflow_key("dense_0")


def _assert_lesson(name: str, sweep) -> None:
    """Each experiment's lesson points the way its page says (the numbers: measured shrunken)."""
    if name == "init_sweep":  # 10 epochs (LONGER)
        zeros = _run(sweep, **{"experiment/init_sweep": "zeros", "model.activation": "relu"})
        # Symmetry never breaks: every weight gradient exactly 0, the loss stays at ln 2.
        assert zeros.state == "finished"
        assert all(_first(sweep, zeros, k) == 0.0 for k in _weight_grads(zeros))
        assert zeros.metrics["val/acc"] == 0.5
        assert abs(zeros.metrics["val/loss"] - math.log(2)) < 2e-3, zeros.metrics
        for init in ("xavier", "he"):  # measured: 0.80 and 0.85 val/acc, val/loss 0.62, 0.26
            run = _run(sweep, **{"experiment/init_sweep": init, "model.activation": "relu"})
            assert run.state == "finished", init
            assert run.metrics["val/acc"] >= 0.7, (init, run.metrics)
            assert run.metrics["val/loss"] < math.log(2) - 0.05, (init, run.metrics)
    elif name == "depth_vanishing":
        # At epoch 1, first-layer / last-layer weight-gradient norm. Measured: sigmoid 5.2e-2,
        # 9.8e-3, 4.2e-4, 1.1e-5 at 2, 4, 6, 8 hidden layers; ReLU 0.64-1.7 at every depth.
        ratios = {}
        for activation in ("sigmoid", "relu"):
            for depth in (2, 4, 6, 8):
                hidden = "[" + ",".join(["32"] * depth) + "]"
                run = _run(sweep, **{"model.activation": activation, "model.hidden": hidden})
                first, *_, last = _weight_grads(run)
                ratios[activation, depth] = _first(sweep, run, first) / _first(sweep, run, last)
        sigmoid = [ratios["sigmoid", d] for d in (2, 4, 6, 8)]
        assert sigmoid == sorted(sigmoid, reverse=True), ratios  # deeper, smaller
        assert ratios["sigmoid", 8] < 1e-3, ratios  # orders of magnitude below the last layer
        assert all(0.1 < ratios["relu", d] < 10 for d in (2, 4, 6, 8)), ratios
        assert ratios["relu", 8] > 1e3 * ratios["sigmoid", 8], ratios
    elif name == "silent_nan":
        raw = _run(sweep, **{"dataset.standardize": "False", "trainer.grad_clip.norm": "null"})
        assert raw.state == "diverged"
        standardized = _run(
            sweep, **{"dataset.standardize": "True", "trainer.grad_clip.norm": "null"}
        )
        assert standardized.state == "finished"
        assert standardized.metrics["val/acc"] >= 0.7, standardized.metrics  # measured: 0.825
    elif name == "lr_sweep":
        # Measured at 2 epochs: SGD lr 10 diverged; lr 0.1 val/acc 0.80, val/loss 0.31.
        assert _run(sweep, optimizer="sgd", **{"optimizer.lr": "10.0"}).state == "diverged"
        middle = _run(sweep, optimizer="sgd", **{"optimizer.lr": "0.1"})
        assert middle.state == "finished"
        assert middle.metrics["val/acc"] >= 0.7, middle.metrics
        assert middle.metrics["val/loss"] < 0.5, middle.metrics
    elif name == "mixed_precision":
        # From the first epoch: unscaled, float16 flushes the first layer's whole gradient to
        # zero; scaled, it keeps it. Measured at 2 epochs: 1.0 unscaled, 0.0 static and dynamic.
        arms = {r.params["experiment/mixed_precision"]: r for r in sweep.runs}
        assert arms["unscaled"].metrics[FIRST_UNDERFLOW] > 0.9, arms["unscaled"].metrics
        for scaled in ("static", "dynamic"):
            assert arms[scaled].metrics[FIRST_UNDERFLOW] < 0.01, arms[scaled].metrics
        assert FIRST_UNDERFLOW not in arms["float32"].metrics
        tags = sweep.client.get_run(arms["unscaled"].run_id).data.tags
        assert "gradient_underflow" in tags[TAG_DOCTOR_FINDINGS]
    elif name == "residual_and_batchnorm":  # 20 epochs (LONGER)
        arm = "experiment/residual_and_batchnorm"

        def run(net: str, residual: str, bn: str):
            return _run(
                sweep, **{arm: net, "model.residual": residual, "regularization.batch_norm": bn}
            )

        # Training accuracy: on 200 points (4 steps an epoch) batch norm's running statistics
        # lag, and the 24-layer net's validation accuracy with them. Measured: plain 0.50 and
        # 0.50; batch norm 0.89 (sigmoid) and 0.875 (ReLU; 0.525 on validation).
        accs = {r.name: r.metrics.get("train/acc") for r in sweep.runs}
        for net in ("sigmoid_8", "relu_24"):
            plain, bn = run(net, "False", "False"), run(net, "False", "True")
            assert plain.metrics["train/acc"] <= 0.6, accs
            assert bn.metrics["train/acc"] >= plain.metrics["train/acc"] + 0.2, accs
        assert run("relu_24", "True", "False").state == "diverged"
    elif name == "moons_baseline":
        arms = {r.params["experiment/moons_baseline"]: r for r in sweep.runs}
        assert arms["logistic"].state == "finished"
        accs = {arm: r.metrics.get("val/acc") for arm, r in arms.items()}
        assert arms["logistic"].metrics["val/acc"] >= 0.7, accs
    elif name == "regularization":  # 80 epochs (LONGER)
        # The page's gap: final val/loss − train/loss. Measured: 0.19 unregularized; 0.06
        # (L2), -0.01 (dropout), -0.005 (both).
        gaps = {
            (r.params["regularization.l2"], r.params["model.dropout"]): r.metrics["val/loss"]
            - r.metrics["train/loss"]
            for r in sweep.runs
        }
        none = gaps.pop(("0.0", "0.0"))
        assert len(gaps) == 3
        assert none >= 0.1, (none, gaps)
        assert all(none >= 2 * max(gap, 0.0) for gap in gaps.values()), (none, gaps)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_every_experiment_runs_shrunken_and_writes_its_page(tmp_path, monkeypatch, name):
    from mlflow import MlflowClient

    from nnexp.report import find_sweep, load_sweep
    from nnexp.report.experiments import BEGIN, EXPERIMENTS, generate

    exp = EXPERIMENTS[name]
    if name in LONGER:
        exp = dataclasses.replace(exp, shrink=(*exp.shrink, *LONGER[name]))
        monkeypatch.setitem(EXPERIMENTS, name, exp)
    out = tmp_path / "pages"
    out.mkdir()
    shutil.copy(PAGES / f"{name}.md", out / f"{name}.md")  # the real page: prose kept
    prose = (PAGES / f"{name}.md").read_text().split(BEGIN)[0]
    store = tmp_path / "store"
    outcome = generate(name, out, shrink=True, store=store)

    page = outcome.page.read_text()
    assert page.startswith(prose), name
    assert f"`python -m nnexp.experiments {name} --shrink`" in page
    expected = 2 if name == "digits" else exp.runs  # Optuna: n_trials=2 when shrunken
    assert len(_rows(page)) == expected, (name, page)
    assert outcome.images and all(p.is_file() for p in outcome.images), name
    assert all(f"]({name}/{p.name})" in page for p in outcome.images), name
    assert not (store / "outputs").exists()  # a multirun: everything under multirun/

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    sweep = load_sweep(client, find_sweep(client, None, name))
    assert len(sweep.runs) == expected, name
    states = {tuple(sorted(r.params.items())): r.state for r in sweep.runs}
    if name == "silent_nan":
        # The broken run (raw 1e6 feature, no clipping) fails fast, tagged diverged.
        broken = (("dataset.standardize", "False"), ("trainer.grad_clip.norm", "null"))
        assert states[broken] == "diverged", states
        assert "| diverged |" in page and "training diverged at epoch" in page
        assert sum(s == "finished" for s in states.values()) == 3, states
    elif name not in ("lr_sweep", "init_sweep", "residual_and_batchnorm"):  # divergence shown
        assert set(states.values()) == {"finished"}, (name, states)
    if name == "digits":
        assert "test/acc" in page
    if name in ("init_sweep", "depth_vanishing"):  # the per-layer and per-depth plots
        assert {"layers.png", "depth.png"} & {p.name for p in outcome.images}
    if name == "moons_baseline":
        assert {r.params.get("experiment/moons_baseline") for r in sweep.runs} == {
            "logistic",
            "classic",
            "modern",
        }
    _assert_lesson(name, sweep)


# --- the committed pages: their recorded results point the way their prose says -----------------


def _recorded(name: str) -> list[dict[str, str]]:
    """The committed page's result table, a dict per run (as the generator wrote it)."""
    from nnexp.report.experiments import page_rows

    rows = page_rows((PAGES / f"{name}.md").read_text(encoding="utf-8"))
    assert rows, f"experiments/{name}.md has no result table"
    return rows


def _row(rows: list[dict[str, str]], **cells: str) -> dict[str, str]:
    """The one row whose cells hold `cells` (column header → cell)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in cells.items())]
    assert len(found) == 1, (cells, rows)
    return found[0]


def _acc(row: dict[str, str], key: str = "val/acc final") -> float:
    return float(row[key])


def _findings(row: dict[str, str]) -> set[str]:
    from nnexp.report.experiments import FINDINGS

    cell = row[FINDINGS]  # FAIL a, b; WARN c (or none), as nnexp.compare shows them
    by_severity = [] if cell == "none" else cell.split("; ")
    assert all(part.startswith(("FAIL ", "WARN ")) for part in by_severity), cell
    return {code for part in by_severity for code in part.split(" ", 1)[1].split(", ")}


def test_mixed_precision_page_unscaled_stalls_and_scaled_matches_float32():
    rows = _recorded("mixed_precision")
    arm = "experiment/mixed_precision"
    float32, unscaled, static, dynamic = (
        next(r for r in rows if r[arm] == a) for a in ("float32", "unscaled", "static", "dynamic")
    )
    assert all(r["status"] == "finished" for r in rows)
    # Unscaled: the first layer's gradient is lost to float16 and training stays at chance.
    assert float(unscaled["amp/underflow/dense_0 final"]) > 0.9
    assert _acc(unscaled) <= 0.55 < _acc(dynamic)
    for scaled in (static, dynamic):  # the scaled runs lose nothing and train as float32 does
        assert float(scaled["amp/underflow/dense_0 final"]) < 0.01, scaled
        assert abs(_acc(scaled) - _acc(float32)) <= 0.01 + 1e-9, (scaled, float32)
    assert float32["amp/underflow/dense_0 final"] == "-"  # float32 logs no amp/ metrics
    assert "gradient_underflow" in _findings(unscaled)
    assert not any(_findings(r) for r in (float32, static, dynamic))


def test_residual_and_batchnorm_page_each_cure_beats_the_plain_deep_net():
    rows = _recorded("residual_and_batchnorm")
    arm = "experiment/residual_and_batchnorm"

    def run(net: str, residual: str, bn: str) -> dict[str, str]:
        (found,) = [
            r
            for r in rows
            if (r[arm], r["model.residual"], r["regularization.batch_norm"]) == (net, residual, bn)
        ]
        return found

    for net in ("sigmoid_8", "relu_24"):
        plain = run(net, "False", "False")
        assert _acc(plain) <= 0.55, plain  # at chance without help
        assert _acc(run(net, "False", "True")) > _acc(plain) + 0.3  # batch norm
        assert _acc(run(net, "True", "True")) > _acc(plain) + 0.3  # both
    assert _acc(run("sigmoid_8", "True", "False")) > _acc(run("sigmoid_8", "False", "False"))
    # Skip connections alone let a 24-layer ReLU stack's signal grow block after block.
    assert run("relu_24", "True", "False")["status"] == "diverged"
    assert "vanishing_gradients" in _findings(run("sigmoid_8", "False", "False"))
    assert {"dead_relu", "underfitting"} <= _findings(run("relu_24", "False", "False"))


def test_moons_baseline_page_logistic_regression_is_the_bar_the_modern_net_clears():
    rows = _recorded("moons_baseline")
    arm = "experiment/moons_baseline"
    logistic, modern = (next(r for r in rows if r[arm] == a) for a in ("logistic", "modern"))
    assert 0.8 <= _acc(logistic) < _acc(modern) - 0.05, (logistic, modern)


def test_the_doctor_names_each_pages_lesson_and_nothing_on_the_healthy_runs():
    """Issue 15's table: on the recorded pages, the runs that show a page's lesson carry its
    finding; the healthy runs (the modern moons recipe, the tuned digits models) carry none."""
    init = _recorded("init_sweep")
    for activation in ("relu", "sigmoid"):
        zeros = _row(init, **{"experiment/init_sweep": "zeros", "model.activation": activation})
        assert "symmetry" in _findings(zeros), zeros
    depth = _recorded("depth_vanishing")
    for hidden in ("[32,32,32,32,32,32]", "[32,32,32,32,32,32,32,32]"):
        sigmoid = _row(depth, **{"model.activation": "sigmoid", "model.hidden": hidden})
        assert "vanishing_gradients" in _findings(sigmoid), sigmoid
    assert not any(_findings(r) for r in depth if r["model.activation"] == "relu")
    lr = _recorded("lr_sweep")
    for value in ("1.0", "10.0"):
        sgd = _row(lr, optimizer="sgd", **{"optimizer.lr": value})
        assert sgd["status"] == "diverged" and "diverged_lr" in _findings(sgd), sgd
    for value in ("1.0", "10.0"):  # Adam there does not diverge: its loss blows up, then dies
        adam = _row(lr, optimizer="adam", **{"optimizer.lr": value})
        assert "lr_too_high" in _findings(adam), adam
    raw = _recorded("silent_nan")
    unclipped = _row(raw, **{"dataset.standardize": "False", "trainer.grad_clip.norm": "null"})
    clipped = _row(raw, **{"dataset.standardize": "False", "trainer.grad_clip.norm": "1.0"})
    assert "diverged_input" in _findings(unclipped)
    assert "input_not_standardized" in _findings(clipped)
    reg = _recorded("regularization")
    none = _row(reg, **{"regularization.l2": "0.0", "model.dropout": "0.0"})
    assert "overfitting" in _findings(none), none
    # Regularized runs that train well: no dead-ReLU warning (their layers are sparse, ~0.7
    # silent in a batch, not dead), and L2's runs no overfitting.
    assert not any("dead_relu" in _findings(r) for r in reg)
    assert not any(_findings(r) for r in reg if r["regularization.l2"] != "0.0")
    moons = _recorded("moons_baseline")
    modern = _row(moons, **{"experiment/moons_baseline": "modern"})
    assert _findings(modern) == set()
    digits = _recorded("digits")
    best = next(r for r in digits if r["run"].endswith(" *"))
    assert _findings(best) == set() and float(best["test/acc"]) >= 0.97, best


def test_the_findings_table_of_the_readme_is_the_pages_own():
    """experiments/README.md's table is generated from the pages' tables: in sync, every run."""
    from nnexp.report.experiments import (
        EXPERIMENTS,
        FINDINGS_BEGIN,
        FINDINGS_END,
        findings_table,
        page_findings,
    )

    readme = (PAGES / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(FINDINGS_BEGIN), readme.index(FINDINGS_END) + len(FINDINGS_END)
    assert readme[start:end] == findings_table(PAGES)
    for name in EXPERIMENTS:
        page = (PAGES / f"{name}.md").read_text(encoding="utf-8")
        rows = page_findings(page)
        assert rows, f"experiments/{name}.md has no findings column: regenerate it"
        assert all(f"| [{name}]({name}.md) | {run} |" in readme for run, _, _ in rows), name
