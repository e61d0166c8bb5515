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
from conftest import Cli, MlflowServer, cli_env, memory_sweep, mlflow_server

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
    for name in ("val_loss.png", "heatmap.png", "grad_norms.png", "layers.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    assert (out / "weights_output.png").read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img alt="[a-z_]+" src="data:image/png;base64,', page)) == 5
    assert not re.search(r'src="(https?:|//|/)', page)  # nothing to fetch: self-contained
    assert page.count('<a href="http://127.0.0.1:5000/#/experiments/') == 4 + 1  # and the parent
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
    # the project's store: here, the working directory (no mlflow.db or .git above it)
    assert f"no MLflow store at sqlite:///{tmp_path}/mlflow.db" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


# --- a zero-initialized run beside a healthy one: zeros drawn, findings, run pages -------------

ZERO_EPOCHS = 25


@pytest.fixture(scope="module")
def zeros_and_he(tmp_path_factory) -> Cli:
    """A real 2-job sweep: model.init=zeros (every weight gradient exactly 0, the doctor's
    symmetry finding) and he (healthy), 25 epochs on 100 rows."""
    cli = Cli(tmp_path_factory.mktemp("zeros"))
    cli.ok(
        "-m",
        "model.init=zeros,he",
        f"trainer.epochs={ZERO_EPOCHS}",
        "dataset.n_samples=100",
        "trainer.deterministic=true",
    )
    return cli


def _rows(stdout: str) -> dict[str, str]:
    """The table's row of each init (the job lines start with the job number)."""
    rows = [line for line in stdout.splitlines() if re.match(r"[01] ", line)]
    return {("zeros" if "init=zeros" in row else "he"): row for row in rows}


def _findings_column(stdout: str) -> dict[str, str]:
    """Each init's findings cell, cut from the table by its header's position."""
    header = next(line for line in stdout.splitlines() if line.startswith("job "))
    start = header.index("findings")
    end = header.index("val/acc final")
    return {init: row[start:end].strip() for init, row in _rows(stdout).items()}


def test_report_has_a_findings_column_layers_png_and_links_to_each_runs_page(zeros_and_he):
    cli = zeros_and_he
    proc = compare(cli.workdir, "--out", "report")
    assert proc.returncode == 0, proc.stderr
    findings = _findings_column(proc.stdout)
    assert findings["zeros"].startswith("FAIL ") and "symmetry" in findings["zeros"]
    assert findings["he"] == "none"
    # The cells are the tags the runs ended with, in the table's words.
    for run in cli.runs():
        tags = run.data.tags
        if "sweep.job" in tags:
            init = "zeros" if "init=zeros" in run.info.run_name else "he"
            codes, failing = tags["doctor.findings"].split(","), tags["doctor.failing"]
            if init == "he":
                assert codes == ["none"] and failing == "none"
            else:
                assert "symmetry" in codes and set(failing.split(",")) <= set(codes)
                cell = ", ".join(c for c in codes if c in failing.split(","))
                assert findings[init].split("; ")[0] == f"FAIL {cell}"
    out = cli.workdir / "report"
    assert (out / "layers.png").read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    assert '<img alt="layers"' in page
    command = f"mlflow ui --backend-store-uri {cli.uri}"  # the store's absolute path
    assert f"{command}" in page and f"once the MLflow UI runs: {command}" in proc.stdout
    for run in cli.runs():
        link = (
            f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        )
        assert f'<a href="{link}">' in page, run.info.run_name
    assert re.search(r'<td class="findings">FAIL [^<]*symmetry', page)
    assert '<td class="findings">none</td>' in page


def test_report_of_a_zero_init_run_draws_its_zero_gradients_at_every_epoch(
    zeros_and_he, tmp_path, drawn, monkeypatch
):
    """The report's grad_norms.png and layers.png, drawn from the store (in-process, so the
    figures' data can be read): the zero run's panel has a line per layer over all its epochs,
    on the log axis's "exactly 0" floor, below the healthy run's smallest gradient."""
    from nnexp.report.compare import main
    from nnexp.tracking.plot_style import ZERO_LABEL

    monkeypatch.chdir(tmp_path)
    assert main(["--uri", zeros_and_he.uri, "--out", "r"]) == 0
    by_title = {fig.get_suptitle(): fig for fig in drawn}
    grads = next(fig for title, fig in by_title.items() if title.startswith("weight-gradient"))
    panels = {("zeros" if "zeros" in ax.get_title() else "he"): ax for ax in grads.get_axes()}

    def layer_lines(ax) -> list:
        return [line for line in ax.get_lines() if line.get_label() in ("dense_0", "dense_1")]

    healthy = [v for line in layer_lines(panels["he"]) for v in line.get_ydata()]
    lines = layer_lines(panels["zeros"])
    assert len(lines) == 2  # the hidden and the output layer's weights
    (floor,) = {v for line in lines for v in line.get_ydata()}
    assert floor < min(healthy)
    for line in lines:
        assert list(line.get_xdata()) == list(range(1, ZERO_EPOCHS + 1))
    assert any(t.get_text().strip() == ZERO_LABEL for t in panels["zeros"].texts)
    # layers.png: the zero run's first-epoch gradients lie on the floor of the first panel.
    profile = next(fig for title, fig in by_title.items() if title.startswith("per layer"))
    gradient_panel = profile.get_axes()[0]
    low, high = sorted(
        (line for line in gradient_panel.get_lines() if line.get_linestyle() != ":"),
        key=lambda line: max(line.get_ydata()),
    )  # one line per run
    assert list(low.get_xdata()) == [0, 1] and len(set(low.get_ydata())) == 1
    assert max(low.get_ydata()) < min(high.get_ydata())
    assert any(t.get_text().strip() == ZERO_LABEL for t in gradient_panel.texts)


def test_findings_come_from_the_runs_tags_and_from_their_metrics_without_them(
    zeros_and_he, tmp_path
):
    """The cell shows the tags the run ended with (no metric is read for them); a run without
    them (recorded before they existed) is diagnosed from its metrics by the same rules."""
    from mlflow import MlflowClient

    store = tmp_path / "copy.db"
    shutil.copy(zeros_and_he.workdir / "mlflow.db", store)
    uri = f"sqlite:///{store}"
    client = MlflowClient(uri)
    runs = {
        ("zeros" if "init=zeros" in r.info.run_name else "he"): r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("nnexp").experiment_id], "tags.`sweep.job` != ''"
        )
    }
    # A made-up verdict on the healthy run: the table shows what the tags say.
    client.set_tag(runs["he"], "doctor.findings", "lr_too_low,overfitting")
    client.set_tag(runs["he"], "doctor.failing", "overfitting")
    # The zero run as an older one: no tags, so its metrics are diagnosed.
    client.delete_tag(runs["zeros"], "doctor.findings")
    client.delete_tag(runs["zeros"], "doctor.failing")
    proc = compare(tmp_path, "--uri", uri, "--out", "r")
    assert proc.returncode == 0, proc.stderr
    findings = _findings_column(proc.stdout)
    assert findings["he"] == "FAIL overfitting; WARN lr_too_low"
    assert findings["zeros"].startswith("FAIL ") and "symmetry" in findings["zeros"]


