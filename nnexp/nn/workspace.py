"""Reusable output arrays, so the training loop does not allocate a new array per layer per step.

Only training-mode passes use a workspace: their outputs live until the next step. Inference
returns fresh arrays, because a caller may keep them (predictions, validation logits).
"""

from __future__ import annotations

import numpy as np

from nnexp.nn.module import FloatArray


class Workspace:
    def __init__(self) -> None:
        self._arrays: dict[tuple[int, ...], FloatArray] = {}

    def get(self, shape: tuple[int, ...], dtype: np.dtype[np.floating]) -> FloatArray:
        array = self._arrays.get(shape)
        if array is None or array.dtype != dtype:
            array = self._arrays[shape] = np.empty(shape, dtype=dtype)
        return array
