"""Sweeps as MLflow parent runs: one parent run per Hydra multirun, every job's run nested under it.

The Hydra callback `MlflowSweepCallback` (registered in ``conf/config.yaml``) runs in the
launching process. `on_multirun_start` creates the tracking store and the experiment once (under
a file lock, before any job can race on a new sqlite schema), opens the parent run and writes
``<hydra.sweep.dir>/nnexp_sweep.json``. Every job, in this process, a joblib worker or another
host that shares the sweep directory, finds that file through its own Hydra config
(`current_job`) and nests its run under the parent with the tags ``sweep.id``, ``sweep.job`` and
``sweep.params``. The parent id never travels through ``MLFLOW_RUN_ID``: MLflow would resume
that run in every job. `on_multirun_end` reads the children back from the store, records the
best run and the job counts on the parent, logs the comparison report and ends it FINISHED.

A job that fails on its own (a diverging learning rate, a swept value that is invalid) ends its
run FAILED and returns ``Objective.failed_value`` (`nnexp.objective`): a large finite number
every sweeper can rank, the worst in the objective's direction, so the sweep goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import fcntl
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nnexp.objective import Objective
from nnexp.tracking import limits
from nnexp.tracking.mlflow_logger import PARENT_RUN_TAG, _get_or_create_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

SWEEP_FILE = "nnexp_sweep.json"

TAG_ID = "sweep.id"
TAG_JOB = "sweep.job"
TAG_PARAMS = "sweep.params"  # JSON {swept key: this job's value}
TAG_ROLE = "sweep.role"  # "parent" on the parent run
TAG_DIRECTION = "sweep.objective_direction"  # min or max (nnexp.objective)


@dataclass(frozen=True)
class SweepInfo:
    """What the launching process tells every job (the content of `SWEEP_FILE`)."""

    sweep_id: str
    parent_run_id: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    swept: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepJob:
    """One job of a sweep, as its own process sees it."""

    info: SweepInfo
    job: int
    params: dict[str, str]

    @property
    def parent_run_id(self) -> str:
        return self.info.parent_run_id

    @property
    def tags(self) -> dict[str, str]:
        return {
            TAG_ID: self.info.sweep_id,
            TAG_JOB: str(self.job),
            TAG_PARAMS: json.dumps(self.params),
        }

    @property
    def run_name(self) -> str:
        """``#03 init=he lr=0.1`` (``+experiment/init_sweep=he``: ``init_sweep=he``): short enough
        for the MLflow UI's run list."""
        values = " ".join(
            f"{re.split(r'[./]', key)[-1]}={short_value(value)}"
            for key, value in self.params.items()
        )
        return f"#{self.job:02d} {values}".strip()[:250]


def short_value(value: str) -> str:
    """``0.00012046852412030328`` → ``0.0001205``: Optuna's floats, readable in a run name."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 else f"{number:.4g}"


# --- what was swept ------------------------------------------------------------------------------


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: sweep overrides on the command line (``a=1,2``, ``range``,
    ``interval``...) and the keys of ``hydra.sweeper.params`` (sweep configs, Optuna)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    parsed = OverridesParser.create().parse_overrides(overrides)
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if isinstance(params, DictConfig):
        # `+group: a,b` (an appended config group) is the job override `+group=a`, whose key
        # is `group`: strip the prefix so the job finds its value (job_params).
        keys += [str(key).lstrip("+~") for key in params]
    return list(dict.fromkeys(keys))


def job_params(overrides: Sequence[str], swept: Sequence[str]) -> dict[str, str]:
    """This job's values of the swept keys, from its Hydra overrides (``optimizer.lr=0.1``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = {
        o.key_or_group: o.get_value_element_as_str()
        for o in OverridesParser.create().parse_overrides(list(overrides))
    }
    return {key: values[key] for key in swept if key in values}


# --- the job's side -----------------------------------------------------------------------------


def current_job(experiment: str) -> SweepJob | None:
    """The sweep this Hydra job belongs to, or None (a single run, or a multirun without the
    callback). Warns and returns None when the job logs to another experiment than its parent,
    since MLflow nests runs only within one experiment."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    info = read_sweep_file(Path(hydra_cfg.sweep.dir))
    if info is None:
        return None
    if info.experiment != experiment:
        print(
            f"WARNING nnexp.sweep: this job logs to experiment {experiment!r}, its sweep's "
            f"parent run is in {info.experiment!r}: the run is not nested",
            file=sys.stderr,
        )
        return None
    params = job_params(list(hydra_cfg.overrides.task), info.swept)
    return SweepJob(info=info, job=int(hydra_cfg.job.num), params=params)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failed_job(
    *,
    uri: str | None,
    experiment: str,
    job: SweepJob | None,
    tags: Mapping[str, str],
    error: BaseException,
) -> str:
    """A FAILED run for a job that failed before training (no tracker yet), so that the sweep's
    report lists it instead of silently missing a job. Returns the run id."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_tags = dict(tags) | {"error": f"{type(error).__name__}: {error}"}
    if job is not None:
        run_tags |= job.tags | {PARENT_RUN_TAG: job.parent_run_id}
    run = client.create_run(
        _get_or_create_experiment(client, experiment),
        run_name=job.run_name if job else None,
        tags={key: limits.tag_value(value) for key, value in run_tags.items()},
    )
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


# --- the launching process's side ----------------------------------------------------------------


def read_sweep_file(sweep_dir: Path) -> SweepInfo | None:
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        return None
    return SweepInfo(**json.loads(path.read_text()))


