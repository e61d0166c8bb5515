"""``python -m nnexp.compare`` (its entry module, ``nnexp/compare.py``, runs `main`): the comparison
report of one sweep, from the tracking store alone.

    python -m nnexp.compare                       # the latest sweep in ./mlflow.db
    python -m nnexp.compare --sweep 20260131-120000-ab12cd --out report/
    python -m nnexp.compare --uri http://127.0.0.1:5000 --experiment nnexp

Prints the table of runs (with each run's findings) and where their MLflow pages are, and
writes the PNG plots and ``report.html`` (each run linked to its page) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnexp.tracking.env import configure_mlflow_env
from nnexp.tracking.paths import NoStore, existing_store_uri, project_root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.compare", description="Compare the runs of one nnexp sweep."
    )
    parser.add_argument("--sweep", help="sweep id or parent run id (default: the latest sweep)")
    parser.add_argument("--experiment", help="MLflow experiment (default: any)")
    parser.add_argument(
        "--uri", help="tracking URI (default: MLFLOW_TRACKING_URI, else the project's mlflow.db)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for the plots and report.html (default: <project root>/report-<id>)",
    )
    parser.add_argument(
        "--runs",
        help="job numbers or run ids for the gradient-norm plot, comma-separated "
        "(default: the best, the worst finished and a diverged run)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_mlflow_env()  # before mlflow is imported
    from mlflow import MlflowClient

    from nnexp.report import SweepNotFound, find_sweep, format_table, load_sweep, write_report
    from nnexp.report.links import run_pages

    try:
        uri = existing_store_uri(args.uri)  # MLFLOW_TRACKING_URI, else the project's store
    except NoStore as exc:
        print(f"nnexp.compare: error: {exc}", file=sys.stderr)
        return 2
    client = MlflowClient(uri)
    try:
        sweep = load_sweep(client, find_sweep(client, args.sweep, args.experiment))
    except SweepNotFound as exc:
        print(f"nnexp.compare: error: {exc}", file=sys.stderr)
        return 2
    grad_runs = None
    if args.runs:
        wanted = {w.strip() for w in args.runs.split(",") if w.strip()}
        grad_runs = [r for r in sweep.runs if r.run_id in wanted or str(r.job) in wanted]
        if not grad_runs:
            print(f"nnexp.compare: error: --runs {args.runs}: no such run", file=sys.stderr)
            return 2
    print(format_table(sweep))
    pages = run_pages(client.tracking_uri)
    if pages is not None:
        print(pages.how_to_open())
    out = args.out or project_root() / f"report-{sweep.sweep_id}"  # the project's, not the cwd's
    paths = write_report(sweep, out, grad_runs)
    print(f"report: {paths[-1]}  ({', '.join(p.name for p in paths[:-1])})")
    return 0
