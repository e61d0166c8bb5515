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
LONGER = {"init_sweep": ("trainer.epochs=10",), "regularization": ("trainer.epochs=80",)}


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
    elif name not in ("lr_sweep", "init_sweep"):  # those two show divergence on purpose
        assert set(states.values()) == {"finished"}, (name, states)
    if name == "digits":
        assert "test/acc" in page
    if name in ("init_sweep", "depth_vanishing"):  # the per-layer and per-depth plots
        assert {"layers.png", "depth.png"} & {p.name for p in outcome.images}
    if name == "moons_baseline":
        assert {r.params.get("experiment/moons_baseline") for r in sweep.runs} == {
            "classic",
            "modern",
        }
    _assert_lesson(name, sweep)
