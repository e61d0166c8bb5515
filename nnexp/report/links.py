"""Where a recorded run opens in the MLflow UI — each run's page, and the command that starts
the UI when no server serves the store — for the report's links. The rules live with the run's
own last line, in `nnexp.tracking.where` (stated once); this module names them for the report.
"""

from __future__ import annotations

from nnexp.tracking.where import UI_ADDRESS, RunPages, run_pages

__all__ = ["UI_ADDRESS", "RunPages", "run_pages"]
