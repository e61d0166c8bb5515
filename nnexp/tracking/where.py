"""Where a run went, and where it opens in the MLflow UI.

`RunPlace`: the one line a run ends with — its MLflow run (name and id), experiment, store,
output directory, and how to open it. `run_pages`: the UI that shows a store's runs (the
report links its rows to them too, `nnexp.report.links`). A store behind an ``http(s)://``
tracking server: its own address serves the run pages. A local store (a sqlite file, a
directory of runs, a database): ``mlflow ui --backend-store-uri <store>`` serves them at
`UI_ADDRESS` (the UI's default host and port). The store's path is made absolute, so the
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
        UI_ADDRESS, f"mlflow ui --backend-store-uri {shlex.quote(portable_uri(tracking_uri))}"
    )


def portable_uri(uri: str) -> str:
    """`uri` usable from any directory, without a password: ``sqlite:///mlflow.db`` →
    ``sqlite:////home/me/exp/mlflow.db``, ``./mlruns`` → ``/home/me/exp/mlruns``,
    ``file:mlruns`` → ``file:///home/me/exp/mlruns``."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("/"):
            return f"sqlite:///{Path(path).resolve()}"
        return uri
    if not parts.scheme:  # a local directory of runs
        return str(Path(uri).resolve())
    if parts.scheme == "file":
        return Path(parts.path).resolve().as_uri()
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


@dataclass(frozen=True)
class RunPlace:
    """A run as its last line names it."""

    run_id: str
    run_name: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    output_dir: Path

    def open_command(self) -> str:
        """What opens the run: its page on a tracking server, or the command that starts the
        UI on the local store, then its page there."""
        pages = run_pages(self.tracking_uri)
        if pages is None:
            return f"the store's own UI ({self.tracking_uri})"
        page = pages.run(self.experiment_id, self.run_id)
        return page if pages.command is None else f"{pages.command}, then {page}"

    def line(self) -> str:
        return (
            f"run {self.run_name} ({self.run_id}) in experiment {self.experiment!r} of "
            f"{portable_uri(self.tracking_uri)}; outputs in {self.output_dir}; "
            f"open: {self.open_command()}"
        )

    def job_line(self, job_name: str) -> str:
        """A sweep job's compact form (the sweep names the store and how to open it)."""
        return f"{job_name}: run {self.run_id}; outputs in {self.output_dir}"


def untracked_line(output_dir: Path) -> str:
    return f"not tracked (tracking.enabled=false): nothing in MLflow; outputs in {output_dir}"
