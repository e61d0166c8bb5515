"""What a run could not send to its MLflow server, kept on disk until it can.

When the tracking server goes away mid-run, the tracker keeps training and writes each
operation it could not perform into a spool directory (``<run dir>/mlflow-offline/``):

- ``run.json``      the run id, the tracking URI and the experiment id;
- ``metrics.jsonl`` one metric point a line (key, value, timestamp, step);
- ``ops.jsonl``     everything else, in order: artifacts to upload (local paths: checkpoints stay
                    in the run's checkpoint directory, plots and the model bundle are written
                    into the spool), tags, the pyfunc model, the final status;
- ``sent.json``     how many metric points and operations were uploaded already, so an
                    interrupted upload resumes where it stopped and nothing is sent twice.

The tracker replays the spool itself when the server answers again; otherwise it prints the
command that does it later, from any machine that reaches the server and sees the directory::

    python -m nnexp.tracking.offline <run dir>/mlflow-offline
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnexp.names import SPOOL_DIR, TAG_MODEL_URI
from nnexp.tracking import limits

if TYPE_CHECKING:
    from mlflow import MlflowClient


class Spool:
    """The spool directory of one run."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def metrics_file(self) -> Path:
        return self.directory / "metrics.jsonl"

    @property
    def ops_file(self) -> Path:
        return self.directory / "ops.jsonl"

    def open(self, run_id: str, tracking_uri: str, experiment_id: str | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        info = {"run_id": run_id, "tracking_uri": tracking_uri, "experiment_id": experiment_id}
        (self.directory / "run.json").write_text(json.dumps(info))

    def run_info(self) -> dict[str, str]:
        return json.loads((self.directory / "run.json").read_text())

    def add_metrics(self, metrics: list[Any]) -> None:
        """`metrics`: MLflow `Metric` objects."""
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            for m in metrics:
                row = {"key": m.key, "value": _json_float(m.value)}
                row |= {"timestamp": m.timestamp, "step": m.step}
                f.write(json.dumps(row) + "\n")
            f.flush()

    def add_op(self, op: str, **fields: Any) -> None:
        with open(self.ops_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"op": op, **fields}) + "\n")
            f.flush()

    def pending(self) -> tuple[int, int]:
        """(metric points, operations) not yet uploaded."""
        sent = self._sent()
        return (
            len(_lines(self.metrics_file)) - sent["metrics"],
            len(_lines(self.ops_file)) - sent["ops"],
        )

    def empty(self) -> bool:
        return self.pending() == (0, 0)

    def _sent(self) -> dict[str, int]:
        path = self.directory / "sent.json"
        return json.loads(path.read_text()) if path.is_file() else {"metrics": 0, "ops": 0}

    def _mark_sent(self, metrics: int, ops: int) -> None:
        tmp = self.directory / "sent.json.tmp"
        tmp.write_text(json.dumps({"metrics": metrics, "ops": ops}))
        tmp.replace(self.directory / "sent.json")

    def upload(self, client: MlflowClient) -> tuple[int, int]:
        """Send what is pending, in order; record progress after every request (a failure
        midway leaves the rest pending). Returns (metric points, operations) sent."""
        from mlflow.entities import Metric

        run_id = self.run_info()["run_id"]
        sent = self._sent()
        metrics = _lines(self.metrics_file)[sent["metrics"] :]
        done_metrics = done_ops = 0
        for start in range(0, len(metrics), limits.METRICS_PER_BATCH):
            rows = [json.loads(line) for line in metrics[start : start + limits.METRICS_PER_BATCH]]
            batch = [Metric(r["key"], float(r["value"]), r["timestamp"], r["step"]) for r in rows]
            client.log_batch(run_id, metrics=batch, synchronous=True)
            done_metrics += len(batch)
            self._mark_sent(sent["metrics"] + done_metrics, sent["ops"])
        for line in _lines(self.ops_file)[sent["ops"] :]:
            _replay(client, run_id, json.loads(line))
            done_ops += 1
            self._mark_sent(sent["metrics"] + done_metrics, sent["ops"] + done_ops)
        return done_metrics, done_ops

    def instructions(self) -> str:
        metrics, ops = self.pending()
        return (
            f"{metrics} metric points and {ops} other operations (checkpoints, plots, model, "
            f"final status) for MLflow run {self.run_info()['run_id']} are kept in "
            f"{self.directory}; upload them once the server is back with: "
            f"python -m nnexp.tracking.offline {self.directory}"
        )


def _replay(client: MlflowClient, run_id: str, op: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    kind = op["op"]
    if kind == "artifacts":
        local = Path(op["local"])
        if local.is_dir():
            client.log_artifacts(run_id, str(local), op.get("path"))
        elif local.is_file():
            client.log_artifact(run_id, str(local), op.get("path"))
    elif kind == "tags":
        tags = [RunTag(k, limits.tag_value(v)) for k, v in op["tags"].items()]
        client.log_batch(run_id, tags=tags, synchronous=True)
    elif kind == "model":
        import numpy as np

        from nnexp.tracking.pyfunc import log_pyfunc_model

        uri = log_pyfunc_model(
            tracking_uri=client.tracking_uri,
            run_id=run_id,
            bundle_dir=op["bundle"],
            input_example=np.load(op["example"], allow_pickle=False),
            step=op["step"],
            register_as=op.get("register_as"),
        )
        client.set_tag(run_id, TAG_MODEL_URI, uri)
    elif kind == "terminate":
        client.set_terminated(run_id, op["status"])
    else:
        raise ValueError(f"unknown spooled operation {kind!r}")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    # A line torn by a crash mid-write has no newline: it is not counted (and was not sent).
    text = path.read_text(encoding="utf-8")
    return [line for line in text.split("\n")[:-1] if line]


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)  # "nan", "inf": valid JSON


def find_spools(root: str | Path) -> Iterator[Path]:
    root = Path(root)
    if (root / "run.json").is_file():
        yield root
        return
    yield from sorted(p.parent for p in root.rglob(f"{SPOOL_DIR}/run.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnexp.tracking.offline",
        description="Upload what nnexp runs kept locally while their MLflow server was away.",
    )
    parser.add_argument("path", help="a spool directory, or a directory to search for them")
    parser.add_argument("--tracking-uri", help="default: the URI each run was tracked to")
    args = parser.parse_args(argv)
    from nnexp.tracking.env import configure_mlflow_env

    configure_mlflow_env()
    from mlflow import MlflowClient

    spools = list(find_spools(args.path))
    if not spools:
        print(f"nnexp: error: no {SPOOL_DIR}/run.json under {args.path}", file=sys.stderr)
        return 2
    failed = 0
    for spool in map(Spool, spools):
        uri = args.tracking_uri or spool.run_info()["tracking_uri"]
        try:
            metrics, ops = spool.upload(MlflowClient(uri))
        except Exception as exc:
            failed += 1
            print(f"nnexp: error: {spool.directory}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        run_id = spool.run_info()["run_id"]
        print(f"{spool.directory}: uploaded {metrics} metric points, {ops} operations ({run_id})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
