"""`python -m nnexp.compare`: the report of a sweep from the tracking store alone — the table,
the PNG plots and one self-contained HTML page — on a real 2×2 sweep with two diverged jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import Cli, cli_env

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Cli:
    """A 2×2 sweep (init × lr) whose lr=1e6 jobs diverge; its Hydra output dir is removed, so
    the report can only come from the store."""
    cli = Cli(tmp_path_factory.mktemp("compare"))
    cli.ok("-m", "model.init=xavier,he", "optimizer.lr=0.1,1e6", "trainer.epochs=2")
    shutil.rmtree(cli.workdir / "multirun")
    return cli


def compare(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnexp.compare", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def parent_of(cli: Cli):
    (parent,) = [r for r in cli.runs() if r.data.tags.get("sweep.role") == "parent"]
    return parent


@pytest.mark.slow
def test_report_of_the_latest_sweep_from_the_store_alone(swept):
    proc = compare(swept.workdir, "--out", "report")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("0 ", "1 ", "2 ", "3 "))]
    assert len(rows) == 4
    assert sum("diverged" in row for row in rows) == 2
    assert sum("finished" in row for row in rows) == 2
    assert all(("lr=1e+06" in row) == ("diverged" in row) for row in rows)
    assert "val/loss final" in proc.stdout and "val/acc best" in proc.stdout
    out = swept.workdir / "report"
    for name in ("val_loss.png", "heatmap.png", "grad_norms.png", "weights_output.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img alt="[a-z_]+" src="data:image/png;base64,', page)) == 4
    assert not re.search(r'(src|href)="(https?:|//|/)', page)  # nothing to fetch: self-contained
    assert page.count('<tr class="diverged"') == 2
    assert page.count('<tr class="best"') == 1


@pytest.mark.slow
def test_sweep_chosen_by_id_or_parent_run_id_and_by_uri(swept, tmp_path):
    parent = parent_of(swept)
    sweep_id = parent.data.tags["sweep.id"]
    for which in (sweep_id, parent.info.run_id):
        proc = compare(
            tmp_path, "--uri", swept.uri, "--sweep", which, "--experiment", "nnexp", "--out", "r"
        )
        assert proc.returncode == 0, proc.stderr
        assert f"sweep {sweep_id} (parent run {parent.info.run_id})" in proc.stdout
    proc = compare(tmp_path, "--uri", swept.uri, "--runs", "0,3", "--out", "r")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sweep", "nope"), "no sweep 'nope' in any experiment"),
        (("--experiment", "nope"), "no MLflow experiment 'nope'"),
        (("--runs", "99"), "--runs 99: no such run"),
    ],
)
def test_what_is_not_there_is_one_clear_error(swept, args, message):
    proc = compare(swept.workdir, *args, "--out", "unused")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_store_is_an_error_and_creates_none(tmp_path):
    proc = compare(tmp_path)
    assert proc.returncode == 2
    assert "no MLflow store at sqlite:///mlflow.db" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


# --- the report's figures, inspected in-process ----------------------------------------------

DIVERGED_RED = "#d62728"


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Every matplotlib Figure saved while the test runs (the report's functions return paths:
    the figure is caught as it is written)."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def spy(fig, *args, **kwargs):
        figures.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


class _Store:
    """The one client call the figures make: a metric's history."""

    def __init__(self, histories: dict[tuple[str, str], list[float]]) -> None:
        self.histories = histories

    def get_metric_history(self, run_id: str, key: str):
        from types import SimpleNamespace

        values = self.histories.get((run_id, key), [])
        return [SimpleNamespace(step=i + 1, value=v) for i, v in enumerate(values)]


LRS, INITS, LAYERS = ("0.01", "0.1", "1000000.0"), ("he", "xavier"), 11
GRAD = [10.0 ** (i - 8) for i in range(LAYERS)]  # 1e-8 (first layer) ... 100 (last)


