"""The trained network at inference, with NumPy alone: what a logged MLflow model ships.

`nnexp.tracking.pyfunc` copies this package into each logged model (as the top-level package
``nnexp_serving``), so it must import nothing of nnexp — relative imports only — and load where
nnexp is not installed. `Bundle` reads the model bundle (``spec.json`` + ``weights.npz``, written
by `nnexp.train.export.save_bundle`) and runs its forward pass (`layers`); `pyfunc_model` is the
MLflow wrapper (labels, or probabilities on request), the only module that imports MLflow.
"""

from .bundle import Bundle

__all__ = ["Bundle"]
