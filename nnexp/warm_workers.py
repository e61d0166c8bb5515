"""Hydra callback: with ``hydra/launcher=joblib``, start the worker processes (and their imports)
as the sweep starts, not when its jobs are launched.

Hydra's joblib launcher creates loky's workers only once it launches the jobs, after the
sweep has started (MLflow imported, the parent run created, one core idle meanwhile); each
worker then spends its first seconds importing nnexp, Hydra, MLflow and matplotlib before the
first job can begin. This callback runs a trivial task on each worker, from a background
thread, with the launcher's own joblib settings, so that joblib keeps the same (reusable)
executor for the jobs: the imports overlap the sweep's start and the first jobs start warm.
A no-op for every other launcher; if the settings ever differ joblib makes new workers, which
costs the warm-up and changes nothing else.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


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

    settings = OmegaConf.to_container(launcher, resolve=True)
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
