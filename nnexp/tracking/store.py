"""The tracking store as a whole: creating its schema and an experiment once, under a lock.

A new sqlite file is migrated by the first process that opens it; two processes that open it
at once race on the migrations (and lose runs to ``Default``, or leave the store unusable:
``table _alembic_tmp_... already exists``), so creation happens under an exclusive file lock
beside the database — for a sweep's parent and for every single run alike. A store that cannot
be opened is `TrackingUnavailable` (exit 4) within seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nnexp.tracking.link import first_line
from nnexp.tracking.server import TrackingUnavailable, check_reachable, resolve_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite store's file (other stores serialize themselves), so
    two sweeps started at once do not both migrate a new database."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
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
    """Open the store (``None``: MLflow's default) and create its schema and the experiment
    once, under the lock, before any job or data: parallel runs on a new sqlite file raced on
    schema migrations. Every failure is `TrackingUnavailable`, in seconds (a probe first, not
    MLflow's minutes of retries), naming the store."""
    uri = resolve_uri(uri)
    check_reachable(uri)  # before importing MLflow (a second or more)
    from mlflow import MlflowClient

    try:
        with store_lock(uri):
            client = MlflowClient(uri)
            experiment_id = get_or_create_experiment(client, experiment)
    except ValueError as exc:  # a deleted experiment: the message says what to do
        raise TrackingUnavailable(str(exc)) from None
    except Exception as exc:  # the store refused: an old schema, a locked or broken database
        raise TrackingUnavailable(
            f"tracking.uri={uri}: cannot open the MLflow store ({type(exc).__name__}: "
            f"{first_line(exc)}); point tracking.uri elsewhere, or tracking.enabled=false"
        ) from None
    return client, experiment_id


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return _create_experiment(client, name)
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


def _create_experiment(client: MlflowClient, name: str) -> str:
    """A new experiment; a sqlite store's keeps its artifacts beside the database file
    (``<dir>/mlruns/<id>``, where ``mlflow ui`` run in that directory puts them), not under
    whatever directory the run that created it started in (MLflow's ``./mlruns``)."""
    prefix = "sqlite:///"
    uri = client.tracking_uri
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
        return client.create_experiment(name)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts = Path(uri[len(prefix) :]).resolve().parent / "mlruns"
    return str(SqlAlchemyStore(uri, str(artifacts)).create_experiment(name))
