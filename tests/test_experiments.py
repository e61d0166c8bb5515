"""experiments/: every experiment runs, shrunken (2 epochs, small data, 2 Optuna trials), through
the real CLI into a temporary store, and its page is written from what the store recorded."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "experiments"


def test_every_experiment_has_a_config_and_a_page_with_markers():
    from nnexp.experiments import BEGIN, END, EXPERIMENTS

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


def _rows(page: str) -> list[str]:
    return [line for line in page.splitlines() if re.match(r"^\| \d+ \|", line)]


def _names() -> list[str]:
    from nnexp.experiments import EXPERIMENTS

    return list(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_every_experiment_runs_shrunken_and_writes_its_page(tmp_path, name):
    from mlflow import MlflowClient

    from nnexp.experiments import BEGIN, EXPERIMENTS, generate
    from nnexp.report import find_sweep, load_sweep

    exp = EXPERIMENTS[name]
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
