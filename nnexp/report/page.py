"""The report's files: the PNG plots and one self-contained HTML page (the plots inlined as
base64, no outside CSS or scripts), so the page can be mailed or opened from an artifact store.
Each run's name links to its page in the MLflow UI (`nnexp.report.links`): the tracking
server's, or the UI the page says how to start for a local store."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from nnexp.report import figures, layers
from nnexp.report.collect import RunRecord, Sweep
from nnexp.report.links import RunPages, run_pages
from nnexp.report.table import FINDINGS, table

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text { text-align: left; }
td.findings { text-align: left; font-size: 0.9em; }
tr.diverged td, tr.failed td { color: #b00; }
tr.best td { font-weight: bold; background: #f4fbf0; }
img { max-width: 100%; display: block; margin: 1em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def write_report(
    sweep: Sweep, directory: str | Path, grad_runs: list[RunRecord] | None = None
) -> list[Path]:
    """Write ``val_loss.png``, ``heatmap.png``, ``grad_norms.png``, ``layers.png``,
    ``weights_output.png`` (those there is data for) and ``report.html`` into `directory`;
    return their paths, the page last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    runs = grad_runs if grad_runs is not None else figures.chosen_runs(sweep)
    drawn = [
        figures.loss_curves(sweep, directory / "val_loss.png"),
        figures.heatmap(sweep, directory / "heatmap.png"),
        figures.grad_norm_curves(sweep, runs, directory / "grad_norms.png"),
        _layer_profile(sweep, runs, directory / "layers.png"),
        figures.weights_output_curves(sweep, runs, directory / "weights_output.png"),
    ]
    images = [path for path in drawn if path is not None]
    page = directory / "report.html"
    page.write_text(render_html(sweep, images), encoding="utf-8")
    return [*images, page]


def _layer_profile(sweep: Sweep, chosen: list[RunRecord], path: Path) -> Path | None:
    """``layers.png`` of any sweep: every run, colored by the first swept value and styled by
    the second, while the lines stay readable; else the runs chosen for the gradient plot."""
    if len(sweep.runs) > layers.MAX_PROFILE_RUNS:
        return layers.layer_profile(sweep, path, runs=chosen)
    color_key, style_key, _ = figures.line_keys(sweep)
    return layers.layer_profile(sweep, path, color_key, style_key)


def render_html(sweep: Sweep, images: list[Path]) -> str:
    headers, rows = table(sweep, findings=True)
    best = sweep.best()
    esc = html.escape
    pages = run_pages(sweep.client.tracking_uri)
    text_columns = {0, 1, *range(2, 2 + len(sweep.swept) + 1)}
    body = [f"<h1>nnexp sweep {esc(sweep.sweep_id)}</h1>", f"<p><code>{esc(sweep.name)}</code></p>"]
    parent = _link(pages, sweep.experiment_id, sweep.parent_run_id, sweep.parent_run_id)
    body.append(f"<p>Parent run <code>{parent}</code>: {esc(sweep.summary())}.")
    if best is not None:
        body.append(
            f" Best {esc(sweep.objective)} = {best.objective:.4g}:"
            f" run <code>{esc(best.name)}</code>"
            f" (<code>{esc(best.run_id)}</code>)."
        )
    body.append("</p>")
    body.append(_where(pages))
    body.append("<table><tr>")
    body += [f"<th>{esc(h)}</th>" for h in headers]
    body.append("</tr>")
    findings = headers.index(FINDINGS)
    for run, row in zip(sweep.runs, rows, strict=True):
        kind = "best" if best is not None and run.run_id == best.run_id else run.state
        cells = [
            f'<td class="text">{esc(c)}</td>' if i in text_columns else f"<td>{esc(c)}</td>"
            for i, c in enumerate(row)
        ]
        name = _link(pages, sweep.experiment_id, run.run_id, row[1])
        cells[1] = f'<td class="text">{name}</td>'
        cells[findings] = f'<td class="findings">{esc(row[findings])}</td>'
        title = f' title="{esc(run.error)}"' if run.error else ""
        body.append(f'<tr class="{kind}"{title}>{"".join(cells)}</tr>')
    body.append("</table>")
    for path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(f'<img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>nnexp sweep {esc(sweep.sweep_id)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _link(pages: RunPages | None, experiment_id: str, run_id: str, text: str) -> str:
    """`text` (escaped) as a link to the run's page in the MLflow UI."""
    if pages is None:
        return html.escape(text)
    return f'<a href="{html.escape(pages.run(experiment_id, run_id))}">{html.escape(text)}</a>'


def _where(pages: RunPages | None) -> str:
    """The paragraph that says where the links lead (and how to start the UI they need)."""
    if pages is None:
        return ""
    if pages.command is None:
        return (
            f"<p>Each run's name links to its page on the tracking server"
            f" <code>{html.escape(pages.address)}</code>.</p>"
        )
    return (
        f"<p>Each run's name links to its page in the MLflow UI at"
        f" <code>{html.escape(pages.address)}</code>, once it runs:"
        f" <code>{html.escape(pages.command)}</code></p>"
    )
