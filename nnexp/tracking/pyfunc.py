"""The trained model as an MLflow pyfunc model: `NnexpModel` wraps `nnexp.train.export.Predictor`
around the model bundle (``spec.json`` + ``weights.npz``), which is the model's only artifact.

It is logged as MLflow "models from code" (`model_code.py` builds it at load time, so nothing is
pickled) with the `nnexp` package itself copied in via ``code_paths``: `mlflow.pyfunc.load_model`
works in an environment where nnexp is not installed, with numpy and mlflow alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

import nnexp
from nnexp.train.export import Predictor

MODEL_NAME = "model"
BUNDLE_ARTIFACT = "bundle"
_MODEL_CODE = Path(__file__).with_name("model_code.py")
_PACKAGE_DIR = Path(nnexp.__file__).parent


class NnexpModel(mlflow.pyfunc.PythonModel):
    """Predictions on raw inputs: class indices (classification) or values (regression)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = Predictor(context.artifacts[BUNDLE_ARTIFACT])

    # Annotated np.ndarray (MLflow infers no schema from that hint; the signature given at
    # logging does the checking). A pandas DataFrame is accepted too.
    def predict(
        self, context, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        if hasattr(model_input, "to_numpy"):  # pandas DataFrame
            model_input = model_input.to_numpy()
        return np.asarray(self.predictor.predict(np.asarray(model_input)))


REQUIREMENTS = ("mlflow", "numpy")  # what the model's code imports (nnexp itself is code_paths)


def pinned_requirements() -> list[str]:
    """What the model needs, pinned to this environment. Explicit, because MLflow's inference
    of requirements loads the model in a subprocess and takes seconds."""
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_pyfunc_model(
    *,
    tracking_uri: str,
    run_id: str,
    bundle_dir: str | Path,
    input_example: np.ndarray,
    step: int = 0,
) -> str:
    """Log `bundle_dir` as the pyfunc model ``model`` of run `run_id`; return its model URI.

    MLflow 3 attaches a logged model to the fluent *active* run (on the global tracking URI),
    so this resumes `run_id` inside ``mlflow.start_run`` for the call; leaving that context
    ends the run as FINISHED (or FAILED if logging raised). Call it last. `step` links the
    run's metrics at that step to the model (MLflow's LoggedModel metrics).
    """
    bundle_dir = Path(bundle_dir)
    # float64: NumPy's default, and MLflow's tensor schema rejects any other dtype at predict.
    example = np.asarray(input_example, dtype=np.float64)
    signature = mlflow.models.infer_signature(example, Predictor(bundle_dir).predict(example))
    # Validating the input example loads the model in this process, which prepends its
    # (temporary, soon deleted) code directory to sys.path: undo that.
    saved_sys_path = list(sys.path)
    try:
        with (
            _use_tracking_uri(tracking_uri),
            _known_requirements(),
            mlflow.start_run(run_id=run_id, nested=True),
        ):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(_MODEL_CODE),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                code_paths=[str(_PACKAGE_DIR)],
                signature=signature,
                input_example=example,
                pip_requirements=pinned_requirements(),
                step=step,
            )
    finally:
        sys.path[:] = saved_sys_path
    return info.model_uri


@contextmanager
def _known_requirements() -> Iterator[None]:
    """Spare MLflow its scan of every installed distribution (1-2 s, most of `log_model`).

    MLflow checks the requirements it is given against the environment through a module →
    package map built by `importlib.metadata.packages_distributions()`, which reads every
    installed package's file list. Ours are pinned from this very environment, so the check
    cannot fail: for the call, MLflow gets a map of just those packages, and its own map is put
    back afterwards (so nothing else in the process sees the short one). If MLflow's internals
    ever change, this does nothing and the scan simply happens."""
    from mlflow.utils import requirements_utils as utils

    if getattr(utils, "_MODULES_TO_PACKAGES", False) is not None:  # already built, or renamed
        yield
        return
    utils._MODULES_TO_PACKAGES = {name: [name] for name in REQUIREMENTS}
    try:
        yield
    finally:
        utils._MODULES_TO_PACKAGES = None
        utils._PACKAGES_TO_MODULES = None


@contextmanager
def _use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at `uri` for the block, then restore both it and the
    MLFLOW_TRACKING_URI variable (MLflow's own helper unsets the variable on the way out)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri as mlflow_use_uri

    if uri == mlflow.get_tracking_uri():
        yield
        return
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with mlflow_use_uri(uri):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
