"""The trained model as files a predictor can load without Hydra or the training data:
``spec.json`` (architecture, task, input columns, labels) and ``weights.npz`` (weights and
preprocessing, read with allow_pickle=False). Two readers: `Predictor` rebuilds the trainable
network (`nnexp.nn`); `nnexp.serving.Bundle`, which a logged model ships, runs the spec's
``layers`` with NumPy alone. Both map *raw* inputs to predictions: they apply the training
split's standardization themselves and undo the target scaling of regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnexp.data.dataset import feature_names, label_value
from nnexp.nn import LOSSES, Sequential, mlp
from nnexp.nn.layers import BatchNorm1d, Dropout
from nnexp.nn.module import FloatArray, Targets
from nnexp.nn.residual import Residual

FORMAT = 2  # 2: the spec lists its layers, input columns and typed labels


def inference_layers(model: Sequential) -> list[dict[str, Any]]:
    """The forward pass as `nnexp.serving` runs it: each module's kind and name (its weights'
    keys) and what its inference needs besides the weights. Dropout is the identity at
    inference: left out."""
    layers: list[dict[str, Any]] = []
    for m in model.modules:
        if isinstance(m, Dropout):
            continue
        layer: dict[str, Any] = {"kind": m.kind, "name": m.name}
        if isinstance(m, Residual):
            layer |= {"skip": m.skip.name, "projected": m.P is not None}
        if isinstance(m, BatchNorm1d):
            layer["eps"] = float(m.eps)
        alpha = getattr(m, "alpha", None)  # leaky_relu's slope, elu's scale
        if alpha is not None:
            layer["alpha"] = float(alpha)
        layers.append(layer)
    return layers


def save_bundle(
    directory: str | Path,
    model: Sequential,
    *,
    mlp_kwargs: dict[str, Any],
    loss: str,
    task: str,
    classes: list[str] | None = None,
    features: list[str] | None = None,
    x_mean: FloatArray | None = None,
    x_scale: FloatArray | None = None,
    y_mean: FloatArray | float | None = None,
    y_scale: FloatArray | float | None = None,
) -> Path:
    """Write ``spec.json`` and ``weights.npz`` into `directory` (created); return it.
    `classes` name the class indices; the spec also keeps them as ``labels``, typed as the
    data had them (integers stay integers). `features` name the input columns (default
    ``x0``, ``x1``, ...)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, NDArray[np.floating]] = {
        f"param/{p.name}": p.value for p in model.parameters()
    }
    arrays |= {f"buffer/{k}": v for k, v in model.buffers().items()}
    for key, value in (("x_mean", x_mean), ("x_scale", x_scale)):
        if value is not None:
            arrays[key] = np.asarray(value)
    for key, target in (("y_mean", y_mean), ("y_scale", y_scale)):
        if target is not None:
            arrays[key] = np.asarray(target, dtype=np.float64)
    # mypy matches **arrays against savez's allow_pickle: bool too; every value is an array.
    np.savez(directory / "weights.npz", **arrays)  # type: ignore[arg-type]
    n_features = int(mlp_kwargs["in_features"])
    spec: dict[str, Any] = {
        "format": FORMAT,
        "mlp": mlp_kwargs,
        "loss": loss,
        "task": task,
        "classes": classes,
        "labels": None if classes is None else [label_value(c) for c in classes],
        "features": list(features) if features else feature_names(n_features),
        "layers": inference_layers(model),
    }
    (directory / "spec.json").write_text(json.dumps(spec, indent=2))
    return directory


class Predictor:
    """A loaded bundle: `predict(X)` (class indices or regression values) and
    `predict_proba(X)` (classification), both on raw (unstandardized) inputs."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.spec = json.loads((directory / "spec.json").read_text())
        self.model = mlp(**self.spec["mlp"])
        self.loss = LOSSES.lookup(self.spec["loss"])()
        self.task = self.spec["task"]
        self.classes = self.spec["classes"]
        self.dtype = np.dtype(self.spec["mlp"].get("dtype", "float32"))
        with np.load(directory / "weights.npz", allow_pickle=False) as f:
            arrays = dict(f)
        for p in self.model.parameters():
            np.copyto(p.value, arrays[f"param/{p.name}"])
        for name, buffer in self.model.buffers().items():
            np.copyto(buffer, arrays[f"buffer/{name}"])
        self.x_mean, self.x_scale = arrays.get("x_mean"), arrays.get("x_scale")
        self.y_mean, self.y_scale = arrays.get("y_mean"), arrays.get("y_scale")

    @property
    def n_features(self) -> int:
        return int(self.spec["mlp"]["in_features"])

    def logits(self, X: ArrayLike) -> FloatArray:
        inputs: FloatArray = np.asarray(X, dtype=self.dtype)
        if inputs.ndim == 1:
            inputs = inputs[None, :]
        if inputs.ndim != 2 or inputs.shape[1] != self.n_features:
            raise ValueError(f"expected inputs of shape (n, {self.n_features}), got {inputs.shape}")
        if self.x_mean is not None:
            inputs = (inputs - self.x_mean) / self.x_scale
        return self.model.forward(inputs, training=False)

    def predict(self, X: ArrayLike) -> Targets:
        out = self.loss.predict(self.logits(X))
        if self.task == "regression" and self.y_scale is not None:
            out = out * self.y_scale + self.y_mean
        return out

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        return self.loss.predict_proba(self.logits(X))