def write_sweep_file(sweep_dir: Path, info: SweepInfo) -> Path:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / SWEEP_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    tmp.replace(path)  # atomic: a job never reads half a file
    return path


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite store's file (other stores serialize themselves), so
    two sweeps started at once do not both migrate a new database."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
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
    """Create the store's schema and the experiment once, before any job starts: parallel jobs
    on a new sqlite file raced on schema migrations and lost runs to ``Default``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    with store_lock(client.tracking_uri):
        experiment_id = _get_or_create_experiment(client, experiment)
    return client, experiment_id


def sweep_name(config: DictConfig, swept: Sequence[str], started: float) -> str:
    """``sweep optimizer.lr=0.01,0.1 model.init=he,xavier 2026-01-31 12:00``."""
    given = {str(o).split("=")[0].lstrip("+~"): str(o) for o in config.hydra.overrides.task}
    overrides = [given[key] for key in swept if key in given]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if isinstance(params, DictConfig):
        overrides += [f"{key}={value}" for key, value in params.items() if key not in given]
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(started))
    return " ".join(["sweep", *overrides, stamp])[:250]


def sweep_objective(config: DictConfig) -> Objective:
    """The objective the jobs share. A swept objective (rare) is each job's own: the table's
    direction of the base value, or a loss's, stands for the sweep."""
    key = str(OmegaConf.select(config, "trainer.objective", default="val/loss"))
    mode = str(OmegaConf.select(config, "trainer.objective_mode", default="auto"))
    try:
        return Objective.of(key, mode)
    except ValueError:
        return Objective(key)


def check_sweeper_direction(config: DictConfig, objective: Objective) -> None:
    """An Optuna study must optimize the way the objective improves: exit 2 before any job."""
    if "optuna" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
        return
    direction = OmegaConf.select(config, "hydra.sweeper.direction")
    directions = [str(getattr(d, "name", d)) for d in _as_list(direction)]
    if directions != [objective.optuna_direction]:
        print(
            f"nnexp: error: hydra.sweeper.direction={','.join(directions)} disagrees with "
            f"trainer.objective={objective.describe()}: set hydra.sweeper.direction="
            f"{objective.optuna_direction} (or leave it to follow the objective: "
            "${nnexp.optuna_direction:${trainer.objective},${trainer.objective_mode}})",
            file=sys.stderr,
        )
        raise SystemExit(2)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


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
            TAG_ID: sweep_id,
            TAG_ROLE: "parent",
            "sweep.swept": json.dumps(swept),
            "sweep.overrides": " ".join(map(str, config.hydra.overrides.task)) or "(none)",
            "sweep.sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
            "sweep.launcher": str(OmegaConf.select(config, "hydra.launcher._target_")),
            "sweep.dir": str(sweep_dir),
            "sweep.objective": objective.key,
            TAG_DIRECTION: objective.direction,
        }
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
        # A job that raises an unexpected error stops Hydra before on_multirun_end: the parent
        # must not stay RUNNING then.
        atexit.register(self._end_unfinished)
        print(
            f"nnexp: sweep {sweep_id}: MLflow parent run {run.info.run_id} "
            f"in experiment {experiment!r} ({self.client.tracking_uri})"
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.info is None or self._ended:
            return
        self._finish("FINISHED")

    def _end_unfinished(self) -> None:
        if self.info is not None and not self._ended:
            with contextlib.suppress(Exception):
                self.client.set_tag(
                    self.info.parent_run_id,
                    "error",
                    "the sweep stopped before all jobs returned (see the launching process)",
                )
            self._finish("FAILED")

    def _finish(self, status: str) -> None:
        from nnexp.report import load_sweep

        self._ended = True
        run_id = self.info.parent_run_id
        try:
            sweep = load_sweep(self.client, run_id)
            self._log_summary(sweep)
            if self.report:
                self._log_report(sweep)
        except Exception as error:  # the sweep's runs are safe: say what went wrong, end the run
            print(
                f"WARNING nnexp.sweep: could not summarize sweep {self.info.sweep_id}: "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )
        self.client.set_terminated(run_id, status)

    def _log_summary(self, sweep) -> None:
        from mlflow.entities import Metric, RunTag

        counts = sweep.counts()
        now = int(time.time() * 1000)
        metrics = [Metric(f"sweep/jobs_{k}", float(v), now, 0) for k, v in counts.items()]
        tags = [RunTag(f"sweep.jobs_{k}", str(v)) for k, v in counts.items()]
        best = sweep.best()
        if best is not None:
            metrics.append(Metric("sweep/best_objective", best.objective, now, 0))
            tags += [
                RunTag("sweep.best_run_id", best.run_id),
                RunTag("sweep.best_objective", repr(best.objective)),
                RunTag("sweep.best_params", json.dumps(best.params)),
            ]
        self.client.log_batch(self.info.parent_run_id, metrics=metrics, tags=tags, synchronous=True)
        shown = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "total")
        line = f"nnexp: sweep {self.info.sweep_id}: {counts['total']} jobs ({shown})"
        if best is not None:
            line += f"; best {sweep.objective}={best.objective:.4g} in run {best.run_id}"
        print(line)

    def _log_report(self, sweep) -> None:
        from nnexp.report import format_table, write_report

        with tempfile.TemporaryDirectory(prefix="nnexp-report-") as tmp:
            write_report(sweep, tmp)
            self.client.log_artifacts(self.info.parent_run_id, tmp, "report")
        print(format_table(sweep))


def _task_config(config: DictConfig) -> DictConfig:
    """The job-level config (without ``hydra``), as a job's task function receives it."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task
