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
