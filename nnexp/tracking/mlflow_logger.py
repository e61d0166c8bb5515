"""`MlflowTracker`: the callback through which a training run talks to MLflow, and the only one.

It uses an explicit `MlflowClient` (no fluent ``mlflow.start_run`` state, no MLFLOW_RUN_ID), so
several trackers can live in one process. Everything is logged synchronously: asynchronous
logging lost data under parallel load. Metrics are buffered and sent with ``log_batch`` at most
every `flush_every_s` seconds, so logging costs little even for short epochs.

What a run gets (see DESIGN.md, "MLflow conventions"):
params (resolved config, dotted keys) · tags (runner's, plus ``mlflow.parentRunId`` in sweeps) ·
metrics (step = epoch) · artifacts ``config.yaml``, ``hydra/``, ``checkpoints/``, ``plots/`` ·
the pyfunc model ``model`` (its URI in the tag ``model_uri``) · status FINISHED, FAILED
(tags ``error``, ``diverged``) or KILLED.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnexp.tracking import limits
from nnexp.train.callbacks import Callback

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from nnexp.train.trainer import Trainer

PARENT_RUN_TAG = "mlflow.parentRunId"


class MlflowTracker(Callback):
    """Logs one training run to MLflow. Arguments are prepared by the runner: `params` is the
    resolved config flattened to dotted keys, `run_dir` is Hydra's job directory (with
    ``.hydra/``), `write_bundle(dir)` writes the model bundle into `dir` and returns it, and
    `input_example` holds a few raw input rows for the model signature."""

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
        self.client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self._buffer: list[Metric] = []
        self._last_point: dict[str, tuple[int, float]] = {}
        self._last_flush = 0.0

    # -- events ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer) -> None:
        from mlflow import MlflowClient  # ~2 s to import: only once a run starts

        self.client = MlflowClient(self.uri)  # None: MLFLOW_TRACKING_URI or ./mlflow.db
        self.experiment_id = _get_or_create_experiment(self.client, self.experiment)
        tags = {key: limits.tag_value(value) for key, value in self.tags.items()}
        if self.parent_run_id:
            tags[PARENT_RUN_TAG] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self._log_params()
        self._log_config()
        self._buffer.clear()
        self._last_point.clear()
        self._last_flush = time.monotonic()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._add_metrics(metrics, step=epoch)
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self._flush()

    def on_fit_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._add_metrics(metrics, step=trainer.epoch)
        self._flush()
        self._log_checkpoints()
        self._log_plots(trainer.history)
        model_uri = self._log_model(step=trainer.epoch)
        self.client.set_tag(self.run_id, "model_uri", model_uri)
        self.client.set_terminated(self.run_id, "FINISHED")

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Record what there is and mark the run failed. Never raises: a tracking failure here
        is printed to stderr, so the training error is the one that propagates."""
        if self.run_id is None:  # the run was never created: nothing to record
            return
        steps: list[tuple[str, Callable[[], object]]] = [
            ("flush metrics", self._flush),
            ("log checkpoints", self._log_checkpoints),
            ("set error tags", lambda: self._tag_error(exc)),
        ]
        if not isinstance(exc, KeyboardInterrupt):  # a user who pressed Ctrl-C wants out fast
            steps.append(("log plots", lambda: self._log_plots(trainer.history)))
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        steps.append(
            (f"end the run {status}", lambda: self.client.set_terminated(self.run_id, status))
        )
        for what, step in steps:
            try:
                step()
            except Exception as error:
                print(
                    f"WARNING nnexp.tracking: could not {what} for MLflow run {self.run_id} "
                    f"while handling {type(exc).__name__}: {type(error).__name__}: {error}",
                    file=sys.stderr,
                )

    # -- pieces ---------------------------------------------------------------------------

    def _log_params(self) -> None:
        from mlflow.entities import Param

        params = [Param(key, limits.param_value(value)) for key, value in self.params.items()]
        for chunk in _chunks(params, limits.PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk, synchronous=True)

    def _log_config(self) -> None:
        """``.hydra/*.yaml`` under ``hydra/``, and the resolved config as ``config.yaml``."""
        hydra_dir = self.run_dir / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")):
            self.client.log_artifact(self.run_id, str(path), "hydra")
        if (hydra_dir / "config.yaml").is_file():
            self.client.log_artifact(self.run_id, str(hydra_dir / "config.yaml"))

    def _add_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            point = (int(step), float(value))
            # The final metrics repeat the last epoch's at the same step: log each point once.
            # Non-finite values are kept: a NaN loss is information, and MLflow stores it.
            if self._last_point.get(key) != point:
                self._last_point[key] = point
                self._buffer.append(Metric(key, point[1], timestamp, point[0]))

    def _flush(self) -> None:

        while self._buffer:
            chunk = self._buffer[: limits.METRICS_PER_BATCH]
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
            del self._buffer[: len(chunk)]  # only once sent: a failed batch stays for a retry
        self._last_flush = time.monotonic()

    def _log_checkpoints(self) -> None:
        if self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.iterdir()):
            self.client.log_artifacts(self.run_id, str(self.checkpoint_dir), "checkpoints")

    def _log_plots(self, history: Sequence[Mapping[str, float]]) -> None:
        from nnexp.tracking.plots import make_plots

        with tempfile.TemporaryDirectory(prefix="nnexp-plots-") as tmp:
            for path in make_plots(history, tmp):
                self.client.log_artifact(self.run_id, str(path), "plots")

    def _log_model(self, step: int) -> str:
        from nnexp.tracking.pyfunc import log_pyfunc_model

        with tempfile.TemporaryDirectory(prefix="nnexp-model-") as tmp:
            bundle = self.write_bundle(Path(tmp) / "bundle")
            return log_pyfunc_model(
                tracking_uri=self.client.tracking_uri,
                run_id=self.run_id,
                bundle_dir=bundle,
                input_example=self.input_example,
                step=step,
            )

    def _tag_error(self, exc: BaseException) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag("error", limits.tag_value(f"{type(exc).__name__}: {exc}"))]
        if isinstance(exc, FloatingPointError):  # the trainer's signal for NaN/Inf
            tags.append(RunTag("diverged", "true"))
        self.client.log_batch(self.run_id, tags=tags, synchronous=True)


def _get_or_create_experiment(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # a parallel job of the same sweep created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {name!r} is deleted: restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
            "or choose another name"
        )
    return experiment.experiment_id


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
