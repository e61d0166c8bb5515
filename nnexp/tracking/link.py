"""The tracker's line to the store: an operation is sent now, or — when the store is away —
kept in the run's spool (`nnexp.tracking.offline`) and sent when it answers again.

When an operation fails and the store does not answer a quick probe, the link goes offline:
later operations are spooled at once instead of waiting for MLflow's retries, and the store is
tried again at most every `retry_every_s` seconds; the first success sends the spool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnexp.names import SPOOL_DIR
from nnexp.tracking.offline import Spool

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class StoreLink:
    def __init__(self, run_dir: Path, retry_every_s: float) -> None:
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.spool = Spool(Path(run_dir) / SPOOL_DIR)
        self.retry_every_s = retry_every_s
        self.offline = False  # the store failed mid-run: operations go to the spool
        self._last_attempt = 0.0

    def store_client(self) -> MlflowClient:
        """The client of the run's store: set once the tracker has opened the store."""
        if self.client is None:
            raise RuntimeError("nnexp.tracking: the MLflow store is not open yet")
        return self.client

    def active_run(self) -> tuple[MlflowClient, str]:
        """(client, run id) of the run this link sends to: set once the tracker has opened the
        store and created (or reopened) the run, before any operation."""
        if self.run_id is None:
            raise RuntimeError("nnexp.tracking: no MLflow run to send to yet")
        return self.store_client(), self.run_id

    def online(self) -> bool:
        """True if operations should be sent now (the store was never lost, or answers again)."""
        return not self.offline or self.reconnect()

    def call(self, what: str, send: Callable[[], object], op: str, **fields: Any) -> bool:
        """Do `send` against the store, or spool it as `op` if the store is away."""
        if self.online():
            try:
                send()
                return True
            except Exception as exc:
                self.failed(what, exc)
        self.spool.add_op(op, **fields)
        return False

    def failed(self, what: str, exc: Exception) -> None:
        """An operation failed (the caller spools it). If the store does not answer at all,
        go offline: further operations are spooled without waiting for MLflow's retries."""
        from nnexp.tracking.server import check_reachable

        client, run_id = self.active_run()
        if not self.spool.directory.is_dir():
            self.spool.open(run_id, client.tracking_uri, self.experiment_id)
        try:
            check_reachable(client.tracking_uri, timeout_s=2.0)
        except Exception:
            self.offline = True
            self._last_attempt = time.monotonic()
        log.warning(
            f"WARNING nnexp.tracking: could not {what} for MLflow run {run_id} "
            f"({client.tracking_uri}): {type(exc).__name__}: {first_line(exc)}. "
            + (
                "The store is unreachable: training goes on, and what cannot be sent is kept "
                f"in {self.spool.directory} until it answers again"
                if self.offline
                else f"Kept in {self.spool.directory}"
            )
        )

    def reconnect(self, force: bool = False) -> bool:
        """Try the store again (at most every `retry_every_s` unless `force`); on success send
        the spool and go back online."""
        if not force and time.monotonic() - self._last_attempt < self.retry_every_s:
            return False
        self._last_attempt = time.monotonic()
        from nnexp.tracking.server import check_reachable

        client = self.store_client()
        try:
            check_reachable(client.tracking_uri, timeout_s=2.0)
            metrics, ops = self.spool.upload(client)
        except Exception:
            return False
        self.offline = False
        log.info(
            f"nnexp.tracking: MLflow store answers again: sent {metrics} spooled metric points "
            f"and {ops} operations of run {self.run_id}"
        )
        return True

    def report(self) -> None:
        """At the end: one last try to send the spool, else say where it is and how to send it."""
        if not self.spool.directory.is_dir() or self.spool.empty():
            return
        if self.offline and self.reconnect(force=True):
            return
        log.warning(f"WARNING nnexp.tracking: {self.spool.instructions()}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