def test_the_doctor_and_the_report_of_a_sweep_read_each_metric_history_once(zeros_and_he, tmp_path):
    """`nnexp.doctor --sweep` reads every metric of every run, once; the report drawn after it
    (table with findings, every figure) reads none of them again: one cache, the sweep's."""
    from collections import Counter

    from mlflow import MlflowClient

    from nnexp.report import find_sweep, format_table, load_sweep, write_report
    from nnexp.report.doctor import diagnose_sweep

    calls: Counter = Counter()

    class Counting(MlflowClient):
        def get_metric_history(self, run_id, key):
            calls[run_id, key] += 1
            return super().get_metric_history(run_id, key)

        def get_run(self, run_id):
            calls["get_run", run_id] += 1
            return super().get_run(run_id)

    client = Counting(zeros_and_he.uri)
    sweep = load_sweep(client, find_sweep(client))
    diagnosis = diagnose_sweep(sweep)
    codes = {
        ("zeros" if "init=zeros" in r.name else "he"): {
            f.code for f in diagnosis.findings[r.run_id]
        }
        for r in sweep.runs
    }
    assert "symmetry" in codes["zeros"] and codes["he"] == set()
    for run in sweep.runs:
        assert {key for (rid, key) in calls if rid == run.run_id} == set(run.metrics)
    format_table(sweep)
    write_report(sweep, tmp_path / "r")
    assert max(calls.values()) == 1, calls.most_common(3)


