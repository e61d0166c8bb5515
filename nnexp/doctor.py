"""``python -m nnexp.doctor``: why a run failed and what to change, from the tracking store.

    python -m nnexp.doctor                      # the latest training run in the project's mlflow.db
    python -m nnexp.doctor RUN_ID               # one run (finished or failed)
    python -m nnexp.doctor --sweep latest       # a sweep: one line per run, and its pattern
    python -m nnexp.doctor --experiment NAME    # the latest sweep of an experiment (else run)

Each finding: severity (FAIL, WARN), the evidence (metric, layer, epoch, value) and the fix as
overrides to paste. The rules and their thresholds: `nnexp.train.diagnosis`. Exit status:
0 no FAIL finding, 1 a FAIL finding, 2 no such store, run or sweep.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nnexp.tracking.env import configure_mlflow_env
from nnexp.tracking.paths import NoStore, existing_store_uri


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.doctor",
        description="Diagnose a recorded nnexp run or sweep: findings, evidence, fixes.",
    )
    parser.add_argument("run", nargs="?", default="latest", help="run id, or latest (default)")
    parser.add_argument("--sweep", help="sweep id, parent run id, or latest")
    parser.add_argument("--experiment", help="MLflow experiment: its latest sweep, else run")
    parser.add_argument(
        "--uri", help="tracking URI (default: MLFLOW_TRACKING_URI, else the project's mlflow.db)"
    )
    return parser.parse_args(argv)


def format_findings(findings: Sequence, indent: str = "  ") -> list[str]:
    """A finding per block: severity, title, evidence, why, the fix to paste."""
    if not findings:
        return [
            f"{indent}no findings: gradients, activations, learning rate and curves look healthy"
        ]
    lines = []
    for f in findings:
        lines.append(f"{indent}{f.severity} {f.title}")
        lines.append(f"{indent}     evidence: {f.evidence}")
        if f.advice:
            lines.append(f"{indent}     why: {f.advice}")
        if f.fix:
            lines.append(f"{indent}     fix: {' '.join(f.fix)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_mlflow_env()  # before mlflow is imported
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nnexp.report import SweepNotFound, find_sweep, load_sweep
    from nnexp.report.doctor import RunNotFound

    try:
        uri = existing_store_uri(args.uri)  # MLFLOW_TRACKING_URI, else the project's store
    except NoStore as exc:
        print(f"nnexp.doctor: error: {exc}", file=sys.stderr)
        return 2
    client = MlflowClient(uri)
    try:
        if args.sweep or (args.experiment and args.run == "latest"):
            sweep_id = None if args.sweep in (None, "latest") else args.sweep
            try:
                parent = find_sweep(client, sweep_id, args.experiment)
            except SweepNotFound:
                if args.sweep:
                    raise
                return _one_run(client, args.run, args.experiment)
            return _sweep(load_sweep(client, parent))
        return _one_run(client, args.run, args.experiment)
    except (SweepNotFound, RunNotFound) as exc:
        print(f"nnexp.doctor: error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:
        print(f"nnexp.doctor: error: run {args.run!r}: {exc.message}", file=sys.stderr)
        return 2


def _one_run(client, run_id: str, experiment: str | None) -> int:
    from nnexp.report.doctor import diagnose_run, latest_run
    from nnexp.train.diagnosis import FAIL, verdict

    if run_id == "latest":
        run_id = latest_run(client, experiment)
    run, findings = diagnose_run(client, run_id)
    name = run.info.run_name or ""
    print(f"run {run.info.run_id} ({name}): {run.info.status}")
    print("\n".join(format_findings(findings)))
    print(verdict(findings))
    return 1 if any(f.severity == FAIL for f in findings) else 0


def _sweep(sweep) -> int:
    from nnexp.report.doctor import diagnose_sweep
    from nnexp.train.diagnosis import FAIL

    found = diagnose_sweep(sweep)
    print(f"sweep {sweep.sweep_id} (parent run {sweep.parent_run_id}): {len(sweep.runs)} runs")
    width = max((len(r.name) for r in sweep.runs), default=0)
    for run in sweep.runs:
        findings = found.findings[run.run_id]
        shown = "; ".join(f"{f.severity} {f.title}" for f in findings) or "healthy"
        print(f"  {run.name.ljust(width)}  {run.state:<8}  {shown}")
    if found.patterns:
        print("pattern:")
        print("\n".join(f"  {line}" for line in found.patterns))
    failing = any(f.severity == FAIL for fs in found.findings.values() for f in fs)
    print("details: python -m nnexp.doctor RUN_ID")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
