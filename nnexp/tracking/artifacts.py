"""`RunArtifacts`: the files a run uploads — its config, checkpoints, plots and model — each sent
now or, when the store is away, kept in the run's spool (`nnexp.tracking.link`).

``enabled=False`` uploads none of them (metrics, params, tags and the status only: what a
benchmark of the per-epoch cost wants).
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nnexp.names import TAG_MODEL_URI

if TYPE_CHECKING:
    import numpy as np

    from nnexp.tracking.link import StoreLink
    from nnexp.tracking.plot_worker import PlotWorker


class RunArtifacts:
    """`write_bundle(dir)` writes the model bundle into `dir` and returns it; `input_example`
    holds a few raw input rows for the model signature; `register_as` (a name) registers the
    model in the model registry; `use_plot_worker` draws the plots in a separate process,
    overlapping the run (`nnexp.tracking.plot_worker`)."""

    def __init__(
        self,
        link: StoreLink,
        *,
        run_dir: Path,
        checkpoint_dir: Path,
        write_bundle: Callable[[Path], Path],
        input_example: np.ndarray,
        register_as: str | None = None,
        enabled: bool = True,
        use_plot_worker: bool = False,
        checkpoint_keep: int | None = None,
    ) -> None:
        self.link = link
        self.run_dir = run_dir
        self.checkpoint_dir = checkpoint_dir
        self.write_bundle = write_bundle
        self.input_example = input_example
        self.register_as = register_as
        self.enabled = enabled
        self.use_plot_worker = use_plot_worker
        self.checkpoint_keep = checkpoint_keep  # the Checkpointer's `keep`: None keeps all
        self.worker: PlotWorker | None = None

    def log_config(self, hydra_path: str = "hydra") -> None:
        """``.hydra/*.yaml`` under ``hydra/``, and the resolved config as ``config.yaml``."""
        if not self.enabled:
            return
        client, run_id = self.link.active_run()
        hydra_dir = self.run_dir / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")):
            client.log_artifact(run_id, str(path), hydra_path)
        if hydra_path == "hydra" and (hydra_dir / "config.yaml").is_file():
            client.log_artifact(run_id, str(hydra_dir / "config.yaml"))

    def send_checkpoints(self) -> None:
        """The checkpoints and their history (not the lock or the run record beside them)."""
        if not self.enabled:
            return
        link = self.link
        client, run_id = link.active_run()
        d = self.checkpoint_dir
        files = sorted(d.glob("*.npz")) + sorted(d.glob("history.jsonl")) if d.is_dir() else []
        for path in map(str, files):
            link.call(
                "log checkpoints",
                functools.partial(client.log_artifact, run_id, path, "checkpoints"),
                "artifacts",
                local=path,
                path="checkpoints",
            )
        if self.checkpoint_keep is not None and link.online():
            try:
                self._prune_uploaded_checkpoints()
            except Exception as exc:  # housekeeping: the run's record is complete without it
                print(
                    f"WARNING nnexp.tracking: could not delete old checkpoints of MLflow run "
                    f"{run_id}: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )

    def _prune_uploaded_checkpoints(self) -> None:
        """The store keeps what the checkpoint directory keeps: a run reopened by a resume may
        have uploaded epoch files that the directory has pruned since (or never had, resumed
        from the store on another machine): the same rule over both sets decides."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        from nnexp.train.checkpointer import stale_epoch_checkpoints

        client, run_id = self.link.active_run()
        uploaded = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
        local = [p.name for p in self.checkpoint_dir.glob("epoch_*.npz")]
        names = set(local) | {p.rpartition("/")[2] for p in uploaded}
        stale = set(stale_epoch_checkpoints(names, self.checkpoint_keep))
        doomed = [p for p in uploaded if p.rpartition("/")[2] in stale]
        if doomed:
            run = client.get_run(run_id)
            repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri)
            for path in doomed:
                repo.delete_artifacts(path)

    # -- plots ----------------------------------------------------------------------------

    def start_plots(self) -> None:
        """With `use_plot_worker` (single runs), draw the plots in a worker process, unless
        matplotlib is loaded here already: then drawing in-process is the cheaper way. (In a
        sweep every job would pay the worker's start-up: there the process imports matplotlib
        once and draws every job's plots itself.)"""
        if not self.use_plot_worker or "matplotlib" in sys.modules:
            return
        from nnexp.tracking.plot_worker import PlotWorker

        try:
            self.worker = PlotWorker()
        except OSError:
            self.worker = None

    def stop_plots(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    def draw_plots_ahead(self, history: Sequence[Mapping[str, float]]) -> None:
        """Give the worker the history now, so that it draws while the model is logged."""
        if self.worker is not None:
            self.worker.send(history, self.run_dir / "plots")

    def send_plots(self, history: Sequence[Mapping[str, float]]) -> None:
        if not self.enabled:
            return
        from nnexp.tracking.plots import make_plots

        directory = self.run_dir / "plots"  # kept with the run: the spool may point at it
        worker, self.worker = self.worker, None
        made = None
        if worker is not None:
            worker.send(history, directory)  # usually already sent, while the model was logged
            made = worker.result()
        if made is None:
            made = make_plots(history, directory)
        if made:
            link, d = self.link, str(directory)
            client, run_id = link.active_run()
            link.call(
                "log plots",
                lambda: client.log_artifacts(run_id, d, "plots"),
                "artifacts",
                local=d,
                path="plots",
            )

    # -- the model ------------------------------------------------------------------------

    def send_model(self, step: int, *, register: bool = True) -> None:
        """The pyfunc model (its URI in the tag ``model_uri``), registered under `register_as`
        unless `register` is false; spooled as a bundle if the store is away."""
        if not self.enabled:
            return
        from nnexp.tracking.pyfunc import log_pyfunc_model

        register_as = self.register_as if register else None
        if self.register_as and not register_as:
            logging.getLogger(__name__).warning(
                f"WARNING nnexp.tracking: the model of this diverged run is logged but not "
                f"registered as {self.register_as!r}"
            )
        link = self.link
        if link.online():
            client, run_id = link.active_run()
            try:
                with tempfile.TemporaryDirectory(prefix="nnexp-model-") as tmp:
                    bundle = self.write_bundle(Path(tmp) / "bundle")
                    uri = log_pyfunc_model(
                        tracking_uri=client.tracking_uri,
                        run_id=run_id,
                        bundle_dir=bundle,
                        input_example=self.input_example,
                        step=step,
                        register_as=register_as,
                    )
                client.set_tag(run_id, TAG_MODEL_URI, uri)
                return
            except Exception as exc:
                link.failed("log the model", exc)
        import numpy as np

        spool = link.spool
        bundle = self.write_bundle(spool.directory / "model")
        example = spool.directory / "input_example.npy"
        np.save(example, np.asarray(self.input_example, dtype=np.float64), allow_pickle=False)
        spool.add_op(
            "model", bundle=str(bundle), example=str(example), step=step,
            register_as=register_as,
        )  # fmt: skip
