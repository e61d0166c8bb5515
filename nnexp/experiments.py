"""``python -m nnexp.experiments NAME``: run one experiment of ``experiments/`` and rewrite the
"Result" section of its page from what the tracking store recorded.

    python -m nnexp.experiments init_sweep                  # full size, into experiments/
    python -m nnexp.experiments all --out /tmp/pages --shrink   # every one, a few epochs each

Each experiment is a Hydra config, ``conf/experiment/NAME.yaml`` (its own sweep, dataset and
model, its own MLflow experiment). This command runs it through the real CLI in a subprocess
(``python -m nnexp experiment=NAME``) into a temporary sqlite store (or ``--store DIR``, kept),
reads the sweep back with `nnexp.report`, draws the plots into ``OUT/NAME/`` and replaces the
text between the page's result markers with the command, its wall time, the table and the plots.
The prose around the markers is the page's own. Everything is seeded: a rerun gives the same
numbers (the wall time aside).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from nnexp.tracking.env import configure_mlflow_env

BEGIN = "<!-- result:begin — written by `python -m nnexp.experiments`; edits here are lost -->"
END = "<!-- result:end -->"
ARM = "experiment/{name}"  # the swept group of an experiment's arms (conf/experiment/NAME/)

Figure = Callable[..., Path | None]  # (sweep, path) -> the PNG written, or None


@dataclass(frozen=True)
class Column:
    """An extra table column: a metric's final value, or the difference of two."""

    header: str
    key: str
    minus: str | None = None

    def value(self, metrics: dict[str, float]) -> float:
        value = metrics.get(self.key, math.nan)
        return value - metrics.get(self.minus, math.nan) if self.minus else value


@dataclass(frozen=True)
class Experiment:
    name: str
    runs: int  # jobs the full sweep launches (the shrunken one too, except Optuna's)
    shrink: tuple[str, ...] = ()  # overrides for the smoke form, beside trainer.epochs=2
    columns: tuple[Column, ...] = ()
    figures: tuple[tuple[str, Figure], ...] = ()  # (file name, plot) beside the report's
    grad_runs: tuple[dict[str, str], ...] = ()  # swept values of the runs in grad_norms.png


def _layers():
    from nnexp.report import layers

    return layers


def _layer_profile(sweep, path):
    return _layers().layer_profile(sweep, path, ARM.format(name="init_sweep"), "model.activation")


def _depth_profile(sweep, path):
    return _layers().depth_profile(sweep, path, "model.hidden", "model.activation")


def _train_val(sweep, path, key):
    return _layers().train_val_curves(sweep, path, key)


# Beside the report's columns (which hold val/loss and val/acc): final train and test accuracy.
ACC = (Column("train/acc final", "train/acc"),)
TEST = Column("test/acc", "test/acc")
SMALL = ("dataset.n_samples=200",)

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "moons_baseline",
            runs=2,
            shrink=SMALL,
            columns=ACC,
            figures=(("train_val_acc.png", partial(_train_val, key="acc")),),
        ),
        Experiment(
            "init_sweep",
            runs=10,
            shrink=SMALL,
            columns=(*ACC, TEST),
            figures=(("layers.png", _layer_profile),),
            grad_runs=(
                {"experiment/init_sweep": "he", "model.activation": "relu"},
                {"experiment/init_sweep": "normal_small", "model.activation": "sigmoid"},
                {"experiment/init_sweep": "normal_large", "model.activation": "relu"},
            ),
        ),
        Experiment("lr_sweep", runs=12, shrink=SMALL, columns=(*ACC, TEST)),
        Experiment(
            "depth_vanishing",
            runs=8,
            shrink=SMALL,
            columns=(*ACC, TEST),
            figures=(("depth.png", _depth_profile),),
            grad_runs=(
                {"model.activation": "sigmoid", "model.hidden": "[32,32,32,32,32,32,32,32]"},
                {"model.activation": "relu", "model.hidden": "[32,32,32,32,32,32,32,32]"},
            ),
        ),
        Experiment("silent_nan", runs=4, shrink=SMALL, columns=(*ACC, TEST)),
        Experiment(
            "regularization",
            runs=4,
            columns=(
                Column("train/loss final", "train/loss"),
                Column("gap (val−train loss)", "val/loss", "train/loss"),
                *ACC,
                Column("gap (train−val acc)", "train/acc", "val/acc"),
                TEST,
            ),
            figures=(("train_val_loss.png", partial(_train_val, key="loss")),),
        ),
        Experiment(
            "digits",
            runs=20,
            shrink=("hydra.sweeper.n_trials=2",),
            columns=(*ACC, TEST),
        ),
    )
}