def _sweep(lrs=LRS, epochs: int = 4):
    """A synthetic lr × init sweep, its runs' histories in memory: lr 1e6 diverges at epoch 3
    (NaN from then on), the others' val/loss falls; 11 layers' weight-gradient norms (first
    layer smallest) and first-epoch activation statistics."""
    import math

    from nnexp.report.collect import RunRecord, Sweep

    runs, histories = [], {}
    for job, (lr, init) in enumerate((lr, init) for lr in lrs for init in INITS):
        diverged = float(lr) > 1
        run_id = f"run{job}"
        losses = [1.0 / (e + float(lr) * 10 + (init == "he")) for e in range(1, epochs + 1)]
        if diverged:
            losses = [*losses[:2], math.nan]
        histories[run_id, "val/loss"] = losses
        for i in range(LAYERS):
            histories[run_id, f"grad_norm/dense_{i}/W/mean"] = [GRAD[i]] * epochs
            histories[run_id, f"act/relu_{i}/std"] = [0.5]
            histories[run_id, f"act/relu_{i}/dead_frac"] = [0.1]
        metrics = {key: values[-1] for (rid, key), values in histories.items() if rid == run_id}
        runs.append(
            RunRecord(
                run_id=run_id,
                name=f"#{job:02d} lr={lr} init={init}",
                job=job,
                status="FAILED" if diverged else "FINISHED",
                diverged=diverged,
                error="diverged" if diverged else "",
                params={"optimizer.lr": lr, "model.init": init},
                metrics=metrics,
                objective=losses[-1],
            )
        )
    return Sweep(
        sweep_id="s",
        parent_run_id="p",
        name="sweep",
        experiment_id="0",
        objective="val/loss",
        swept=["optimizer.lr", "model.init"],
        runs=runs,
        client=_Store(histories),
    )


def _red_crosses(ax) -> list:
    from matplotlib.colors import same_color

    return [
        line
        for line in ax.get_lines()
        if line.get_marker() == "x" and same_color(line.get_color(), DIVERGED_RED)
    ]


def _series(ax) -> list:
    """The data lines of `ax` (not the single-point markers)."""
    return [line for line in ax.get_lines() if line.get_linestyle() != "None"]


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


@pytest.mark.parametrize("lrs", [LRS, LRS[:2]], ids=["with-diverged", "none-diverged"])
def test_val_loss_png_one_curve_per_run_and_a_red_cross_per_diverged_run(tmp_path, drawn, lrs):
    from nnexp.report import figures

    sweep = _sweep(lrs)
    assert figures.loss_curves(sweep, tmp_path / "val_loss.png").is_file()
    (fig,) = drawn
    ax = fig.get_axes()[0]
    assert len(_series(ax)) == len(sweep.runs) == 2 * len(lrs)
    for line, run in zip(_series(ax), sweep.runs, strict=True):  # each run's finite points
        finite = [v for _, v in sweep.history(run, "val/loss") if v == v]
        assert list(line.get_ydata()) == finite
    n_diverged = sum(run.state == "diverged" for run in sweep.runs)
    assert n_diverged == (2 if len(lrs) == 3 else 0)
    crosses = _red_crosses(ax)
    assert len(crosses) == n_diverged
    for cross, run in zip(crosses, [r for r in sweep.runs if r.state == "diverged"], strict=True):
        assert list(cross.get_ydata()) == [sweep.history(run, "val/loss")[1][1]]  # its last point
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "val/loss"
    # Color: the lr (a color bar); line style: the init (legend); the diverged marker's entry.
    assert [a.get_ylabel() for a in fig.get_axes()[1:]] == ["optimizer.lr"]
    expected = ["model.init=he", "model.init=xavier"] + (["diverged"] if n_diverged else [])
    assert _legend(ax) == expected
    assert ("diverged" in ax.get_title()) == bool(n_diverged)


@pytest.mark.parametrize("lrs", [LRS, LRS[:2]], ids=["with-diverged", "none-diverged"])
def test_heatmap_png_one_cell_per_pair_of_swept_values(tmp_path, drawn, lrs):
    import math

    from nnexp.report import figures

    sweep = _sweep(lrs)
    assert figures.heatmap(sweep, tmp_path / "heatmap.png").is_file()
    (fig,) = drawn
    ax = fig.get_axes()[0]
    (image,) = ax.get_images()
    assert image.get_array().shape == (len(INITS), len(lrs))  # rows: init, columns: lr
    assert ax.get_xlabel() == "optimizer.lr" and ax.get_ylabel() == "model.init"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(lrs)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(INITS)
    assert sweep.objective in fig.get_axes()[1].get_ylabel()  # the color bar names it
    # One text per cell: the final objective, or a red ✗ where the run diverged. Each cell
    # holds one run, so no best-over-other-axes choice (min or max) is involved.
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(cells) == len(ax.texts) == len(INITS) * len(lrs)
    for run in sweep.runs:
        y = INITS.index(run.params["model.init"])
        text = cells[y, lrs.index(run.params["optimizer.lr"])]
        if run.state == "diverged":
            assert text.get_text() == "✗\ndiverged"
            assert text.get_color() == DIVERGED_RED
            assert math.isnan(image.get_array().filled(math.nan)[y, lrs.index("1000000.0")])
        else:
            assert text.get_text() == f"{run.objective:.3g}"
    n_crosses = sum("✗" in t.get_text() for t in ax.texts)
    assert n_crosses == sum(r.state == "diverged" for r in sweep.runs)


