"""Where a recorded run opens in the MLflow UI: each run's page, and the command that starts the
UI when no server serves the store.

A store behind an ``http(s)://`` tracking server: its own address serves the run pages. A local
store (a sqlite file, a directory of runs, a database): ``mlflow ui --backend-store-uri <store>``
serves them at `UI_ADDRESS` (the UI's default host and port), so a report opened from disk links
to the pages a user sees once that command runs. The store's path is made absolute, so the
command works from any directory; a database password is masked.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` listens unless told otherwise
_SERVED = ("http", "https")


@dataclass(frozen=True)
class RunPages:
    """The MLflow UI that shows a store's runs: its address, and how to start it (None: a
    server already runs there)."""

    address: str
    command: str | None = None

    def experiment(self, experiment_id: str) -> str:
        return f"{self.address}/#/experiments/{experiment_id}"

    def run(self, experiment_id: str, run_id: str) -> str:
        """The run's page (the path the UI itself prints for a run)."""
        return f"{self.experiment(experiment_id)}/runs/{run_id}"

    def how_to_open(self) -> str:
        """One sentence: where the pages are, and the command to start the UI if needed."""
        if self.command is None:
            return f"run pages: {self.address} (the tracking server)"
        return f"run pages: {self.address} once the MLflow UI runs: {self.command}"


def run_pages(tracking_uri: str) -> RunPages | None:
    """The UI of `tracking_uri`'s runs; None for a store nnexp cannot link to (Databricks)."""
    scheme = urlsplit(tracking_uri).scheme
    if scheme in _SERVED:
        return RunPages(tracking_uri.rstrip("/"))
    if tracking_uri == "databricks" or scheme.startswith("databricks"):
        return None
    return RunPages(
        UI_ADDRESS, f"mlflow ui --backend-store-uri {shlex.quote(_portable(tracking_uri))}"
    )


def _portable(uri: str) -> str:
    """`uri` usable from any directory, without a password: ``sqlite:///mlflow.db`` →
    ``sqlite:////home/me/exp/mlflow.db``, ``./mlruns`` → ``/home/me/exp/mlruns``."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("/"):
            return f"sqlite:///{Path(path).resolve()}"
        return uri
    if not parts.scheme:  # a local directory of runs
        return str(Path(uri).resolve())
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return uri