# --- running ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    command: str
    wall_s: float
    page: Path
    images: list[Path] = field(default_factory=list)


def sweep_command(exp: Experiment, uri: str, shrink: bool) -> list[str]:
    args = [sys.executable, "-m", "nnexp", f"experiment={exp.name}", f"tracking.uri={uri}"]
    if shrink:
        # The page draws its own plots: skip the parent run's report (seconds per sweep).
        args += ["trainer.epochs=2", "hydra.callbacks.mlflow_sweep.report=false", *exp.shrink]
    return args


def run_sweep(exp: Experiment, store: Path, shrink: bool = False) -> float:
    """Run the experiment's sweep with `store` as working directory and tracking store; return
    its wall time in seconds. Raises RuntimeError with the output's tail if the sweep fails."""
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store.resolve() / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    proc = subprocess.run(
        sweep_command(exp, uri, shrink), cwd=store, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"experiment {exp.name}: the sweep exited {proc.returncode}\n{tail}")
    return wall


def generate(name: str, out: Path, shrink: bool = False, store: Path | None = None) -> Outcome:
    """Run experiment `name` and rewrite ``out/NAME.md``'s result section (and its plots)."""
    exp = EXPERIMENTS[name]
    if store is None:
        with tempfile.TemporaryDirectory(prefix=f"nnexp-{name}-") as tmp:
            return _generate(exp, out, shrink, Path(tmp))
    return _generate(exp, out, shrink, store)


def _generate(exp: Experiment, out: Path, shrink: bool, store: Path) -> Outcome:
    wall = run_sweep(exp, store, shrink)
    configure_mlflow_env()
    from mlflow import MlflowClient

    from nnexp.report import find_sweep, load_sweep

    client = MlflowClient(f"sqlite:///{store.resolve() / 'mlflow.db'}")
    sweep = load_sweep(client, find_sweep(client, None, exp.name))
    images = draw(exp, sweep, out / exp.name)
    page = out / f"{exp.name}.md"
    command = f"python -m nnexp.experiments {exp.name}" + (" --shrink" if shrink else "")
    section = result_section(exp, sweep, images, page.parent, command, wall)
    write_page(page, exp, section)
    return Outcome(exp.name, command, wall, page, images)


# --- the page --------------------------------------------------------------------------------


def draw(exp: Experiment, sweep, directory: Path) -> list[Path]:
    """The report's plots and the experiment's own, into `directory` (old PNGs removed)."""
    from nnexp.report import figures

    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    grad_runs = [r for want in exp.grad_runs for r in sweep.runs if _matches(r.params, want)]
    plots = [
        ("val_loss.png", figures.loss_curves),
        ("heatmap.png", figures.heatmap),
        *exp.figures,
        ("grad_norms.png", partial(_grad_norms, runs=grad_runs or figures.chosen_runs(sweep))),
    ]
    return [p for file, plot in plots if (p := plot(sweep, directory / file)) is not None]


def _grad_norms(sweep, path, runs):
    from nnexp.report import figures

    return figures.grad_norm_curves(sweep, runs, path)


def _matches(params: dict[str, str], want: dict[str, str]) -> bool:
    return all(params.get(k, "").replace(" ", "") == v.replace(" ", "") for k, v in want.items())


