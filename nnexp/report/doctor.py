"""The doctor's side of the store: a recorded run → `RunFacts` (its per-epoch metric history,
params and how it ended), its findings, a sweep's pattern (a finding that every run with one
swept value, or else one pair of swept values, has and no other run has), and the report's
findings cell (`findings_cell`: the ``doctor.findings`` and ``doctor.failing`` tags the run
ended with, else its diagnosis; `findings_text`, the same form for any findings)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnexp.names import (
    TAG_DIVERGED,
    TAG_DOCTOR_FAILING,
    TAG_DOCTOR_FINDINGS,
    TAG_ERROR,
    TAG_KIND,
    TAG_N_CLASSES,
    TAG_SWEEP_ROLE,
    TRUE,
    short_value,
)
from nnexp.report.collect import RunRecord, Sweep
from nnexp.train.diagnosis import FAIL, WARN, Finding, RunFacts, diagnose

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


class RunNotFound(LookupError):
    """No run matches what was asked for."""


def run_facts(client: MlflowClient, run: Run) -> RunFacts:
    """The run's metrics by epoch (MLflow step = epoch, from 1), params, task and ending."""
    histories = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }
    return _facts(histories, run.data.params, run.data.tags)


def record_facts(sweep: Sweep, record: RunRecord) -> RunFacts:
    """`run_facts` of a sweep's run, from the metric histories the sweep caches (the report's
    figures and its findings read each history once)."""
    histories = {key: sweep.history(record, key) for key in record.metrics}
    return _facts(histories, record.config, record.tags)


def _facts(
    histories: Mapping[str, Iterable[tuple[int, float]]],
    params: Mapping[str, str],
    tags: Mapping[str, str],
) -> RunFacts:
    """Histories by key, in MLflow's order (a step logged twice: the later value wins) → one
    row of metrics per epoch."""
    by_step: dict[int, dict[str, float]] = {}
    for key, points in histories.items():
        for step, value in points:
            by_step.setdefault(int(step), {})[key] = float(value)
    last = max(by_step, default=0)
    history = [by_step.get(step, {}) for step in range(1, last + 1)]
    n_classes = tags.get(TAG_N_CLASSES, "")
    return RunFacts(
        history,
        dict(params),
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
    """Each run's findings from its metrics (read once: the sweep already holds its params and
    tags), and the sweep's patterns."""
    found = {record.run_id: diagnose(record_facts(sweep, record)) for record in sweep.runs}
    codes = {rid: {f.code for f in fs} for rid, fs in found.items()}
    params = {r.run_id: r.params for r in sweep.runs}
    return SweepDiagnosis(sweep, found, sweep_patterns(sweep.swept, params, codes))


def sweep_patterns(
    swept: Sequence[str], params: Mapping[str, Mapping[str, str]], codes: Mapping[str, set[str]]
) -> list[str]:
    """Sentences for the findings that split a sweep along its swept values: every run with
    ``key=value`` has it and no other run does; else every run with a pair of values
    (``model.activation=sigmoid, model.hidden=[16,16,16,16]``: the deep sigmoid nets, where
    neither value alone decides); or every run of the sweep has it."""
    runs = list(codes)
    all_codes = sorted(set().union(*codes.values())) if codes else []
    lines = []
    for code in all_codes:
        having = {r for r in runs if code in codes[r]}
        if len(having) == len(runs) and len(runs) > 1:
            lines.append(f"every run: {code}")
            continue
        singles = [(key,) for key in swept]
        pairs = list(itertools.combinations(swept, 2))
        for keys in (singles, pairs):  # a pair only where no single value splits the sweep
            found = [
                f"all {len(having)} runs with {given}: {code}"
                for given in (_shared_values(k, having, runs, params) for k in keys)
                if given
            ]
            if found:
                lines += found
                break
    return lines


def _shared_values(
    keys: Sequence[str], having: set[str], runs: list[str], params: Mapping[str, Mapping[str, str]]
) -> str:
    """``k=v, k2=v2`` if the runs `having` a finding (two or more) are exactly those with these
    values of `keys`; else ``""``."""
    values = {tuple(params[r].get(k, "") for k in keys) for r in having}
    if len(values) != 1 or len(having) < 2:
        return ""
    (shared,) = values
    group = {r for r in runs if tuple(params[r].get(k, "") for k in keys) == shared}
    if group != having:
        return ""
    return ", ".join(f"{k}={short_value(v)}" for k, v in zip(keys, shared, strict=True))


def findings_cell(sweep: Sweep, record: RunRecord) -> str:
    """A run's findings, short, for the report's table: ``FAIL symmetry, dead_relu; WARN
    underfitting``, or ``none``. From the tags the run ended with (no metric is read), else —
    a run recorded before them, or one still running — from its metrics by the same rules."""
    codes = record.tags.get(TAG_DOCTOR_FINDINGS)
    if codes == "none":
        return "none"
    failing = record.tags.get(TAG_DOCTOR_FAILING)
    if codes and failing:
        fails = set(_codes(failing))
        found = _codes(codes)
        return _by_severity(
            [(FAIL, c) for c in found if c in fails] + [(WARN, c) for c in found if c not in fails]
        )
    return findings_text(diagnose(record_facts(sweep, record)))


def findings_text(findings: Sequence[Finding]) -> str:
    """Findings as the report's and the experiment pages' tables show them: ``FAIL symmetry;
    WARN underfitting`` (codes by severity), or ``none``."""
    return _by_severity([(f.severity, f.code) for f in findings])


def _codes(tag: str) -> list[str]:
    return [code for code in tag.split(",") if code and code != "none"]


def _by_severity(findings: Sequence[tuple[str, str]]) -> str:
    groups = [
        f"{severity} {', '.join(code for s, code in findings if s == severity)}"
        for severity in (FAIL, WARN)
        if any(s == severity for s, _ in findings)
    ]
    return "; ".join(groups) or "none"
