"""Where a run went, in the one line it ends with: its MLflow run (name and id), experiment,
store, output directory, and how to open it — ``mlflow ui --backend-store-uri URI`` for a local
store (the URI made absolute, so the command works from any directory), the run's page for a
tracking server."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# `mlflow ui`'s own default address: where the printed command serves the run.
UI_ADDRESS = "http://127.0.0.1:5000"
SERVER_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class RunPlace:
    run_id: str
    run_name: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    output_dir: Path

    @property
    def store(self) -> str:
        return absolute_store_uri(self.tracking_uri)

    def run_url(self, base: str | None = None) -> str:
        """The run's page in the MLflow UI at `base` (default: the server, or `mlflow ui`)."""
        if base is None:
            base = self.store if _is_server(self.store) else UI_ADDRESS
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def open_command(self) -> str:
        """What opens the run: its page on a tracking server, or `mlflow ui` on the local store
        and then its page there."""
        if _is_server(self.store):
            return self.run_url()
        return f"mlflow ui --backend-store-uri {shlex.quote(self.store)}, then {self.run_url()}"

    def line(self) -> str:
        return (
            f"run {self.run_name} ({self.run_id}) in experiment {self.experiment!r} of "
            f"{self.store}; outputs in {self.output_dir}; open: {self.open_command()}"
        )

    def job_line(self, job_name: str) -> str:
        """A sweep job's compact form (the sweep names the store and how to open it)."""
        return f"{job_name}: run {self.run_id}; outputs in {self.output_dir}"


def untracked_line(output_dir: Path) -> str:
    return f"not tracked (tracking.enabled=false): nothing in MLflow; outputs in {output_dir}"


def absolute_store_uri(uri: str) -> str:
    """`uri` as it names the same store from any directory: a relative sqlite file or local
    path made absolute (``sqlite:///mlflow.db`` → ``sqlite:////home/me/proj/mlflow.db``)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix) :]
        if path and path != ":memory:" and not path.startswith("/"):
            return prefix + str(Path(path).absolute())
        return uri
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme else uri
        return Path(path).absolute().as_uri() if path else uri
    return uri


def _is_server(uri: str) -> bool:
    return urlsplit(uri).scheme in SERVER_SCHEMES