def result_section(
    exp: Experiment,
    sweep,
    images: Sequence[Path],
    page_dir: Path,
    command: str,
    wall_s: float,
) -> str:
    from nnexp.report.table import table

    headers, rows = table(sweep)
    headers = [*headers, *(c.header for c in exp.columns)]
    for run, row in zip(sweep.runs, rows, strict=True):
        row += [_number(c.value(run.metrics)) for c in exp.columns]
    counts = sweep.counts()
    lines = [
        BEGIN,
        "",
        f"Generated by `{command}`: the sweep `python -m nnexp experiment={exp.name}` ran"
        f" {counts['total']} runs into a fresh store in **{wall_s:.0f} s** of wall time"
        " ([how measured](README.md#how-the-pages-are-made)); this section was then written"
        " from the store alone.",
        "",
        _summary(exp, sweep),
        "",
        _markdown_table(headers, rows),
        "",
        f"`*` marks the best run (final `{sweep.objective_spec.describe()}`)."
        " A diverged run stopped at"
        " the first non-finite loss or gradient: FAILED in MLflow, tagged `diverged`.",
        "",
        *_errors(sweep),
    ]
    for path in images:
        rel = os.path.relpath(path, page_dir)
        lines += [f"![{path.stem}]({rel})", ""]
    lines.append(END)
    return "\n".join(lines)


def _summary(exp: Experiment, sweep) -> str:
    counts = sweep.counts()
    states = ", ".join(f"{counts[k]} {k}" for k in ("finished", "diverged") if counts[k])
    text = f"Runs: {states}."
    failed = counts["failed"] - counts["diverged"]
    if failed:
        text += f" {failed} failed otherwise (see the `error` tag)."
    best = sweep.best()
    if best is not None:
        shown = [
            f"{key} {best.metrics[key]:.4g}"
            for key in ("train/acc", "val/acc", "test/acc")
            if key in best.metrics
        ]
        text += f" Best run: `{best.name}` — " + ", ".join(shown) + "."
    return text


def _errors(sweep) -> list[str]:
    """What each diverged or failed run said (its `error` tag): the message a user sees."""
    lines = [
        f"- `{run.name}`: {' '.join(run.error.split())[:400]}"
        for run in sweep.runs
        if run.state in ("diverged", "failed") and run.error
    ]
    if not lines:
        return []
    return ["Why the runs that did not finish stopped (their `error` tag):", "", *lines, ""]


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)])


def _number(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def write_page(page: Path, exp: Experiment, section: str) -> None:
    """Replace the page's result section (or start a page from a stub if there is none)."""
    if page.exists():
        text = page.read_text(encoding="utf-8")
    else:
        text = (
            f"# {exp.name}\n\n## Question\n\n(to write)\n\n## Run it\n\n"
            f"```\npython -m nnexp experiment={exp.name}\n```\n\n## Result\n\n"
            f"{BEGIN}\n{END}\n\n## What it teaches\n\n(to write)\n"
        )
    start, end = text.find(BEGIN[:20]), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{page}: no result markers ({BEGIN[:20]}... {END})")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text[:start] + section + text[end + len(END) :], encoding="utf-8")


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.experiments",
        description="Run an experiment of experiments/ and rewrite its page's result section.",
    )
    parser.add_argument("name", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--out", type=Path, default=Path("experiments"), help="pages directory")
    parser.add_argument("--shrink", action="store_true", help="a few epochs, small data (smoke)")
    parser.add_argument(
        "--store", type=Path, help="keep the sweep's store and files here (default: a temp dir)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        store = args.store / name if args.store and len(names) > 1 else args.store
        try:
            outcome = generate(name, args.out, args.shrink, store)
        except RuntimeError as exc:
            print(f"nnexp.experiments: error: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {outcome.page} ({outcome.wall_s:.0f} s, {len(outcome.images)} plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
