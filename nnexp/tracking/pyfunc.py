"""The trained model as an MLflow pyfunc model: `nnexp.serving` (the bundle reader, its NumPy
forward pass and the pyfunc wrapper, a few KB) around the model bundle (``spec.json`` +
``weights.npz``), the model's only artifact.

It is logged as MLflow "models from code" (`model_code.py` builds it at load time, so nothing is
pickled), with `nnexp.serving` copied in via ``code_paths`` as the top-level package
``nnexp_serving``: `mlflow.pyfunc.load_model` works where nnexp is not installed, with numpy,
pandas and mlflow alone. The signature names the input columns (the dataset's feature names),
so a DataFrame, a CSV or JSON records are matched by name and integers are cast to float, and
declares the ``output`` parameter (``label`` or ``proba``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from nnexp import serving
from nnexp.serving import Bundle
from nnexp.serving.pyfunc_model import BUNDLE_ARTIFACT, OUTPUT_PARAM, OUTPUTS

MODEL_NAME = "model"
SHIPPED_AS = "nnexp_serving"  # the name model_code.py imports nnexp.serving under
_MODEL_CODE = Path(__file__).with_name("model_code.py")
_SERVING_DIR = Path(serving.__file__).parent

REQUIREMENTS = ("mlflow", "numpy", "pandas")  # what the model's code imports


def pinned_requirements() -> list[str]:
    """What the model needs, pinned to this environment. Explicit, because MLflow's inference
    of requirements loads the model in a subprocess and takes seconds."""
    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def model_signature(bundle: Bundle, example: pd.DataFrame) -> mlflow.models.ModelSignature:
    """Input columns named by the features, the default output's type, the ``output`` param."""
    return mlflow.models.infer_signature(
        example, bundle.predict(example.to_numpy()), params={OUTPUT_PARAM: OUTPUTS[0]}
    )


def log_pyfunc_model(
    *,
    tracking_uri: str,
    run_id: str,
    bundle_dir: str | Path,
    input_example: np.ndarray,
    step: int = 0,
    register_as: str | None = None,
) -> str:
    """Log `bundle_dir` as the pyfunc model ``model`` of run `run_id`; return its model URI.
    `register_as`: also register it in the model registry under that name (a new version).

    MLflow 3 attaches a logged model to the fluent *active* run (on the global tracking URI),
    so this resumes `run_id` inside ``mlflow.start_run`` for the call; leaving that context
    ends the run as FINISHED (or FAILED if logging raised). Call it last. `step` links the
    run's metrics at that step to the model (MLflow's LoggedModel metrics).
    """
    bundle = Bundle(bundle_dir)
    # float64: integer columns are cast to it by the signature, the model computes in its own
    example = pd.DataFrame(np.asarray(input_example, dtype=np.float64), columns=bundle.features)
    with (
        tempfile.TemporaryDirectory(prefix="nnexp-serving-") as code,
        _importable(_ship_serving(Path(code))) as package,
        _use_tracking_uri(tracking_uri),
        _known_requirements(),
        mlflow.start_run(run_id=run_id, nested=True),
    ):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(_MODEL_CODE),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(package)],
            signature=model_signature(bundle, example),
            input_example=example,
            pip_requirements=pinned_requirements(),
            registered_model_name=register_as or None,
            step=step,
        )
    return info.model_uri


def _ship_serving(directory: Path) -> Path:
    """`nnexp.serving`'s modules (not its caches) as the package ``nnexp_serving``."""
    package = directory / SHIPPED_AS
    package.mkdir()
    for source in sorted(_SERVING_DIR.glob("*.py")):
        shutil.copy2(source, package / source.name)
    return package


@contextmanager
def _importable(package: Path) -> Iterator[Path]:
    """`package` importable for the block, as MLflow runs model_code.py while logging (and the
    input example's validation loads the model, prepending its code directory to sys.path);
    then sys.path and sys.modules are put back: the directory is temporary."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    sys.path.insert(0, str(package.parent))
    try:
        yield package
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if name == SHIPPED_AS or name.startswith(SHIPPED_AS + "."):
                del sys.modules[name]


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
    utils._MODULES_TO_PACKAGES = {name: [name] for name in REQUIREMENTS}  # type: ignore[assignment]
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
