"""Is the tracking store there? Asked once before any data is loaded, with a short timeout of
our own, so a dead server is a clear error in seconds instead of MLflow's minutes of retries."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 5.0


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or used; the message says what to do."""


def resolve_uri(uri: str | None) -> str:
    """The URI a `MlflowClient(uri)` would use (``MLFLOW_TRACKING_URI`` or the default)."""
    if uri or os.environ.get("MLFLOW_TRACKING_URI"):  # what MLflow reads, without importing it
        return uri or os.environ["MLFLOW_TRACKING_URI"]
    from mlflow.tracking import get_tracking_uri

    return get_tracking_uri()


def check_reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise `TrackingUnavailable` if `uri` is an HTTP server that does not answer its health
    endpoint within `timeout_s`, a sqlite store that cannot be opened (see `_check_sqlite`), or
    a scheme MLflow has no store for."""
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
        _check_sqlite(uri)
    elif parsed.scheme.split("+")[0] not in SCHEMES:
        raise TrackingUnavailable(
            f"tracking.uri={uri}: unknown scheme {parsed.scheme!r}; allowed: sqlite:///FILE.db, "
            "http(s)://HOST:PORT, postgresql://, mysql://, mssql://, file:DIR, databricks"
        )


# What MLflow's tracking store registry accepts (a database scheme may name its driver:
# postgresql+psycopg2); anything else fails inside MLflow with a message about model registries.
SCHEMES = {"", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks"}
SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite(uri: str) -> None:
    """A sqlite store MLflow could open: its directory exists and is writable (else MLflow
    retries for minutes), and an existing file is a database (not a directory or a text file)."""
    # sqlite:///rel.db is relative to the working directory, sqlite:////abs.db absolute.
    path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if path is None or str(path) == ":memory:":
        return
    if not path.parent.is_dir():
        problem = "the directory of the sqlite file does not exist"
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        problem = f"the directory {path.parent} is not writable (sqlite writes a journal there)"
    elif path.exists() and not path.is_file():
        problem = "is not a file"
    elif path.is_file() and path.stat().st_size and _header(path) != SQLITE_HEADER:
        problem = "the file is not a sqlite database"
    else:
        return
    raise TrackingUnavailable(f"tracking.uri={uri}: {problem}")


def _header(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise TrackingUnavailable(f"sqlite store {path}: cannot be read ({exc.strerror})") from None
