"""The report's table: one row per run of the sweep, as rows of strings (for the terminal and
the HTML page alike)."""

from __future__ import annotations

import math

from nnexp.names import short_value
from nnexp.objective import Objective
from nnexp.report.collect import RunRecord, Sweep
from nnexp.report.doctor import findings_cell

# The quality metric beside the loss: the first one the runs have.
QUALITY = ("val/acc", "val/rmse")
FINDINGS = "findings"  # the doctor's, beside the objective (nnexp.report.doctor.findings_cell)


def quality_metric(sweep: Sweep) -> tuple[str, object] | None:
    """The quality metric and the function that picks its best value."""
    for key in QUALITY:
        if any(key in run.metrics for run in sweep.runs):
            return key, Objective.of(key).best_of
    return None


def table(sweep: Sweep, *, findings: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: job, run, each swept key, state, epochs, the objective (final and best
    over epochs), with `findings` the doctor's findings, and the quality metric (final and
    best). The best run is starred."""
    quality = quality_metric(sweep)
    headers = ["job", "run", *sweep.swept, "status", "epochs"]
    headers += [f"{sweep.objective} final", f"{sweep.objective} best"]
    headers += [FINDINGS] if findings else []
    if quality:
        headers += [f"{quality[0]} final", f"{quality[0]} best"]
    best = sweep.best()
    rows = []
    for run in sweep.runs:
        star = " *" if best is not None and run.run_id == best.run_id else ""
        row = ["" if run.job is None else str(run.job), run.name + star]
        row += [short_value(run.params.get(key, "")) for key in sweep.swept]
        row += [run.state, str(sweep.epochs(run))]
        best_of = sweep.objective_spec.best_of
        row += [_number(run.objective), _number(_best(sweep, run, sweep.objective, best_of))]
        row += [findings_cell(sweep, run)] if findings else []
        if quality:
            key, better = quality
            row += [
                _number(run.metrics.get(key, math.nan)),
                _number(_best(sweep, run, key, better)),
            ]
        rows.append(row)
    return headers, rows


def format_table(sweep: Sweep) -> str:
    """The table as aligned text, with the doctor's findings, a title line and a legend."""
    headers, rows = table(sweep, findings=True)
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    title = f"sweep {sweep.sweep_id} (parent run {sweep.parent_run_id}): {sweep.summary()}"
    out = [title, line(headers), line(["-" * w for w in widths]), *map(line, rows)]
    if sweep.best() is not None:
        out.append(f"* best {sweep.objective}")
    return "\n".join(out)


def _best(sweep: Sweep, run: RunRecord, key: str, better) -> float:
    values = [v for _, v in sweep.history(run, key) if math.isfinite(v)]
    return better(values) if values else math.nan


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