def test_grad_norms_png_one_panel_per_run_one_line_per_layer(tmp_path, drawn):
    from nnexp.report import figures

    sweep = _sweep()
    runs = [sweep.runs[0], sweep.runs[-1]]  # a finished and a diverged run
    assert figures.grad_norm_curves(sweep, runs, tmp_path / "grad_norms.png").is_file()
    (fig,) = drawn
    axes = fig.get_axes()
    assert len(axes) == len(runs)
    layers = [f"dense_{i}" for i in range(LAYERS)]  # dense_2 before dense_10
    assert _legend(axes[-1]) == layers and _legend(axes[0]) == []  # one legend, beside
    for ax, run in zip(axes, runs, strict=True):
        assert [line.get_label() for line in ax.get_lines()] == layers
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
        assert run.name in ax.get_title()
        first, last = ax.get_lines()[0].get_ydata(), ax.get_lines()[-1].get_ydata()
        assert list(first) == [GRAD[0]] * 4 and list(last) == [GRAD[-1]] * 4
    assert axes[0].get_ylabel()
    assert "(diverged)" in axes[1].get_title() and "(diverged)" not in axes[0].get_title()


def test_weights_output_png_weight_norm_per_layer_and_the_output_range(tmp_path, drawn):
    """The report reads the runs' weight_norm/<layer> and output/min|mean|max metrics."""
    from nnexp.report import figures

    sweep = _sweep()
    histories = sweep.client.histories
    for run in sweep.runs:
        for i in range(LAYERS):
            histories[run.run_id, f"weight_norm/dense_{i}"] = [1.0 + i] * 2
            run.metrics[f"weight_norm/dense_{i}"] = 1.0 + i
        histories[run.run_id, "output/min"] = [-2.0, -3.0]
        histories[run.run_id, "output/mean"] = [0.5, 0.25]
        histories[run.run_id, "output/max"] = [2.0, 4.0]
        run.metrics["output/mean"] = 0.25
    runs = [sweep.runs[0], sweep.runs[-1]]
    assert figures.weights_output_curves(sweep, runs, tmp_path / "w.png").is_file()
    (fig,) = drawn
    axes = fig.get_axes()
    assert len(axes) == 2 * len(runs)  # weight norms above, output range below
    top, bottom = axes[0], axes[len(runs)]
    layers = [f"dense_{i}" for i in range(LAYERS)]  # dense_2 before dense_10
    assert [line.get_label() for line in top.get_lines()] == layers
    assert top.get_yscale() == "log"
    assert list(top.get_lines()[-1].get_ydata()) == [LAYERS, LAYERS]  # 1 + its index
    (mean,) = bottom.get_lines()
    assert list(mean.get_ydata()) == [0.5, 0.25]
    (band,) = bottom.collections  # min … max
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == -3.0 and ys.max() == 4.0


def test_layers_png_one_line_per_run_in_each_panel_and_a_cross_per_diverged_run(tmp_path, drawn):
    from nnexp.report import layers

    sweep = _sweep()
    path = layers.layer_profile(sweep, tmp_path / "layers.png", "model.init", "optimizer.lr")
    assert path.is_file()
    (fig,) = drawn
    axes = fig.get_axes()
    assert len(axes) == 3  # gradient norm, activation std, dead/saturated fraction
    n_diverged = sum(r.state == "diverged" for r in sweep.runs)
    for ax in axes:
        assert len(_series(ax)) == len(sweep.runs)
        assert all(list(line.get_xdata()) == list(range(LAYERS)) for line in _series(ax))
        assert len(_red_crosses(ax)) == n_diverged
        assert ax.get_xlabel() == "layer (0 = first)" and ax.get_title()
    np.testing.assert_allclose(_series(axes[0])[0].get_ydata(), GRAD)
    assert _legend(axes[-1]) == [*(f"init={v}" for v in INITS), "lr=0.01", "lr=0.1", "lr=1e+06"]
