"""nnexp.tracking — MLflow for nnexp runs: `MlflowTracker` (the trainer callback that logs a run),
`make_plots` (training curves and gradient norms from the history), and the pyfunc model
(`nnexp.tracking.pyfunc`, imported on use: it imports mlflow).

Importing this package is cheap: mlflow and matplotlib are imported only when a run starts or a
plot is drawn. It sets MLflow's environment defaults (`configure_mlflow_env`) on import.
"""

from nnexp.tracking.env import configure_mlflow_env
from nnexp.tracking.mlflow_logger import MlflowTracker
from nnexp.tracking.plots import make_plots

configure_mlflow_env()

__all__ = ["MlflowTracker", "configure_mlflow_env", "make_plots"]
