"""A resumed run (``trainer.resume``): the killed run is reopened, not created, and its metric
history continues without gaps or duplicate steps.

`reopen_run` logs only the params the run lacks (changed values are listed in the tag
``nnexp.resume.changed_params``) and keeps the crash it recovers from as ``previous_error``;
`send_missing_epochs` sends the epochs the killed process finished but never sent, from the
restored history (also for a checkpoint resumed into a new run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nnexp.names import TAG_ERROR, TAG_PREVIOUS_ERROR
from nnexp.tracking import limits
from nnexp.tracking.params import log_params

if TYPE_CHECKING:
    from nnexp.tracking.link import StoreLink
    from nnexp.tracking.metric_buffer import MetricBuffer


def reopen_run(
    link: StoreLink, run_id: str, params: Mapping[str, object], tags: Mapping[str, str], epoch: int
) -> str:
    """Reopen MLflow run `run_id` (RUNNING again) on `link`; `tags` are the run's own,
    `epoch` the one the checkpoint restored. Returns the run's name. A deleted run is a
    `ValueError`."""
    from mlflow.entities import RunTag

    client = link.store_client()
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        raise ValueError(f"trainer.resume: MLflow run {run_id} is deleted")
    link.run_id, link.experiment_id = run.info.run_id, run.info.experiment_id
    client.update_run(run_id, status="RUNNING")
    old = run.data.params
    new = {k: limits.param_value(v) for k, v in params.items()}
    log_params(client, run_id, {k: v for k, v in params.items() if k not in old})
    changed = sorted(f"{k}: {old[k]} -> {v}" for k, v in new.items() if k in old and old[k] != v)
    tags = dict(tags) | {"nnexp.resumed_from_epoch": str(epoch)}
    if changed:
        tags["nnexp.resume.changed_params"] = "; ".join(changed)
    if TAG_ERROR in run.data.tags:  # the crash that is being recovered from
        tags[TAG_PREVIOUS_ERROR] = run.data.tags[TAG_ERROR]
        client.delete_tag(run_id, TAG_ERROR)
    batch = [RunTag(k, limits.tag_value(v)) for k, v in tags.items()]
    client.log_batch(run_id, tags=batch, synchronous=True)
    return str(run.info.run_name)


def send_missing_epochs(
    metrics: MetricBuffer, history: Sequence[Mapping[str, float]], epoch: int, log_every: int
) -> None:
    """Epochs the killed process checkpointed but never sent (its buffer died with it), up to
    the restored `epoch`, every `log_every`-th as the run logs them."""
    client, run_id = metrics.link.active_run()
    logged = client.get_metric_history(run_id, "train/loss")
    last = max((m.step for m in logged), default=0)
    # Checkpoints are written at most every trainer.checkpoint_every_s, so the killed
    # process may have sent epochs past its last checkpoint. The resumed run replays them
    # bit for bit: they are not sent again (one point per step).
    metrics.sent_through = last
    for step, values in enumerate(history, start=1):
        if step > last and (step % log_every == 0 or step == epoch):
            metrics.add(values, step=step)
    metrics.flush()
