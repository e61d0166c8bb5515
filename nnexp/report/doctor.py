"""The doctor's side of the store: a recorded run → `RunFacts` (its per-epoch metric history,
params and how it ended), its findings, and a sweep's pattern (a finding that every run with
one swept value has and no other run has)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnexp.names import (
    TAG_DIVERGED,
    TAG_ERROR,
    TAG_KIND,
    TAG_N_CLASSES,
    TAG_SWEEP_ROLE,
    TRUE,
    short_value,
)
from nnexp.report.collect import Sweep
from nnexp.train.diagnosis import Finding, RunFacts, diagnose

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


class RunNotFound(LookupError):
    """No run matches what was asked for."""


def run_facts(client: MlflowClient, run: Run) -> RunFacts:
    """The run's metrics by epoch (MLflow step = epoch, from 1), params, task and ending."""
    by_step: dict[int, dict[str, float]] = {}
    for key in run.data.metrics:
        for point in client.get_metric_history(run.info.run_id, key):
            by_step.setdefault(int(point.step), {})[key] = float(point.value)
    last = max(by_step, default=0)
    history = [by_step.get(step, {}) for step in range(1, last + 1)]
    tags = run.data.tags
    n_classes = tags.get(TAG_N_CLASSES, "")
    return RunFacts(
        history,
        dict(run.data.params),
        task=tags.get("task", ""),
        n_classes=int(n_classes) if n_classes.isdigit() else None,
        diverged=tags.get(TAG_DIVERGED) == TRUE,
        error=tags.get(TAG_ERROR, ""),
    )


def diagnose_run(client: MlflowClient, run_id: str) -> tuple[Run, list[Finding]]:
    run = client.get_run(run_id)
    return run, diagnose(run_facts(client, run))


def latest_run(client: MlflowClient, experiment: str | None = None) -> str:
    """The most recent training run (not a sweep's parent, not a check), in `experiment` or in
    any experiment."""
    ids = _experiment_ids(client, experiment)
    for run in client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=50):
        tags = run.data.tags
        if tags.get(TAG_SWEEP_ROLE) != "parent" and TAG_KIND not in tags:
            return run.info.run_id
    place = f"experiment {experiment!r}" if experiment else "any experiment"
    raise RunNotFound(f"no training run in {place} of {client.tracking_uri}")


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RunNotFound(f"no MLflow experiment {experiment!r} in {client.tracking_uri}")
    return [found.experiment_id]


@dataclass
class SweepDiagnosis:
    sweep: Sweep
    findings: dict[str, list[Finding]]  # run id → its findings
    patterns: list[str]


def diagnose_sweep(sweep: Sweep) -> SweepDiagnosis:
    found = {}
    for record in sweep.runs:
        run = sweep.client.get_run(record.run_id)
        found[record.run_id] = diagnose(run_facts(sweep.client, run))
    codes = {rid: {f.code for f in fs} for rid, fs in found.items()}
    params = {r.run_id: r.params for r in sweep.runs}
    return SweepDiagnosis(sweep, found, sweep_patterns(sweep.swept, params, codes))


def sweep_patterns(
    swept: Sequence[str], params: Mapping[str, Mapping[str, str]], codes: Mapping[str, set[str]]
) -> list[str]:
    """Sentences for the findings that split a sweep along one swept value: every run with
    ``key=value`` has it and no other run does (or every run of the sweep has it)."""
    runs = list(codes)
    all_codes = sorted(set().union(*codes.values())) if codes else []
    lines = []
    for code in all_codes:
        having = {r for r in runs if code in codes[r]}
        if len(having) == len(runs) and len(runs) > 1:
            lines.append(f"every run: {code}")
            continue
        for key in swept:
            values = {params[r].get(key, "") for r in having}
            if len(values) != 1:
                continue
            value = values.pop()
            group = {r for r in runs if params[r].get(key, "") == value}
            if group == having and len(group) > 1:
                lines.append(f"all {len(group)} runs with {key}={short_value(value)}: {code}")
    return lines


def summary(findings: Sequence[Finding]) -> str:
    """The findings' codes for a table cell (``-`` when healthy)."""
    return ", ".join(f.code for f in findings) or "-"
