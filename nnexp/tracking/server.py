"""Is the tracking store there? Asked once before any data is loaded, with a short timeout of
our own, so a dead server is a clear error in seconds instead of MLflow's minutes of retries."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 5.0


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or used; the message says what to do."""


def resolve_uri(uri: str | None) -> str:
    """The URI a `MlflowClient(uri)` would use (``MLFLOW_TRACKING_URI`` or the default)."""
    if uri:
        return uri
    from mlflow.tracking import get_tracking_uri

    return get_tracking_uri()


def check_reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise `TrackingUnavailable` if `uri` is an HTTP server that does not answer its health
    endpoint within `timeout_s`, or a sqlite file in a directory that does not exist."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status == 200:
                    return
                problem = f"answered HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:  # refused, unknown host, timeout
            problem = f"is unreachable ({getattr(exc, 'reason', exc)})"
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} {problem} (checked {health}, {timeout_s:g} s "
            "timeout). Start it (mlflow server ...), point tracking.uri or MLFLOW_TRACKING_URI "
            "elsewhere, or train without tracking: tracking.enabled=false"
        )
    if parsed.scheme == "sqlite":
        # sqlite:///rel.db is relative to the working directory, sqlite:////abs.db absolute.
        path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise TrackingUnavailable(
                f"tracking.uri={uri}: the directory of the sqlite file does not exist"
            )
