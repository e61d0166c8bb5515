"""A sweep read back from the tracking store alone (any URI): the parent run, its children, and
the metric histories the report draws. Nothing here needs the sweep's files or processes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nnexp.names import (
    TAG_DIVERGED,
    TAG_ERROR,
    TAG_PARENT_RUN,
    TAG_SWEEP_DIRECTION,
    TAG_SWEEP_ID,
    TAG_SWEEP_JOB,
    TAG_SWEEP_OBJECTIVE,
    TAG_SWEEP_PARAMS,
    TAG_SWEEP_ROLE,
    TAG_SWEEP_SWEPT,
    TRUE,
)
from nnexp.objective import Objective, direction_of

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

History = list[tuple[int, float]]  # (step, value), by step


class SweepNotFound(LookupError):
    """No sweep matches what was asked for."""


@dataclass
class RunRecord:
    """One job's run, as the report shows it."""

    run_id: str
    name: str
    job: int | None
    status: str  # MLflow's: FINISHED, FAILED, KILLED, RUNNING, SCHEDULED
    diverged: bool
    error: str
    params: dict[str, str]  # the swept keys' values in this job
    metrics: dict[str, float]  # last value of each metric
    objective: float  # last value of the sweep's objective, NaN if none
    config: dict[str, str] = field(default_factory=dict)  # all its params (the resolved config)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """finished, diverged, failed or running — what the report calls the run."""
        if self.diverged or (self.status == "FINISHED" and not math.isfinite(self.objective)):
            return "diverged"
        if self.status == "FINISHED":
            return "finished"
        if self.status in ("FAILED", "KILLED"):
            return "failed"
        return "running"


@dataclass
class Sweep:
    sweep_id: str
    parent_run_id: str
    name: str
    experiment_id: str
    objective: str
    swept: list[str]
    runs: list[RunRecord]
    client: MlflowClient = field(repr=False)
    direction: str = "min"  # of the objective: min or max (nnexp.objective)
    _histories: dict[tuple[str, str], History] = field(default_factory=dict, repr=False)

    def counts(self) -> dict[str, int]:
        """total, finished, failed (diverged included), diverged, running."""
        states = [run.state for run in self.runs]
        return {
            "total": len(states),
            "finished": states.count("finished"),
            "failed": states.count("failed") + states.count("diverged"),
            "diverged": states.count("diverged"),
            "running": states.count("running"),
        }

    def summary(self) -> str:
        """``10 jobs: 8 finished, 1 failed, 1 diverged``: the states that occur, adding up to the
        total (failed here: failed without diverging)."""
        counts = self.counts()
        shown = {
            "finished": counts["finished"],
            "failed": counts["failed"] - counts["diverged"],
            "diverged": counts["diverged"],
            "running": counts["running"],
        }
        states = ", ".join(f"{n} {state}" for state, n in shown.items() if n)
        return f"{counts['total']} jobs: {states or 'none ran'}"

    @property
    def objective_spec(self) -> Objective:
        return Objective(self.objective, self.direction)

    def best(self) -> RunRecord | None:
        """The finished run with the best objective (lowest loss, highest accuracy)."""
        done = [r for r in self.runs if r.state == "finished" and math.isfinite(r.objective)]
        return min(done, key=lambda r: self.objective_spec.sort_key(r.objective), default=None)

    def history(self, run: RunRecord, key: str) -> History:
        """`key`'s values by step (fetched once per run and key). A step logged twice (the
        final metrics, logged again at the last step) keeps MLflow's order, by time: the
        later value last."""
        if (run.run_id, key) not in self._histories:
            points = self.client.get_metric_history(run.run_id, key)
            by_step = sorted(((m.step, m.value) for m in points), key=lambda point: point[0])
            self._histories[run.run_id, key] = by_step
        return self._histories[run.run_id, key]

    def epochs(self, run: RunRecord) -> int:
        if "epochs_run" in run.metrics:
            return int(run.metrics["epochs_run"])
        return len(self.history(run, self.objective))


def find_sweep(
    client: MlflowClient, sweep: str | None = None, experiment: str | None = None
) -> str:
    """The parent run id of sweep `sweep` (a sweep id or the parent's run id), or of the latest
    sweep; in experiment `experiment`, or in any experiment when None."""
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SweepNotFound(f"no MLflow experiment {experiment!r} in {client.tracking_uri}")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    where = f"tags.`{TAG_SWEEP_ROLE}` = 'parent'"
    if sweep is not None:
        from mlflow.exceptions import MlflowException

        try:  # a parent run id
            run = client.get_run(sweep)
            if run.data.tags.get(TAG_SWEEP_ROLE) == "parent":
                return run.info.run_id
        except MlflowException:
            pass
        where += f" and tags.`{TAG_SWEEP_ID}` = '{sweep}'"
    runs = client.search_runs(
        experiment_ids, where, max_results=1, order_by=["attributes.start_time DESC"]
    )
    if not runs:
        which = f"sweep {sweep!r}" if sweep else "sweep"
        place = f"experiment {experiment!r}" if experiment else "any experiment"
        raise SweepNotFound(f"no {which} in {place} of {client.tracking_uri}")
    return runs[0].info.run_id


def load_sweep(client: MlflowClient, parent_run_id: str) -> Sweep:
    """The sweep whose parent run is `parent_run_id`, with its children's latest metrics."""
    parent = client.get_run(parent_run_id)
    tags = parent.data.tags
    objective = tags.get(TAG_SWEEP_OBJECTIVE) or "val/loss"
    # Sweeps recorded before the direction tag existed: the table's direction of the metric.
    direction = tags.get(TAG_SWEEP_DIRECTION) or _direction_or_min(objective)
    children = _children(client, parent.info.experiment_id, parent_run_id)
    runs = [_record(run, objective) for run in children]
    runs.sort(key=lambda r: (r.job is None, r.job or 0, r.name))
    return Sweep(
        sweep_id=tags.get(TAG_SWEEP_ID, parent_run_id),
        parent_run_id=parent_run_id,
        name=parent.info.run_name or "",
        experiment_id=parent.info.experiment_id,
        objective=objective,
        swept=json.loads(tags.get(TAG_SWEEP_SWEPT, "[]")),
        runs=runs,
        client=client,
        direction=direction,
    )


def _direction_or_min(key: str) -> str:
    try:
        return direction_of(key)
    except ValueError:
        return "min"


def _children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.`{TAG_PARENT_RUN}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _record(run: Run, objective: str) -> RunRecord:
    tags, metrics = run.data.tags, run.data.metrics
    key = run.data.params.get("trainer.objective", objective)
    job = tags.get(TAG_SWEEP_JOB)
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id[:8],
        job=int(job) if job and job.isdigit() else None,
        status=run.info.status,
        diverged=tags.get(TAG_DIVERGED) == TRUE,
        error=tags.get(TAG_ERROR, ""),
        params=json.loads(tags.get(TAG_SWEEP_PARAMS, "{}")),
        metrics=dict(metrics),
        objective=float(metrics.get(key, math.nan)),
        config=dict(run.data.params),
        tags=dict(tags),
    )