@pytest.mark.slow
def test_run_links_open_on_the_tracking_server_and_on_the_ui_the_report_says_to_start(
    zeros_and_he, tmp_path
):
    """For a local store, the report prints the command that starts the MLflow UI: started
    (on a free port instead of 5000), it serves every linked run; reported through that
    server instead, the links are its own run pages, at the same paths."""
    import json
    import shlex
    import urllib.request

    cli = zeros_and_he
    local = compare(tmp_path, "--uri", cli.uri, "--out", "local")
    assert local.returncode == 0, local.stderr
    line = next(x for x in local.stdout.splitlines() if x.startswith("run pages:"))
    command = shlex.split(line.split("once the MLflow UI runs: ", 1)[1])
    assert command[:3] == ["mlflow", "ui", "--backend-store-uri"] and len(command) == 4
    server = MlflowServer(command[3], tmp_path / "artifacts", cwd=tmp_path).start()
    try:
        served = compare(tmp_path, "--uri", server.uri, "--out", "served")
        assert served.returncode == 0, served.stderr
        assert f"run pages: {server.uri} (the tracking server)" in served.stdout

        def links(out: str) -> list[str]:
            page = (tmp_path / out / "report.html").read_text()
            return re.findall(r'<a href="([^"]+)">', page)

        assert len(links("served")) == 3  # the parent and both runs
        assert [x.replace("http://127.0.0.1:5000", server.uri) for x in links("local")] == links(
            "served"
        )
        for link in links("served"):
            base, _, path = link.partition("/#/")
            assert base == server.uri
            kind, experiment_id, runs, run_id = path.split("/")
            assert (kind, runs) == ("experiments", "runs")
            url = f"{server.uri}/api/2.0/mlflow/runs/get?run_id={run_id}"
            with urllib.request.urlopen(url, timeout=30) as response:
                assert json.load(response)["run"]["info"]["experiment_id"] == experiment_id
        with urllib.request.urlopen(f"{server.uri}/", timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("/usr/bin/chromium"), reason="no /usr/bin/chromium")
def test_a_reports_run_link_opens_the_run_in_the_mlflow_ui_in_a_browser(zeros_and_he, tmp_path):
    """report.html opened from disk in a real (headless) Chromium: clicking a run's name opens
    that run's page in the MLflow UI of the tracking server, which shows its name and its
    doctor's findings tag."""
    from playwright.sync_api import sync_playwright

    cli = zeros_and_he
    jobs = [r for r in cli.runs() if "sweep.job" in r.data.tags]
    (zeros,) = [r for r in jobs if "init=zeros" in r.info.run_name]
    with (
        mlflow_server(cli.uri, tmp_path / "artifacts") as url,
        sync_playwright() as playwright,
    ):
        proc = compare(tmp_path, "--uri", url, "--out", "r")
        assert proc.returncode == 0, proc.stderr
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        page = browser.new_page()
        page.set_default_timeout(90_000)  # a cold UI on a busy 2-core machine
        page.goto((tmp_path / "r" / "report.html").as_uri())
        page.get_by_role("link", name=zeros.info.run_name, exact=True).click()
        page.wait_for_url(re.compile(f"/runs/{zeros.info.run_id}"))
        assert page.url.startswith(url)
        page.get_by_text(zeros.info.run_name).first.wait_for()
        page.get_by_text(zeros.data.tags["doctor.findings"]).first.wait_for()
        page.screenshot(path=tmp_path / "run-page.png")
        browser.close()


# --- the report's figures, inspected in-process ----------------------------------------------

DIVERGED_RED = "#d62728"


LRS, INITS, LAYERS = ("0.01", "0.1", "1000000.0"), ("he", "xavier"), 11
GRAD = [10.0 ** (i - 8) for i in range(LAYERS)]  # 1e-8 (first layer) ... 100 (last)


def _sweep(lrs=LRS, epochs: int = 4):
    """A synthetic lr × init sweep, its runs' histories in memory: lr 1e6 diverges at epoch 3
    (NaN from then on), the others' val/loss falls; 11 layers' weight-gradient norms (first
    layer smallest) and first-epoch activation statistics."""
    import math

    from nnexp.report.collect import RunRecord

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
    return memory_sweep(runs, histories, ["optimizer.lr", "model.init"])


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


@pytest.mark.parametrize(
    ("uri", "address", "command"),
    [
        ("http://tracking-host:5000/", "http://tracking-host:5000", None),
        ("https://mlflow.example.org", "https://mlflow.example.org", None),
        ("sqlite:///mlflow.db", "http://127.0.0.1:5000", "sqlite:///{cwd}/mlflow.db"),
        ("sqlite:////srv/x/mlflow.db", "http://127.0.0.1:5000", "sqlite:////srv/x/mlflow.db"),
        ("sqlite:///my runs/m.db", "http://127.0.0.1:5000", "'sqlite:///{cwd}/my runs/m.db'"),
        ("./mlruns", "http://127.0.0.1:5000", "{cwd}/mlruns"),
        (
            "postgresql://me:secret@db/mlflow",
            "http://127.0.0.1:5000",
            "'postgresql://me:***@db/mlflow'",
        ),
    ],
)
def test_run_pages_of_a_store(tmp_path, monkeypatch, uri, address, command):
    from nnexp.report.links import run_pages

    monkeypatch.chdir(tmp_path)
    pages = run_pages(uri)
    assert pages.address == address
    if command is None:
        assert pages.command is None
    else:
        resolved = str(tmp_path.resolve())
        assert pages.command == "mlflow ui --backend-store-uri " + command.format(cwd=resolved)
    assert pages.run("7", "abc") == f"{address}/#/experiments/7/runs/abc"
    assert run_pages("databricks") is None
