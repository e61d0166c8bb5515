"""`MlflowTracker`: the callback through which a training run talks to MLflow, and the only one:
what the run records at each event of training (start, epoch end, end, exception).

It uses an explicit `MlflowClient` (no fluent ``mlflow.start_run`` state, no MLFLOW_RUN_ID), so
several trackers can live in one process. Everything is logged synchronously: asynchronous
logging lost data under parallel load. Its parts, one concept each:

- `nnexp.tracking.metric_buffer`: metrics, buffered and sent with ``log_batch`` at most every
  `flush_every_s` seconds, so logging costs little even for short epochs;
- `nnexp.tracking.artifacts`: config, checkpoints, plots (drawn by a worker process) and model;
- `nnexp.tracking.resumed`: a resumed run (`resume_run_id`) is reopened, not created, and its
  metric history continues without gaps or duplicate steps;
- `nnexp.tracking.link` and `nnexp.tracking.offline`: the line to the store, and the spool.

What a run gets (docs/architecture.md, "MLflow conventions"):
params (the hyperparameters, dotted keys) · tags (MLflow's context tags, the runner's, plus
``mlflow.parentRunId`` in sweeps, ``nnexp.checkpoint_dir``) · inputs (the dataset's splits) ·
metrics (step = epoch; ``model/n_params``) · artifacts ``config.yaml``, ``hydra/``,
``checkpoints/``, ``plots/`` · the pyfunc model ``model`` (its URI in the tag ``model_uri``) ·
status FINISHED, FAILED (tags ``error``, ``diverged``) or KILLED.

Faults: if the store fails at start, `TrackingUnavailable` (before any training). If it fails
mid-run, training goes on and every operation that could not be sent is spooled to disk; the
spool is replayed when the store answers again (tried every `retry_every_s`), or the user is
told how to upload it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nnexp.names import (
    N_PARAMS,
    RUN_FILE,
    TAG_CHECKPOINT_DIR,
    TAG_DIVERGED,
    TAG_ERROR,
    TAG_PARENT_RUN,
    TRUE,
)
from nnexp.timing import phase
from nnexp.tracking import limits
from nnexp.tracking.artifacts import RunArtifacts
from nnexp.tracking.context import context_tags
from nnexp.tracking.inputs import DatasetRecord, log_dataset
from nnexp.tracking.link import StoreLink, first_line
from nnexp.tracking.metric_buffer import MetricBuffer
from nnexp.tracking.params import log_params
from nnexp.tracking.resumed import reopen_run, send_missing_epochs
from nnexp.tracking.server import TrackingUnavailable
from nnexp.tracking.store import get_or_create_experiment
from nnexp.tracking.where import RunPlace
from nnexp.train.callbacks import Callback

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient

    from nnexp.train.trainer import Trainer

log = logging.getLogger(__name__)


class MlflowTracker(Callback):
    """Logs one training run to MLflow. Arguments are prepared by the runner: `params` is the
    run's hyperparameters as dotted keys, `run_dir` is Hydra's job directory (with ``.hydra/``),
    `write_bundle(dir)` writes the model bundle into `dir` and returns it, `input_example`
    holds a few raw input rows for the model signature, `register_as` names the model in the
    model registry (None: not registered) (`artifacts=False`: only metrics, params, tags and the
    status are recorded). A new run also gets MLflow's context tags, those of `project_dir`'s
    git repository (`nnexp.tracking.context`), `dataset` as its inputs and the network's
    parameter count `n_params` as a metric. `resume_run_id` reopens that run instead
    of creating one; `log_every` is the runner's logging interval (epochs), used when sending a
    resumed run's missing epochs; `plot_worker` draws the plots in a separate process,
    overlapping the run (`nnexp.tracking.plot_worker`); `checkpoint_keep`: the checkpointer's
    `keep`, which the store's copy follows too."""

    def __init__(
        self,
        *,
        uri: str | None,
        experiment: str,
        run_name: str | None,
        params: Mapping[str, object],
        tags: Mapping[str, str],
        run_dir: str | Path,
        checkpoint_dir: str | Path,
        write_bundle: Callable[[Path], Path],
        input_example: np.ndarray,
        register_as: str | None = None,
        project_dir: str | Path = ".",
        dataset: DatasetRecord | None = None,
        n_params: int | None = None,
        flush_every_s: float = 2.0,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        log_every: int = 1,
        retry_every_s: float = 30.0,
        plot_worker: bool = False,
        artifacts: bool = True,
        checkpoint_keep: int | None = None,
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.params = dict(params)
        self.tags = dict(tags)
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.write_bundle = write_bundle
        self.input_example = input_example
        self.project_dir = Path(project_dir)
        self.dataset = dataset
        self.n_params = n_params
        self.flush_every_s = flush_every_s
        self.parent_run_id = parent_run_id
        self.resume_run_id = resume_run_id
        self.log_every = log_every
        self.retry_every_s = retry_every_s
        self.plot_worker = plot_worker
        # False: metrics (and params, tags, status) only — no config, checkpoints, plots or
        # model uploaded (what a benchmark of the per-epoch cost wants).
        self.artifacts = artifacts
        self.link = StoreLink(self.run_dir, retry_every_s)  # the store, or the spool
        self.buffer = MetricBuffer(self.link)
        self.files = RunArtifacts(
            self.link,
            run_dir=self.run_dir,
            checkpoint_dir=self.checkpoint_dir,
            write_bundle=write_bundle,
            input_example=input_example,
            register_as=register_as,
            enabled=artifacts,
            use_plot_worker=plot_worker,
            checkpoint_keep=checkpoint_keep,
        )

    # The run's identity lives on the link, which needs it to spool and to replay.
    client = property(lambda self: self.link.client)
    run_id = property(lambda self: self.link.run_id)
    experiment_id = property(lambda self: self.link.experiment_id)

    def place(self, output_dir: Path) -> RunPlace | None:
        """Where the run went (`nnexp.tracking.where`), or None if it was never created."""
        if self.run_id is None:
            return None
        return RunPlace(
            run_id=self.run_id,
            run_name=self.run_name or "",
            experiment=self.experiment,
            experiment_id=self.experiment_id,
            tracking_uri=self.client.tracking_uri,
            output_dir=output_dir,
        )

    # -- events ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer) -> None:
        self.files.start_plots()  # first: its imports overlap ours
        try:
            with phase("mlflow import"):
                from mlflow import MlflowClient  # ~2 s to import: only once a run starts

            with phase("tracking: open store, create run"):
                self._start(trainer, MlflowClient)
        except BaseException:
            self.files.stop_plots()
            raise

    def _start(self, trainer: Trainer, client_class: type[MlflowClient]) -> None:
        self.link.client = client_class(self.uri)  # None: MLFLOW_TRACKING_URI or ./mlflow.db
        self.buffer.clear()
        try:
            if self.resume_run_id:
                self.run_name = reopen_run(
                    self.link, self.resume_run_id, self.params, self._run_tags(), trainer.epoch
                )
                self.files.log_config("hydra/resumed")
                self._send_missing_epochs(trainer)
            else:
                self._create()
                if trainer.epoch:  # resumed from a checkpoint into a new run: its history too
                    self._send_missing_epochs(trainer)
        except TrackingUnavailable:
            raise
        except ValueError as exc:  # a deleted experiment or run: the message says what to do
            raise TrackingUnavailable(str(exc)) from exc
        except Exception as exc:  # the store refused or failed: no training without tracking
            raise TrackingUnavailable(
                f"MLflow tracking store {self.client.tracking_uri}: could not start the run "
                f"({type(exc).__name__}: {first_line(exc)}); "
                "to train without tracking use tracking.enabled=false"
            ) from exc
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        record = {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}
        (self.checkpoint_dir / RUN_FILE).write_text(
            json.dumps(record | {"exp": self.experiment_id})
        )
        self.buffer.last_flush = time.monotonic()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        with phase("tracking: metrics"):
            self.buffer.add(metrics, step=epoch)
            if self.buffer.due(self.flush_every_s):
                self.buffer.flush()

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        with phase("tracking: metrics, final flush"):
            self.buffer.add(metrics, step=trainer.epoch)
            self.buffer.flush()
        with phase("tracking: checkpoints"):
            self.files.send_checkpoints()
        self.files.draw_plots_ahead(trainer.history)  # it draws while the model is logged
        with phase("tracking: model"):
            # a diverged run's model (nan_policy=stop) is logged, never registered as a version
            self.files.send_model(
                step=trainer.epoch, register=not getattr(trainer, "diverged", None)
            )
        with phase("tracking: plots"):
            self.files.send_plots(trainer.history)
        with phase("tracking: end the run"):
            diverged = getattr(trainer, "diverged", None)
            if diverged:  # nan_policy=stop: a usable model of the last good epoch, a failed run
                self.send_tags({TAG_ERROR: f"NonFiniteError: {diverged}", TAG_DIVERGED: TRUE})
            self._terminate("FAILED" if diverged else "FINISHED")
            self.link.report()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Record what there is and mark the run failed. Never raises: a tracking failure here
        is printed to stderr (and spooled), so the training error is the one that propagates."""
        if self.run_id is None or isinstance(exc, KeyboardInterrupt):
            self.files.stop_plots()
        if self.run_id is None:  # the run was never created: nothing to record
            return
        tags = {TAG_ERROR: f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, FloatingPointError):  # the trainer's signal for NaN/Inf
            tags[TAG_DIVERGED] = TRUE
        steps: list[tuple[str, Callable[[], object]]] = [
            ("flush metrics", self.buffer.flush),
            ("log checkpoints", self.files.send_checkpoints),
            ("set error tags", lambda: self.send_tags(tags)),
        ]
        if not isinstance(exc, KeyboardInterrupt):  # a user who pressed Ctrl-C wants out fast
            steps.append(("log plots", lambda: self.files.send_plots(trainer.history)))
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        steps.append((f"end the run {status}", lambda: self._terminate(status)))
        for what, step in steps:
            try:
                step()
            except Exception as error:
                log.warning(
                    f"WARNING nnexp.tracking: could not {what} for MLflow run {self.run_id} "
                    f"while handling {type(exc).__name__}: {type(error).__name__}: {error}"
                )
        self.files.stop_plots()
        self.link.report()

    # -- the run: a new one, its tags, its end --------------------------------------------

    def _create(self) -> None:
        from mlflow.entities import Metric

        self.link.experiment_id = get_or_create_experiment(self.client, self.experiment)
        tags = context_tags(self.project_dir) | self._run_tags()
        tags = {key: limits.tag_value(value) for key, value in tags.items()}
        if self.parent_run_id:
            tags[TAG_PARENT_RUN] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.link.run_id, self.run_name = run.info.run_id, run.info.run_name
        log_params(self.client, self.run_id, self.params)
        if self.n_params is not None:
            point = Metric(N_PARAMS, float(self.n_params), int(time.time() * 1000), 0)
            self.client.log_batch(self.run_id, metrics=[point], synchronous=True)
        if self.dataset is not None:
            log_dataset(self.client, self.run_id, self.dataset)
        self.files.log_config()

    def _send_missing_epochs(self, trainer: Trainer) -> None:
        send_missing_epochs(self.buffer, trainer.history, trainer.epoch, self.log_every)

    def _run_tags(self) -> dict[str, str]:
        return self.tags | {TAG_CHECKPOINT_DIR: str(self.checkpoint_dir.resolve())}

    def send_tags(self, tags: Mapping[str, str]) -> None:
        """Set `tags` on the run now, or spool them if the store is away."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, limits.tag_value(v)) for k, v in tags.items()]
        self.link.call(
            "set tags",
            lambda: self.client.log_batch(self.run_id, tags=batch, synchronous=True),
            "tags",
            tags=dict(tags),
        )

    def _terminate(self, status: str) -> None:
        self.link.call(
            f"end the run {status}",
            lambda: self.client.set_terminated(self.run_id, status),
            "terminate",
            status=status,
        )
