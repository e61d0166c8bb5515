"""`MlflowTracker`: the callback through which a training run talks to MLflow, and the only one.

It uses an explicit `MlflowClient` (no fluent ``mlflow.start_run`` state, no MLFLOW_RUN_ID), so
several trackers can live in one process. Everything is logged synchronously: asynchronous
logging lost data under parallel load. Metrics are buffered and sent with ``log_batch`` at most
every `flush_every_s` seconds, so logging costs little even for short epochs.

What a run gets (docs/architecture.md, "MLflow conventions"):
params (resolved config, dotted keys) · tags (runner's, plus ``mlflow.parentRunId`` in sweeps,
``nnexp.checkpoint_dir``) · metrics (step = epoch) · artifacts ``config.yaml``, ``hydra/``,
``checkpoints/``, ``plots/`` · the pyfunc model ``model`` (its URI in the tag ``model_uri``) ·
status FINISHED, FAILED (tags ``error``, ``diverged``) or KILLED.

Resuming (`resume_run_id`): the run is reopened, not created; only params it lacks are logged
(changed values are listed in the tag ``nnexp.resume.changed_params``); epochs the killed
process finished but never sent are sent from the restored history, so the metric history
continues without gaps or duplicate steps.

Faults: if the store fails at start, `TrackingUnavailable` (before any training). If it fails
mid-run, training goes on and every operation that could not be sent is spooled to disk
(`nnexp.tracking.link`, `nnexp.tracking.offline`); the spool is replayed when the store answers
again (tried every `retry_every_s`), or the user is told how to upload it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnexp.names import (
    RUN_FILE,
    TAG_CHECKPOINT_DIR,
    TAG_DIVERGED,
    TAG_ERROR,
    TAG_MODEL_URI,
    TAG_PARENT_RUN,
    TAG_PREVIOUS_ERROR,
    TRUE,
)
from nnexp.timing import phase
from nnexp.tracking import limits
from nnexp.tracking.link import StoreLink, first_line
from nnexp.tracking.server import TrackingUnavailable
from nnexp.tracking.store import get_or_create_experiment
from nnexp.train.callbacks import Callback

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from nnexp.tracking.plot_worker import PlotWorker
    from nnexp.train.trainer import Trainer


class MlflowTracker(Callback):
    """Logs one training run to MLflow. Arguments are prepared by the runner: `params` is the
        resolved config flattened to dotted keys, `run_dir` is Hydra's job directory (with
        ``.hydra/``), `write_bundle(dir)` writes the model bundle into `dir` and returns it, and
        `input_example` holds a few raw input rows for the model signature (`artifacts=False`: only
    metrics, params, tags and the status are recorded). `resume_run_id`
        reopens that run instead of creating one; `log_every` is the runner's logging interval
        (epochs), used when sending a resumed run's missing epochs; `plot_worker` draws the plots
        in a separate process, overlapping the run (`nnexp.tracking.plot_worker`)."""

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
        flush_every_s: float = 2.0,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        log_every: int = 1,
        retry_every_s: float = 30.0,
        plot_worker: bool = False,
        artifacts: bool = True,
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
        self._buffer: list[Metric] = []
        self._last_point: dict[str, tuple[int, float]] = {}
        self._last_timestamp = 0  # ms of the last metrics recorded (see _add_metrics)
        self._last_flush = 0.0
        self._sent_through = 0  # steps a resumed run already has in MLflow
        self._plot_worker: PlotWorker | None = None

    # The run's identity lives on the link, which needs it to spool and to replay.
    client = property(lambda self: self.link.client)
    run_id = property(lambda self: self.link.run_id)
    experiment_id = property(lambda self: self.link.experiment_id)

    # -- events ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer) -> None:
        self._start_plots()  # first: its imports overlap ours
        try:
            with phase("mlflow import"):
                from mlflow import MlflowClient  # ~2 s to import: only once a run starts

            with phase("tracking: open store, create run"):
                self._start(trainer, MlflowClient)
        except BaseException:
            self._stop_plots()
            raise

    def _start(self, trainer: Trainer, client_class: type[MlflowClient]) -> None:
        self.link.client = client_class(self.uri)  # None: MLFLOW_TRACKING_URI or ./mlflow.db
        self._buffer.clear()
        self._last_point.clear()
        try:
            if self.resume_run_id:
                self._reopen(trainer)
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
        self._last_flush = time.monotonic()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        with phase("tracking: metrics"):
            self._add_metrics(metrics, step=epoch)
            if time.monotonic() - self._last_flush >= self.flush_every_s:
                self._flush()

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        with phase("tracking: metrics, final flush"):
            self._add_metrics(metrics, step=trainer.epoch)
            self._flush()
        with phase("tracking: checkpoints"):
            self._send_checkpoints()
        if self._plot_worker is not None:  # it draws while the model is logged
            self._plot_worker.send(trainer.history, self.run_dir / "plots")
        with phase("tracking: model"):
            self._send_model(step=trainer.epoch)
        with phase("tracking: plots"):
            self._send_plots(trainer.history)
        with phase("tracking: end the run"):
            diverged = getattr(trainer, "diverged", None)
            if diverged:  # nan_policy=stop: a usable model of the last good epoch, a failed run
                self._send_tags({TAG_ERROR: f"NonFiniteError: {diverged}", TAG_DIVERGED: TRUE})
            self._terminate("FAILED" if diverged else "FINISHED")
            self.link.report()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Record what there is and mark the run failed. Never raises: a tracking failure here
        is printed to stderr (and spooled), so the training error is the one that propagates."""
        if self.run_id is None or isinstance(exc, KeyboardInterrupt):
            self._stop_plots()
        if self.run_id is None:  # the run was never created: nothing to record
            return
        tags = {TAG_ERROR: f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, FloatingPointError):  # the trainer's signal for NaN/Inf
            tags[TAG_DIVERGED] = TRUE
        steps: list[tuple[str, Callable[[], object]]] = [
            ("flush metrics", self._flush),
            ("log checkpoints", self._send_checkpoints),
            ("set error tags", lambda: self._send_tags(tags)),
        ]
        if not isinstance(exc, KeyboardInterrupt):  # a user who pressed Ctrl-C wants out fast
            steps.append(("log plots", lambda: self._send_plots(trainer.history)))
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        steps.append((f"end the run {status}", lambda: self._terminate(status)))
        for what, step in steps:
            try:
                step()
            except Exception as error:
                print(
                    f"WARNING nnexp.tracking: could not {what} for MLflow run {self.run_id} "
                    f"while handling {type(exc).__name__}: {type(error).__name__}: {error}",
                    file=sys.stderr,
                )
        self._stop_plots()
        self.link.report()

    # -- starting: a new run, or the killed one again ---------------------------------------

    def _create(self) -> None:
        self.link.experiment_id = get_or_create_experiment(self.client, self.experiment)
        tags = {key: limits.tag_value(value) for key, value in self._run_tags().items()}
        if self.parent_run_id:
            tags[TAG_PARENT_RUN] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.link.run_id = run.info.run_id
        self._log_params(self.params)
        self._log_config()

    def _reopen(self, trainer: Trainer) -> None:
        from mlflow.entities import RunTag

        run = self.client.get_run(self.resume_run_id)
        if run.info.lifecycle_stage == "deleted":
            raise ValueError(f"trainer.resume: MLflow run {self.resume_run_id} is deleted")
        self.link.run_id, self.link.experiment_id = run.info.run_id, run.info.experiment_id
        self.client.update_run(self.run_id, status="RUNNING")
        old = run.data.params
        new = {k: limits.param_value(v) for k, v in self.params.items()}
        self._log_params({k: v for k, v in self.params.items() if k not in old})
        changed = sorted(
            f"{k}: {old[k]} -> {v}" for k, v in new.items() if k in old and old[k] != v
        )
        tags = self._run_tags() | {"nnexp.resumed_from_epoch": str(trainer.epoch)}
        if changed:
            tags["nnexp.resume.changed_params"] = "; ".join(changed)
        if TAG_ERROR in run.data.tags:  # the crash that is being recovered from
            tags[TAG_PREVIOUS_ERROR] = run.data.tags[TAG_ERROR]
            self.client.delete_tag(self.run_id, TAG_ERROR)
        batch = [RunTag(k, limits.tag_value(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=batch, synchronous=True)
        self._log_config("hydra/resumed")
        self._send_missing_epochs(trainer)

    def _send_missing_epochs(self, trainer: Trainer) -> None:
        """Epochs the killed process checkpointed but never sent (its buffer died with it)."""
        logged = self.client.get_metric_history(self.run_id, "train/loss")
        last = max((m.step for m in logged), default=0)
        # Checkpoints are written at most every trainer.checkpoint_every_s, so the killed
        # process may have sent epochs past its last checkpoint. The resumed run replays them
        # bit for bit: they are not sent again (one point per step).
        self._sent_through = last
        for epoch, metrics in enumerate(trainer.history, start=1):
            if epoch > last and (epoch % self.log_every == 0 or epoch == trainer.epoch):
                self._add_metrics(metrics, step=epoch)
        self._flush()

    def _run_tags(self) -> dict[str, str]:
        return self.tags | {TAG_CHECKPOINT_DIR: str(self.checkpoint_dir.resolve())}

    # -- pieces ---------------------------------------------------------------------------

    def _log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(key, limits.param_value(value)) for key, value in params.items()]
        for chunk in _chunks(items, limits.PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk, synchronous=True)

    def _log_config(self, hydra_path: str = "hydra") -> None:
        """``.hydra/*.yaml`` under ``hydra/``, and the resolved config as ``config.yaml``."""
        if not self.artifacts:
            return
        hydra_dir = self.run_dir / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")):
            self.client.log_artifact(self.run_id, str(path), hydra_path)
        if hydra_path == "hydra" and (hydra_dir / "config.yaml").is_file():
            self.client.log_artifact(self.run_id, str(hydra_dir / "config.yaml"))

    def _add_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if step <= self._sent_through:
            return
        # Strictly increasing per call: at one step, MLflow's latest value is the one with the
        # later timestamp — the final metrics (after restore_best) must win over the epoch's.
        timestamp = self._last_timestamp = max(int(time.time() * 1000), self._last_timestamp + 1)
        for key, value in metrics.items():
            point = (int(step), float(value))
            # The final metrics repeat the last epoch's at the same step: log each point once.
            # Non-finite values are kept: a NaN loss is information, and MLflow stores it.
            if self._last_point.get(key) != point:
                self._last_point[key] = point
                self._buffer.append(Metric(key, point[1], timestamp, point[0]))

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        if not self.link.online():
            self.link.spool.add_metrics(self._buffer)
            self._buffer.clear()
            return
        try:
            while self._buffer:
                chunk = self._buffer[: limits.METRICS_PER_BATCH]
                self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
                del self._buffer[: len(chunk)]  # only once sent
        except Exception as exc:
            self.link.failed("flush metrics", exc)
            self.link.spool.add_metrics(self._buffer)
            self._buffer.clear()

    def _send_checkpoints(self) -> None:
        """The checkpoints and their history (not the lock or the run record beside them)."""
        if not self.artifacts:
            return
        d = self.checkpoint_dir
        files = sorted(d.glob("*.npz")) + sorted(d.glob("history.jsonl")) if d.is_dir() else []
        for path in map(str, files):
            self.link.call(
                "log checkpoints",
                lambda path=path: self.client.log_artifact(self.run_id, path, "checkpoints"),
                "artifacts",
                local=path,
                path="checkpoints",
            )

    def _start_plots(self) -> None:
        """With `plot_worker` (single runs), draw the plots in a worker process, unless
        matplotlib is loaded here already: then drawing in-process is the cheaper way. (In a
        sweep every job would pay the worker's start-up: there the process imports matplotlib
        once and draws every job's plots itself.)"""
        if not self.plot_worker or "matplotlib" in sys.modules:
            return
        from nnexp.tracking.plot_worker import PlotWorker

        try:
            self._plot_worker = PlotWorker()
        except OSError:
            self._plot_worker = None

    def _stop_plots(self) -> None:
        worker, self._plot_worker = self._plot_worker, None
        if worker is not None:
            worker.stop()

    def _send_plots(self, history: Sequence[Mapping[str, float]]) -> None:
        if not self.artifacts:
            return
        from nnexp.tracking.plots import make_plots

        directory = self.run_dir / "plots"  # kept with the run: the spool may point at it
        worker, self._plot_worker = self._plot_worker, None
        made = None
        if worker is not None:
            worker.send(history, directory)  # usually already sent, while the model was logged
            made = worker.result()
        if made is None:
            made = make_plots(history, directory)
        if made:
            d = str(directory)
            self.link.call(
                "log plots",
                lambda: self.client.log_artifacts(self.run_id, d, "plots"),
                "artifacts",
                local=d,
                path="plots",
            )

    def _send_model(self, step: int) -> None:
        if not self.artifacts:
            return
        from nnexp.tracking.pyfunc import log_pyfunc_model

        if self.link.online():
            try:
                with tempfile.TemporaryDirectory(prefix="nnexp-model-") as tmp:
                    bundle = self.write_bundle(Path(tmp) / "bundle")
                    uri = log_pyfunc_model(
                        tracking_uri=self.client.tracking_uri,
                        run_id=self.run_id,
                        bundle_dir=bundle,
                        input_example=self.input_example,
                        step=step,
                    )
                self.client.set_tag(self.run_id, TAG_MODEL_URI, uri)
                return
            except Exception as exc:
                self.link.failed("log the model", exc)
        import numpy as np

        spool = self.link.spool
        bundle = self.write_bundle(spool.directory / "model")
        example = spool.directory / "input_example.npy"
        np.save(example, np.asarray(self.input_example, dtype=np.float64), allow_pickle=False)
        spool.add_op("model", bundle=str(bundle), example=str(example), step=step)

    def _send_tags(self, tags: Mapping[str, str]) -> None:
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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
