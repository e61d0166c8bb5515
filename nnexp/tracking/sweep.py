"""Sweeps as MLflow parent runs: what the jobs of a multirun and the launching process share.

The Hydra callback `nnexp.hydra_callbacks.MlflowSweepCallback` opens one parent run per
multirun and writes ``<hydra.sweep.dir>/nnexp_sweep.json`` (`SweepInfo`). Every job, in this
process, a joblib worker or another host that shares the sweep directory, finds that file
through its own Hydra config (`current_job`) and nests its run under the parent with the tags
``sweep.id``, ``sweep.job`` and ``sweep.params``. The parent id never travels through
``MLFLOW_RUN_ID``: MLflow would resume that run in every job.

A job that fails on its own (a diverging learning rate, a swept value that is invalid) ends its
run FAILED and returns ``Objective.failed_value`` (`nnexp.objective`): a large finite number
every sweeper can rank, the worst in the objective's direction, so the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from nnexp.names import (
    SWEEP_FILE,
    TAG_ERROR,
    TAG_PARENT_RUN,
    TAG_SWEEP_ID,
    TAG_SWEEP_JOB,
    TAG_SWEEP_PARAMS,
    short_value,
)
from nnexp.objective import Objective
from nnexp.tracking import limits
from nnexp.tracking.context import context_tags
from nnexp.tracking.store import get_or_create_experiment

if TYPE_CHECKING:
    pass


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
            TAG_SWEEP_ID: self.info.sweep_id,
            TAG_SWEEP_JOB: str(self.job),
            TAG_SWEEP_PARAMS: json.dumps(self.params),
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


# --- what was swept ------------------------------------------------------------------------------


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: sweep overrides on the command line (``a=1,2``, ``range``,
    ``interval``...) and the keys of ``hydra.sweeper.params`` (sweep configs, Optuna)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # as typed: an override's ${...} is not resolved here
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = [str(o) for o in task] if isinstance(task, list) else []
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
        logging.getLogger(__name__).warning(
            f"WARNING nnexp.sweep: this job logs to experiment {experiment!r}, its sweep's "
            f"parent run is in {info.experiment!r}: the run is not nested"
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
    run_tags = (
        context_tags(Path.cwd()) | dict(tags) | {TAG_ERROR: f"{type(error).__name__}: {error}"}
    )
    if job is not None:
        run_tags |= job.tags | {TAG_PARENT_RUN: job.parent_run_id}
    run = client.create_run(
        get_or_create_experiment(client, experiment),
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


def sweep_name(config: DictConfig, swept: Sequence[str], started: float) -> str:
    """``sweep optimizer.lr=0.01,0.1 model.init=he,xavier 2026-01-31 12:00``."""
    given = {str(o).split("=")[0].lstrip("+~"): str(o) for o in config.hydra.overrides.task}
    overrides = [given[key] for key in swept if key in given]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if isinstance(params, DictConfig):
        overrides += [f"{key!s}={value}" for key, value in params.items() if key not in given]
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
