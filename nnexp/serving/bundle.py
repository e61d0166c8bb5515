"""`Bundle`: a saved model read back for prediction — raw inputs in, labels (or values in the
target's own units) out. The file format is `nnexp.train.export.save_bundle`'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .layers import HEADS, Array, Forward

SPEC, WEIGHTS = "spec.json", "weights.npz"


class Bundle:
    """``features``: the input columns, in order; ``labels``: the class labels in the user's
    vocabulary (a CSV's own labels, a bundled dataset's target names; None for regression)."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        spec: dict[str, Any] = json.loads((directory / SPEC).read_text())
        if "layers" not in spec:
            raise ValueError(
                f"{directory / SPEC}: a model bundle without its layer list (written before "
                "nnexp logged self-contained models); load it with nnexp.train.Predictor"
            )
        with np.load(directory / WEIGHTS, allow_pickle=False) as archive:
            weights = dict(archive)
        self.task: str = spec["task"]
        self.loss: str = spec["loss"]
        self.dtype = np.dtype(spec["mlp"].get("dtype", "float32"))
        self.features: list[str] = spec["features"]
        self.labels: list[Any] | None = spec.get("labels")
        self.forward = Forward(spec["layers"], weights)
        self.x_mean, self.x_scale = weights.get("x_mean"), weights.get("x_scale")
        self.y_mean, self.y_scale = weights.get("y_mean"), weights.get("y_scale")

    @property
    def classification(self) -> bool:
        return self.task != "regression"

    def logits(self, X: Any) -> Array:
        inputs = np.asarray(X, dtype=self.dtype)
        if inputs.ndim == 1:
            inputs = inputs[None, :]
        n = len(self.features)
        if inputs.ndim != 2 or inputs.shape[1] != n:
            raise ValueError(
                f"expected rows of {n} features ({', '.join(self.features)}), "
                f"got an array of shape {inputs.shape}"
            )
        if self.x_mean is not None:
            inputs = (inputs - self.x_mean) / self.x_scale
        return self.forward(inputs)

    def predict(self, X: Any) -> Array:
        """Each row's class label, or for regression its predicted value(s) in the target's
        units."""
        logits = self.logits(X)
        if not self.classification:
            values = logits[:, 0] if logits.shape[1] == 1 else logits
            if self.y_scale is not None:
                values = values * self.y_scale + self.y_mean
            return values
        index: Array = HEADS[self.loss][1](logits)
        if self.labels is None:  # a bundle saved without class names: the class indices
            return index
        labels: Array = np.asarray(self.labels)[index]
        return labels

    def predict_proba(self, X: Any) -> Array:
        """Each row's probability of each class, columns in the order of ``labels`` (of the
        class indices when it has none)."""
        if not self.classification:
            raise ValueError("a regression model has no class probabilities")
        return HEADS[self.loss][0](self.logits(X))
