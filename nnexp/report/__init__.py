"""nnexp.report — the comparison report of a sweep, from the tracking store alone: `find_sweep`
and `load_sweep` read it back, `format_table` prints it, `write_report` draws the plots and the
self-contained HTML page. Its command line is `compare` (``python -m nnexp.compare``); the
experiment pages are reports too (`experiments`, ``python -m nnexp.experiments NAME``). The sweep
callback (`nnexp.hydra_callbacks`) logs the report to the parent run when a multirun ends."""

from nnexp.report.collect import RunRecord, Sweep, SweepNotFound, find_sweep, load_sweep
from nnexp.report.page import render_html, write_report
from nnexp.report.table import format_table, table

__all__ = [
    "RunRecord",
    "Sweep",
    "SweepNotFound",
    "find_sweep",
    "format_table",
    "load_sweep",
    "render_html",
    "table",
    "write_report",
]
