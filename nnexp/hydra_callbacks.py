"""The Hydra callbacks of a multirun, listed under ``hydra.callbacks`` in ``conf/config.yaml``.
They run in the launching process, where the sweep starts and ends.

`MlflowSweepCallback`: one parent MLflow run per multirun. `on_multirun_start` validates what
every job shares (a mistake fails the sweep at once), creates the tracking store and the
experiment once (under a file lock, before any job can race on a new sqlite schema), opens the
parent run and writes the sweep file that jobs read (`nnexp.tracking.sweep`).
`on_multirun_end` reads the children back from the store, records the best run and the job
counts on the parent, logs the comparison report (`nnexp.report`) and ends it FINISHED.

`WarmJoblibWorkers`: with ``hydra/launcher=joblib``, start the worker processes (and their
imports) as the sweep starts, not when its jobs are launched. Hydra's joblib launcher creates
loky's workers only once it launches the jobs, after the sweep has started (MLflow imported,
the parent run created, one core idle meanwhile); each worker then spends its first seconds
importing nnexp, Hydra, MLflow and matplotlib before the first job can begin. This callback
runs a trivial task on each worker, from a background thread, with the launcher's own joblib
settings, so that joblib keeps the same (reusable) executor for the jobs: the imports overlap
the sweep's start and the first jobs start warm. A no-op for every other launcher; if the
settings ever differ joblib makes new workers, which costs the warm-up and changes nothing
else.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from nnexp.config import user_tags
from nnexp.names import (
    TAG_ERROR,
    TAG_SWEEP_DIRECTION,
    TAG_SWEEP_ID,
    TAG_SWEEP_OBJECTIVE,
    TAG_SWEEP_ROLE,
    TAG_SWEEP_SWEPT,
)
from nnexp.tracking import limits
from nnexp.tracking.context import context_tags
from nnexp.tracking.store import prepare_store
from nnexp.tracking.sweep import (
    SweepInfo,
    check_sweeper_direction,
    sweep_name,
    sweep_objective,
    swept_keys,
    write_sweep_file,
)
from nnexp.tracking.where import RunPlace

if TYPE_CHECKING:
    from mlflow import MlflowClient


class MlflowSweepCallback(Callback):
    """Hydra callback: a parent MLflow run per multirun (see the module's docstring).

    `validate` names a function ``f(config, swept_keys)`` run on the sweep's shared config
    before any job starts (``nnexp.cli.validate_shared``): a mistake every job would make fails
    the sweep at once. `report` logs the comparison report to the parent at the end."""

    def __init__(self, validate: str | None = None, report: bool = True) -> None:
        self.validate = validate
        self.report = report
        self.client: MlflowClient | None = None
        self.info: SweepInfo | None = None
        self.place: RunPlace | None = None
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not OmegaConf.select(config, "tracking.enabled", default=True):
            return
        swept = swept_keys(config)
        if self.validate:
            from hydra.utils import get_method

            get_method(self.validate)(_task_config(config), swept)
        objective = sweep_objective(config)
        check_sweeper_direction(config, objective)
        started = time.time()
        uri = OmegaConf.select(config, "tracking.uri")
        experiment = str(config.tracking.experiment)
        self.client, experiment_id = prepare_store(uri, experiment)
        sweep_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
        sweep_id += f"-{uuid.uuid4().hex[:6]}"
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        tags = {
            TAG_SWEEP_ID: sweep_id,
            TAG_SWEEP_ROLE: "parent",
            TAG_SWEEP_SWEPT: json.dumps(swept),
            "sweep.overrides": " ".join(map(str, config.hydra.overrides.task)) or "(none)",
            "sweep.sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
            "sweep.launcher": str(OmegaConf.select(config, "hydra.launcher._target_")),
            "sweep.dir": str(sweep_dir),
            TAG_SWEEP_OBJECTIVE: objective.key,
            TAG_SWEEP_DIRECTION: objective.direction,
        }
        if "tags" not in swept:  # the user's tags (config key tags), unless each job has its own
            raw = OmegaConf.select(config, "tags")
            raw = OmegaConf.to_container(raw) if isinstance(raw, DictConfig | ListConfig) else raw
            tags = user_tags(raw) | tags
        tags = context_tags(Path.cwd()) | tags
        run = self.client.create_run(
            experiment_id,
            run_name=sweep_name(config, swept, started),
            tags={key: limits.tag_value(value) for key, value in tags.items()},
        )
        self.info = SweepInfo(
            sweep_id=sweep_id,
            parent_run_id=run.info.run_id,
            experiment=experiment,
            experiment_id=experiment_id,
            tracking_uri=self.client.tracking_uri,
            swept=swept,
        )
        write_sweep_file(sweep_dir, self.info)
        self.place = RunPlace(
            run_id=run.info.run_id,
            run_name=run.info.run_name,
            experiment=experiment,
            experiment_id=experiment_id,
            tracking_uri=self.client.tracking_uri,
            output_dir=sweep_dir,
        )
        # A job that raises an unexpected error stops Hydra before on_multirun_end: the parent
        # must not stay RUNNING then.
        atexit.register(self._end_unfinished)
        print(
            f"nnexp: sweep {sweep_id}: MLflow parent run {run.info.run_id} "
            f"in experiment {experiment!r} ({self.client.tracking_uri})"
        )

    def _parent(self) -> tuple[MlflowClient, SweepInfo]:
        """The store and the sweep, once on_multirun_start has created the parent run."""
        if self.client is None or self.info is None:
            raise RuntimeError("nnexp.sweep: the sweep has no parent run")
        return self.client, self.info

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.info is None or self._ended:
            return
        self._finish("FINISHED")

    def _end_unfinished(self) -> None:
        if self.info is not None and not self._ended:
            client, info = self._parent()
            with contextlib.suppress(Exception):
                client.set_tag(
                    info.parent_run_id,
                    TAG_ERROR,
                    "the sweep stopped before all jobs returned (see the launching process)",
                )
            self._finish("FAILED")

    def _finish(self, status: str) -> None:
        # Imported here: Hydra instantiates the callbacks for single runs too, which never
        # need the report (and its 20-50 ms of imports).
        from nnexp.report import load_sweep

        self._ended = True
        client, info = self._parent()
        run_id = info.parent_run_id
        try:
            sweep = load_sweep(client, run_id)
            self._log_summary(sweep)
            if self.report:
                self._log_report(sweep)
        except Exception as error:  # the sweep's runs are safe: say what went wrong, end the run
            print(
                f"WARNING nnexp.sweep: could not summarize sweep {info.sweep_id}: "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )
        client.set_terminated(run_id, status)
        if self.place is not None:  # the sweep's last line: where it went
            print(f"nnexp: sweep {info.sweep_id}: parent {self.place.line()}")

    def _log_summary(self, sweep) -> None:
        """The job counts and the best job on the parent: its swept values as the parent's
        params (columns beside the jobs' own in the runs table), its objective as a metric."""
        from mlflow.entities import Metric, Param, RunTag

        counts = sweep.counts()
        now = int(time.time() * 1000)
        metrics = [Metric(f"sweep/jobs_{k}", float(v), now, 0) for k, v in counts.items()]
        tags = [RunTag(f"sweep.jobs_{k}", str(v)) for k, v in counts.items()]
        params = []
        best = sweep.best()
        if best is not None:
            metrics.append(Metric("sweep/best_objective", best.objective, now, 0))
            tags += [
                RunTag("sweep.best_run_id", best.run_id),
                RunTag("sweep.best_objective", repr(best.objective)),
                RunTag("sweep.best_params", json.dumps(best.params)),
            ]
            params = [Param(k, limits.param_value(v)) for k, v in best.params.items()]
        client, info = self._parent()
        client.log_batch(
            info.parent_run_id, metrics=metrics, params=params, tags=tags, synchronous=True
        )
        line = f"nnexp: sweep {info.sweep_id}: {sweep.summary()}"
        if best is not None:
            line += f"; best {sweep.objective}={best.objective:.4g} in run {best.run_id}"
        print(line)

    def _log_report(self, sweep) -> None:
        from nnexp.report import format_table, write_report

        with tempfile.TemporaryDirectory(prefix="nnexp-report-") as tmp:
            write_report(sweep, tmp)
            client, info = self._parent()
            client.log_artifacts(info.parent_run_id, tmp, "report")
        print(format_table(sweep))


def _task_config(config: DictConfig) -> DictConfig:
    """The job-level config (without ``hydra``), as a job's task function receives it."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


class WarmJoblibWorkers(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if not target.endswith("JoblibLauncher"):
            return
        settings = joblib_settings(config.hydra.launcher)
        threading.Thread(
            target=_warm, args=(settings,), name="nnexp-warm-workers", daemon=True
        ).start()


def joblib_settings(launcher: DictConfig) -> dict[str, Any]:
    """The ``joblib.Parallel`` arguments Hydra's joblib launcher will use (its own processing)."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    settings = cast("dict[str, Any]", OmegaConf.to_container(launcher, resolve=True))
    settings.pop("_target_", None)
    settings["backend"] = "loky"  # as the launcher forces it
    process_joblib_cfg(settings)
    return settings


def _warm(settings: dict[str, Any]) -> list[int]:
    from joblib import Parallel, delayed, effective_n_jobs

    workers = effective_n_jobs(settings.get("n_jobs"))
    return Parallel(**settings)(delayed(import_what_a_job_needs)() for _ in range(workers))


def import_what_a_job_needs() -> int:
    """In a worker: the modules a tracked job imports (order and result are the same whether this
    ran first or not). Returns the worker's pid."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401
    import mlflow.pyfunc
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import nnexp.cli
    import nnexp.tracking.mlflow_logger  # noqa: F401

    return os.getpid()
