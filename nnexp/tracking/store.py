"""The tracking store as a whole: creating its schema and an experiment once, under a lock.

A new sqlite file is migrated by the first process that opens it; two processes that open it
at once race on the migrations (and lose runs to ``Default``), so creation happens under an
exclusive file lock beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite store's file (other stores serialize themselves), so
    two sweeps started at once do not both migrate a new database."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    db = Path(uri[len(prefix) :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_store(uri: str | None, experiment: str) -> tuple[MlflowClient, str]:
    """Create the store's schema and the experiment once, before any job starts: parallel jobs
    on a new sqlite file raced on schema migrations and lost runs to ``Default``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    with store_lock(client.tracking_uri):
        experiment_id = get_or_create_experiment(client, experiment)
    return client, experiment_id


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # a parallel job of the same sweep created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {name!r} is deleted: restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
            "or choose another name"
        )
    return experiment.experiment_id
