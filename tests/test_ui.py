"""The MLflow UI shows a sweep as a person expects: the jobs grouped under their parent run, the
swept params and final metrics as columns, and a working compare view; and nnexp's runs as an
MLflow user expects (issue 18): the User, Source, Version and Dataset columns filled, the tag
filters ``tags.team = "x"`` and ``tags.dev = "true"`` finding the runs started with
``+tags.team=x`` and ``tags=[dev,baseline]``, the sweep's parent showing the best job's params
in their columns. A real `mlflow server` on 127.0.0.1 — on the store named by the runs' own
last line — and a real headless Chromium (Debian's, installed by .ci/run) driven by Playwright.
The UI polls, so the test waits for text, never for network idle.

``NNEXP_UPDATE_SCREENSHOT=1`` also writes the README's screenshot, docs/mlflow-ui.png."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import mlflow_server

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "mlflow-ui.png"
WAIT_MS = 90_000  # a cold UI on a busy 2-core machine


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no {CHROMIUM}: .ci/run installs it")
def test_sweep_in_the_mlflow_ui(cli, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    head = _git_project(tmp_path)  # the runs' Version
    cli.ok("-m", "model.init=xavier,he", "optimizer.lr=0.1,1e6", "trainer.epochs=3")
    runs = cli.runs()
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.run_name)
    assert len(children) == 4
    experiment_id = parent.info.experiment_id
    team = cli.ok("trainer.epochs=2", "+tags.team=x")
    dev = cli.ok("trainer.epochs=2", "tags=[dev,baseline]")
    # The store the runs' last line names (`mlflow ui --backend-store-uri URI`) is the one served.
    store = re.search(r"--backend-store-uri (\S+),", team.stdout.splitlines()[-1])[1]
    by_id = {r.info.run_id: r for r in cli.runs()}
    team_run, dev_run = (by_id[_run_id(proc.stdout)] for proc in (team, dev))

    with (
        mlflow_server(store, tmp_path / "artifacts") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1180, "height": 470})
        page.set_default_timeout(WAIT_MS)

        # The runs page: only the parent at first; expanded, its four jobs under it.
        page.goto(f"{url}/#/experiments/{experiment_id}/runs")
        page.get_by_text(parent.info.run_name[:24]).first.wait_for()
        for name in ("Close", "Toggle sidebar"):  # the assistant panel and the sidebar: room
            button = page.get_by_role("button", name=name)
            if button.count():
                button.first.click()
        row = page.locator("[role=row]").filter(has_text=parent.info.run_name[:24]).first
        row.locator("[col-id*='Run Name'] button").first.click()
        for run in children:
            page.get_by_text(run.info.run_name, exact=True).first.wait_for()
        # The swept params and the final metrics as columns.
        # (room for the swept params: the default Dataset, Source and Models columns hidden)
        set_columns(
            page, show=("val/loss", "val/acc", *swept(parent)), hide=("Dataset", "Source", "Models")
        )
        header = page.locator("[role=columnheader]")
        for column in ("val/loss", "val/acc", "model.init", "optimizer.lr"):
            header.get_by_text(column, exact=True).first.wait_for()
        good = next(r for r in children if r.info.status == "FINISHED")
        page.get_by_text(str(good.data.metrics["val/loss"])[:5]).first.wait_for()  # a value
        page.screenshot(path=tmp_path / "runs.png")
        if os.environ.get("NNEXP_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=SCREENSHOT)

        # The compare view of the four jobs: their names, params and metric names.
        ids = json.dumps([r.info.run_id for r in children])
        page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment_id])}")
        page.get_by_text("Comparing 4 Runs").first.wait_for()
        for run in children:
            page.get_by_text(run.info.run_name, exact=True).first.wait_for()
        page.mouse.move(500, 300)  # over the page: the wheel scrolls its (virtualized) tables
        for metric in ("grad_norm/dense_0/W/mean", "train/loss", "val/acc", "test/acc"):
            scroll_to_text(page, metric)  # (not val/loss: it is also trainer.objective's value)
        body = page.inner_text("body")
        assert "optimizer.lr" in body and "model.init" in body
        page.screenshot(path=tmp_path / "compare.png")

        # nnexp's runs as MLflow users filter them: by their tags, in the runs table.
        page.set_viewport_size({"width": 1900, "height": 900})
        page.goto(f"{url}/#/experiments/{experiment_id}/runs")
        search = page.get_by_test_id("runs-search-autocomplete").locator("input").first
        for query, found, hidden in (
            ('tags.team = "x"', team_run, dev_run),
            ('tags.dev = "true"', dev_run, team_run),
        ):
            search.fill(query)
            search.press("Enter")
            page.get_by_text(found.info.run_name, exact=True).first.wait_for()
            rows = page.locator("[role=row]")
            try:
                expect(rows.filter(has_text=hidden.info.run_name)).to_have_count(0)
            except AssertionError:  # once the Enter came before the box took it: again
                search.press("Enter")
                expect(rows.filter(has_text=hidden.info.run_name)).to_have_count(0, timeout=WAIT_MS)
            expect(rows.filter(has_text=parent.info.run_name[:24])).to_have_count(0)
        # The User, Source, Version and Dataset columns of the run, filled.
        set_columns(page, show=("User", "Source", "Version", "Dataset"))
        header = page.locator("[role=columnheader]")
        for column in ("User", "Source", "Version", "Dataset"):
            header.get_by_text(column, exact=True).first.wait_for()
        shown = {"User": getpass.getuser(), "Source": "__main__.py", "Version": head[:6]}
        for column, text in (shown | {"Dataset": "moons"}).items():
            expect(cell(page, dev_run.info.run_name, column)).to_contain_text(text)
        page.screenshot(path=tmp_path / "metadata.png")

        # The sweep's parent shows the best job's swept values in the params' columns.
        search.fill('tags.`sweep.role` = "parent"')
        search.press("Enter")
        set_columns(page, hide=("User", "Source", "Version", "Dataset", "Models"))  # room
        best = cli.client().get_run(parent.info.run_id).data.params
        assert set(best) == {"model.init", "optimizer.lr"}
        for key in ("model.init", "optimizer.lr"):
            header.get_by_text(key, exact=True).first.wait_for()
            expect(cell(page, parent.info.run_name[:24], key)).to_have_text(best[key])
        page.screenshot(path=tmp_path / "parent.png")
        browser.close()


def set_columns(page, show=(), hide=()) -> None:
    """Show and hide columns of the runs table from its Columns menu (a searchable tree of
    checkboxes; a click toggles; Dataset, Source and Models are shown by default)."""
    page.get_by_test_id("column-selection-dropdown").filter(has_text="Columns").click()
    menu = page.get_by_placeholder("Search columns")
    for column, wanted in [*((c, True) for c in show), *((c, False) for c in hide)]:
        menu.fill(column)
        title = page.locator("[class*='tree-title']").filter(
            has_text=re.compile(f"^{re.escape(column)}$")
        )
        node = page.locator("[class*='tree-treenode']").filter(has=title).first
        node.wait_for()
        if ("checkbox-checked" in (node.get_attribute("class") or "")) != wanted:
            node.locator("[class*='tree-title']").first.click()
    page.keyboard.press("Escape")


def cell(page, run_name: str, column: str):
    """Run `run_name`'s cell in `column`. The grid draws a row in parts (the pinned name, the
    scrolled columns), each a [role=row] with the same row-id; a cell's col-id names its column
    (``attributes.`User```, ``params.`model.init```)."""
    named = page.locator("[role=row]").filter(has_text=run_name).first
    named.wait_for()
    row = f"[role=row][row-id='{named.get_attribute('row-id')}']"
    return page.locator(f"{row} [role=gridcell][col-id*='`{column}`']").first


def _run_id(stdout: str) -> str:
    """The run id a run's last line names."""
    return re.search(r"\(([0-9a-f]{32})\) in experiment", stdout.splitlines()[-1])[1]


def _git_project(path: Path) -> str:
    """`path` as a git repository with one commit; returns HEAD."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def scroll_to_text(page, text: str, tries: int = 80) -> None:
    """Scroll down until `text` is rendered: long tables render only the rows in view."""
    target = page.get_by_text(text, exact=True).first
    for _ in range(tries):
        if target.is_visible():
            return
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(200)
    target.wait_for(timeout=1000)  # fails with Playwright's own message


def swept(parent) -> list[str]:
    return json.loads(parent.data.tags["sweep.swept"])
