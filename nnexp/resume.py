"""`trainer.resume`: which checkpoint a job continues from, and which MLflow run it reopens.

Three forms:

- a path: a checkpoint file (``.../checkpoints/last.npz``, ``best.npz``, ``epoch_0010.npz``) or
  a directory holding ``last.npz`` or ``checkpoints/last.npz``. The run keeps writing its
  checkpoints in that directory, and reopens the MLflow run recorded there (``mlflow_run.json``)
  if this job tracks to the same store.
- ``runs:/RUN_ID`` or ``runs:/RUN_ID/checkpoints/<name>.npz``: that MLflow run, reopened. The
  checkpoint is read from the run's own checkpoint directory (tag ``nnexp.checkpoint_dir``) when
  it exists on this machine (a killed run never uploaded it), else downloaded from the run's
  artifacts. Without a path: ``checkpoints/last.npz``.
- ``last``: the most recent run (by start time) in experiment ``tracking.experiment`` whose tag
  ``nnexp.resume_key`` equals this job's: a hash of the job's Hydra overrides, sorted, without
  ``trainer.resume`` itself — so the same command line, or the same job of a re-launched sweep,
  finds its earlier run. If that run is FINISHED, or ended diverged (resuming would diverge again:
  training is deterministic), the job is skipped. If there is none, the job starts fresh. A
  killed or crashed run is resumed as with ``runs:/RUN_ID``. A single run (not a sweep's job)
  with no such run also looks for the latest run whose overrides differ only in
  ``trainer.epochs`` (tag ``nnexp.lineage_key``): one that FINISHED with fewer epochs than
  asked is *extended* — reopened and continued from its last checkpoint to the new
  ``trainer.epochs`` (``trainer.resume=last trainer.epochs=150`` after a 100-epoch run); one
  that diverged is skipped; one that was killed is resumed (to the new count).

A run whose checkpoint directory is locked by a live process on this host (``.lock``, written
by the `Checkpointer`) is refused: two processes must never continue the same run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnexp.names import (
    LAST_CHECKPOINT,
    RUN_FILE,
    TAG_CHECKPOINT_DIR,
    TAG_DIVERGED,
    TAG_LINEAGE_KEY,
    TAG_RESUME_KEY,
    TRUE,
)
from nnexp.train.run_lock import check_unlocked

DEFAULT_ARTIFACT = f"checkpoints/{LAST_CHECKPOINT}"
_RESUME_OVERRIDE = ("trainer.resume=", "+trainer.resume=", "++trainer.resume=")
_EPOCHS_OVERRIDE = ("trainer.epochs=", "+trainer.epochs=", "++trainer.epochs=")
EPOCHS_RUN = "epochs_run"  # the final metric: how many epochs a run trained


class ResumeError(ValueError):
    """trainer.resume names nothing that can be resumed; the message says why."""


@dataclass
class ResumePlan:
    """What the job does. `skip`: an earlier run of this config is complete (`run`)."""

    checkpoint: Path | None = None  # the file to restore; None: train from the start
    checkpoint_dir: Path | None = None  # where the run keeps writing; None: this job's own
    run_id: str | None = None  # the MLflow run to reopen; None: a new run
    skip: bool = False
    run: Any = None  # the MLflow run found (runs:/ and last)
    extends: int | None = None  # a finished run's epochs, continued to more (last)
    note: str = ""  # one line for the user: what was found


def job_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that define a job: all but trainer.resume."""
    return [o for o in overrides if not o.startswith(_RESUME_OVERRIDE)]


