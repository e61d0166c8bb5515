"""MLflow "models from code" entry point. `log_pyfunc_model` logs this file with each model and
MLflow runs it at load time to obtain the model object, so no pickle is involved. It imports
`nnexp.serving` as the copy logged with the model (``nnexp_serving``: pyfunc.SHIPPED_AS), so
nnexp need not be installed where the model is loaded."""

from mlflow.models import set_model

# (only the logged model's code directory has it: mypy cannot see it)
from nnexp_serving.pyfunc_model import NnexpModel  # type: ignore[import-not-found]

set_model(NnexpModel())
