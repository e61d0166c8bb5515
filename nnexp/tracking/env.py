"""Environment defaults for MLflow in experiment jobs. Each is a `setdefault`: a value the user
exported wins. MLflow reads some of them at import, so `nnexp.tracking` applies them on import,
before anything here imports mlflow."""

from __future__ import annotations

import contextlib
import os
import sys

MLFLOW_ENV_DEFAULTS: dict[str, str] = {
    # No usage reporting from training jobs (and no network traffic from sweeps).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # tqdm bars for artifact up/downloads flood Hydra job logs, which are not terminals.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow retries a failed HTTP request 7 times with backoff: 246 s measured here before a
    # dead server raised. A job should fail fast at start (nnexp.tracking.server probes first)
    # and, mid-run, keep training and spool locally (nnexp.tracking.offline) rather than block:
    # 2 retries 1 s and 2 s apart ride out a server restart, then the tracker spools.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # Per request; an artifact upload of a large checkpoint must still fit in it.
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure_mlflow_env() -> None:
    """Apply `MLFLOW_ENV_DEFAULTS` to ``os.environ`` (user values win)."""
    for key, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    telemetry = sys.modules.get("mlflow.telemetry")
    if telemetry is not None and os.environ["MLFLOW_DISABLE_TELEMETRY"].lower() in ("true", "1"):
        # mlflow was imported first and started telemetry then: let it re-read the setting.
        # An internal API: should it change, the variable still covers child processes.
        with contextlib.suppress(Exception):
            if telemetry.get_telemetry_client() is not None:
                telemetry.set_telemetry_client()
