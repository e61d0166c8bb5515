"""MLflow "models from code" entry point. `log_pyfunc_model` logs this file with each model and
MLflow runs it at load time to obtain the model object, so no pickle is involved."""

from mlflow.models import set_model

from nnexp.tracking.pyfunc import NnexpModel

set_model(NnexpModel())
