"""`MetricBuffer`: a run's metric points, kept in memory and sent to the store in batches.

Points are sent with ``log_batch`` (at most `limits.METRICS_PER_BATCH` a request) when the
tracker flushes — at most every ``tracking.flush_every_s`` seconds, and at the end — so that
logging costs little even for short epochs. What cannot be sent goes to the run's spool
(`nnexp.tracking.link`, `nnexp.tracking.offline`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from nnexp.tracking import limits

if TYPE_CHECKING:
    from mlflow.entities import Metric

    from nnexp.tracking.link import StoreLink


class MetricBuffer:
    def __init__(self, link: StoreLink) -> None:
        self.link = link
        self.points: list[Metric] = []
        self.last_flush = 0.0  # time.monotonic() of the last flush
        self.sent_through = 0  # steps a resumed run already has in MLflow: not sent again
        self._last_point: dict[str, tuple[int, float]] = {}
        self._last_timestamp = 0  # ms of the last metrics recorded (see add)

    def clear(self) -> None:
        """Forget the points not sent (a run starting again)."""
        self.points.clear()
        self._last_point.clear()

    def due(self, every_s: float) -> bool:
        return time.monotonic() - self.last_flush >= every_s

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if step <= self.sent_through:
            return
        # Strictly increasing per call: at one step, MLflow's latest value is the one with the
        # later timestamp — the final metrics (after restore_best) must win over the epoch's.
        timestamp = self._last_timestamp = max(int(time.time() * 1000), self._last_timestamp + 1)
        for key, value in metrics.items():
            point = (int(step), float(value))
            # The final metrics repeat the last epoch's at the same step: log each point once.
            # Non-finite values are kept: a NaN loss is information, and MLflow stores it.
            if self._last_point.get(key) != point:
                self._last_point[key] = point
                self.points.append(Metric(key, point[1], timestamp, point[0]))

    def flush(self) -> None:
        """Send every point now, or spool them if the store is away."""
        self.last_flush = time.monotonic()
        if not self.points:
            return
        link = self.link
        if not link.online():
            link.spool.add_metrics(self.points)
            self.points.clear()
            return
        client, run_id = link.active_run()
        try:
            while self.points:
                chunk = self.points[: limits.METRICS_PER_BATCH]
                client.log_batch(run_id, metrics=chunk, synchronous=True)
                del self.points[: len(chunk)]  # only once sent
        except Exception as exc:
            link.failed("flush metrics", exc)
            link.spool.add_metrics(self.points)
            self.points.clear()
