"""The MLflow pyfunc model: `predict(data)` answers each row's label, and
`predict(data, params={"output": "proba"})` a DataFrame of probabilities, a column per label.

MLflow has already checked ``data`` against the model's column-named signature (the feature
names) and cast integers to float; rows given as arrays are taken in the features' order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel, PythonModelContext

from .bundle import Bundle

BUNDLE_ARTIFACT = "bundle"  # the key of the bundle directory in the model's artifacts
OUTPUT_PARAM = "output"
OUTPUTS = ("label", "proba")  # the first is the default


class NnexpModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = Bundle(context.artifacts[BUNDLE_ARTIFACT])

    # A DataFrame: what MLflow passes after checking it against the column-named signature
    # (a hint MLflow infers no schema from; the logged signature does the checking).
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray | pd.DataFrame:
        output = (params or {}).get(OUTPUT_PARAM, OUTPUTS[0])
        if output not in OUTPUTS:
            raise MlflowException.invalid_parameter_value(
                f"params {OUTPUT_PARAM}={output!r}: must be one of {', '.join(OUTPUTS)}"
            )
        rows = self._rows(model_input)
        if output == "label":
            return self.bundle.predict(rows)
        if not self.bundle.classification:
            raise MlflowException.invalid_parameter_value(
                f"params {OUTPUT_PARAM}='proba': a regression model predicts values, "
                "not class probabilities"
            )
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        proba = self.bundle.predict_proba(rows)
        columns = self.bundle.labels or list(range(proba.shape[1]))
        return pd.DataFrame(proba, columns=columns, index=index)

    def _rows(self, model_input: Any) -> np.ndarray:
        """The features as a float64 array, in the model's column order (an array, as called
        without MLflow's checks, is taken as it is)."""
        if isinstance(model_input, pd.DataFrame):
            features = self.bundle.features
            if set(features) <= set(model_input.columns):
                model_input = model_input[features]
            rows: np.ndarray = model_input.to_numpy(dtype=np.float64)
            return rows
        return np.asarray(model_input, dtype=np.float64)