def resume_key(overrides: Sequence[str]) -> str:
    """A stable id of a job's overrides, order-independent (tagged on every run). Each override
    is normalized by Hydra's parser: a sweep job sees ``uri=sqlite\\:///x`` where a single run
    sees ``uri=sqlite:///x``, and ``[16, 16]`` is ``[16,16]``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = job_overrides(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(items)
        items = [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed]
    except Exception:  # not Hydra syntax (a caller's own list): the text as given
        pass
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:32]


def lineage_key(overrides: Sequence[str]) -> str:
    """`resume_key` without trainer.epochs: the runs of one job at any length."""
    return resume_key([o for o in overrides if not o.startswith(_EPOCHS_OVERRIDE)])


def plan_resume(
    value: str,
    *,
    tracking_enabled: bool,
    tracking_uri: str | None,
    experiment: str,
    key: str,
    download_dir: Path,
    extend: tuple[str, int] | None = None,
) -> ResumePlan:
    """Resolve `value` (trainer.resume, paths already absolute) into a `ResumePlan`.
    `extend`: (lineage key, trainer.epochs) if ``last`` may extend a finished run."""
    value = value.strip()
    if value == "last" or value.startswith("runs:/"):
        if not tracking_enabled:
            raise ResumeError(
                f"trainer.resume={value}: needs MLflow (tracking.enabled=true) to find the run; "
                "or give the checkpoint path (outputs/<date>/<time>/checkpoints/last.npz)"
            )
        from nnexp.tracking.env import configure_mlflow_env

        configure_mlflow_env()  # MLflow's environment defaults, before mlflow is imported
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        if value == "last":
            return _plan_last(client, experiment, key, download_dir, extend)
        return _plan_run(client, value, download_dir)
    return _plan_path(Path(value), tracking_enabled, tracking_uri)


def _plan_path(path: Path, tracking_enabled: bool, tracking_uri: str | None) -> ResumePlan:
    if path.is_dir():
        found = [p for p in (path / LAST_CHECKPOINT, path / DEFAULT_ARTIFACT) if p.is_file()]
        if not found:
            raise ResumeError(f"trainer.resume={path}: no last.npz or checkpoints/last.npz in it")
        path = found[0]
    elif not path.is_file():
        raise ResumeError(f"trainer.resume={path}: no such checkpoint file or directory")
    check_unlocked(path.parent)
    plan = ResumePlan(checkpoint=path, checkpoint_dir=path.parent, note=f"resuming from {path}")
    record = path.parent / RUN_FILE
    if tracking_enabled and record.is_file():
        from nnexp.tracking.server import resolve_uri

        info = json.loads(record.read_text())
        if info.get("tracking_uri") == resolve_uri(tracking_uri):
            plan.run_id = info["run_id"]
            plan.note += f" (MLflow run {plan.run_id})"
        else:
            plan.note += (
                f" in a new MLflow run: its run {info.get('run_id')} is in another store "
                f"({info.get('tracking_uri')})"
            )
    return plan


def _plan_run(client, value: str, download_dir: Path) -> ResumePlan:
    from mlflow.exceptions import MlflowException

    run_id, _, artifact = value.removeprefix("runs:/").strip("/").partition("/")
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ResumeError(
            f"trainer.resume={value}: no such MLflow run in {client.tracking_uri} "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    if run.info.lifecycle_stage == "deleted":
        raise ResumeError(f"trainer.resume={value}: MLflow run {run_id} is deleted")
    plan = _plan_of_run(client, run, artifact or DEFAULT_ARTIFACT, download_dir)
    if plan.checkpoint is None and artifact:
        raise ResumeError(f"trainer.resume={value}: the run has no artifact {artifact}")
    return plan


def _latest(client, experiment_id: str, tag: str, value: str) -> Any:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tag}` = '{value}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _plan_last(
    client, experiment: str, key: str, download_dir: Path, extend: tuple[str, int] | None
) -> ResumePlan:
    exp = client.get_experiment_by_name(experiment)
    run = None if exp is None else _latest(client, exp.experiment_id, TAG_RESUME_KEY, key)
    if run is None and exp is not None and extend is not None:
        run = _latest(client, exp.experiment_id, TAG_LINEAGE_KEY, extend[0])
        if run is not None and run.info.status == "FINISHED":
            trained = int(run.data.metrics.get(EPOCHS_RUN, extend[1]))
            if trained >= extend[1]:  # as long or longer: not this job's run
                run = None
            else:
                plan = _plan_of_run(client, run, DEFAULT_ARTIFACT, download_dir)
                plan.extends = trained
                plan.note = f"extending {run.info.run_id} from epoch {trained} to {extend[1]}"
                return plan
    if run is None:
        return ResumePlan(note=f"trainer.resume=last: no earlier run of this job in {experiment!r}")
    run_id = run.info.run_id
    diverged = run.data.tags.get(TAG_DIVERGED) == TRUE
    if run.info.status == "FINISHED" or diverged:
        how = "diverged" if diverged else "FINISHED"
        return ResumePlan(
            skip=True, run=run, run_id=run_id, note=f"run {run_id} of this job {how}: skipped"
        )
    return _plan_of_run(client, run, DEFAULT_ARTIFACT, download_dir)


def _plan_of_run(client, run, artifact: str, download_dir: Path) -> ResumePlan:
    """The run's checkpoint `artifact`: the local file when its directory is here, else the
    uploaded copy; none at all means the run died in its first epoch (restart it)."""
    run_id = run.info.run_id
    local_dir = run.data.tags.get(TAG_CHECKPOINT_DIR)
    name = artifact.removeprefix("checkpoints/")
    if local_dir and "/" not in name and (Path(local_dir) / name).is_file():
        check_unlocked(Path(local_dir))
        path = Path(local_dir) / name
        return ResumePlan(path, Path(local_dir), run_id, run=run, note=f"resuming {run_id}: {path}")
    downloaded = _download(client, run_id, artifact, download_dir)
    if downloaded is None:
        note = f"MLflow run {run_id} has no checkpoint: it restarts from epoch 0"
        return ResumePlan(run_id=run_id, run=run, note=note)
    _download(client, run_id, "checkpoints/history.jsonl", download_dir)
    note = f"resuming {run_id} from its artifact {artifact}"
    return ResumePlan(downloaded, None, run_id, run=run, note=note)


def _download(client, run_id: str, artifact: str, download_dir: Path) -> Path | None:
    from mlflow.exceptions import MlflowException

    parent = artifact.rpartition("/")[0] or None
    if artifact not in {a.path for a in client.list_artifacts(run_id, parent)}:
        return None
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(run_id, artifact, str(download_dir))
    except (MlflowException, OSError) as exc:
        raise ResumeError(
            f"trainer.resume: could not download {artifact} of {run_id}: {exc}"
        ) from None
    return Path(local)
